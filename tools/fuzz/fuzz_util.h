// Shared by the fuzz targets: a per-process scratch directory for the APIs that read files, and the
// rule every target follows. A scorch::UserError (NotImplemented included) is the clean refusal a
// user sees as exit 2: expected. Anything else escaping a target (another exception type,
// std::bad_alloc, an abort, a sanitizer report, a timeout) is a finding.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "common/error.h"
#include "common/fs.h"

namespace scorch::fuzz {

// Under $SCORCH_FUZZ_SCRATCH (run.sh makes one per target and removes it: libFuzzer often ends a
// process without running atexit handlers), else /dev/shm (files written per input stay in memory)
// or /tmp; one directory per process, as fork mode runs children one after another.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    const char* env = std::getenv("SCORCH_FUZZ_SCRATCH");
    const char* base = env && *env ? env : ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string d = std::string(base) + "/scorch-fuzz-" + std::to_string(::getpid());
    fs::make_directories(d);
    std::atexit([] { fs::remove_all(scratch_dir()); });
    return d;
  }();
  return dir;
}

inline std::string write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// A UserError must say which file it is about: `what` names `source` or the finding is reported.
inline void expect_named(const UserError& e, const std::string& source) {
  if (std::string(e.what()).find(source) == std::string::npos) {
    std::fprintf(stderr, "UserError does not name '%s': %s\n", source.c_str(), e.what());
    std::abort();
  }
}

}  // namespace scorch::fuzz
