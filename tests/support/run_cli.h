// Runs the scorch binary (or any command) from a test and captures exit code and output.
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace scorch::test {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

inline CommandResult run_command(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline CommandResult run_scorch(const std::string& args) {
#ifdef SCORCH_BIN
  return run_command(std::string("'") + SCORCH_BIN + "' " + args);
#else
  return run_command("scorch " + args);
#endif
}

// A fresh, empty temporary directory for one test.
inline std::string temp_dir(const std::string& tag) {
  std::string templ = "/tmp/scorch-test-" + tag + "-XXXXXX";
  char* made = ::mkdtemp(templ.data());
  return made ? std::string(made) : std::string();
}

}  // namespace scorch::test
