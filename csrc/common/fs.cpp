#include "common/fs.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace scorch::fs {
namespace {
bool g_fail_before_rename = false;

std::string errno_text() { return std::strerror(errno); }
}  // namespace

void set_fail_before_rename_for_testing(bool fail) { g_fail_before_rename = fail; }

bool exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

bool is_directory(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec);
}

void make_directories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw UserError("cannot create directory '" + path + "': " + ec.message());
}

void remove_all(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  auto remove_one = [](const char* p, const struct stat*, int, struct FTW*) -> int { return ::remove(p); };
  if (::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && exists(path)) {
    throw UserError("cannot delete '" + path + "': " + errno_text());
  }
}

void sync_directory(const std::string& path) {
  const int fd = ::open(path.empty() ? "." : path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some filesystems refuse O_DIRECTORY opens
  ::fsync(fd);
  ::close(fd);
}

void atomic_write(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw UserError("cannot write '" + tmp + "': " + errno_text());
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string why = errno_text();
      ::close(fd);
      ::unlink(tmp.c_str());
      throw UserError("cannot write '" + tmp + "': " + why);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw UserError("cannot flush '" + tmp + "': " + why);
  }
  if (g_fail_before_rename) {
    ::unlink(tmp.c_str());
    throw std::runtime_error("simulated crash before rename of '" + path + "'");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp.c_str());
    throw UserError("cannot rename '" + tmp + "' to '" + path + "': " + why);
  }
  sync_directory(std::filesystem::path(path).parent_path().string());
}

std::string read_file(const std::string& path, const std::string& what) {
  if (is_directory(path)) throw UserError("cannot read " + what + " '" + path + "': it is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw UserError("cannot read " + what + " '" + path + "': " +
                    (exists(path) ? "permission denied or unreadable" : "no such file"));
  }
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) throw UserError("cannot read " + what + " '" + path + "': I/O error");
  return out.str();
}

}  // namespace scorch::fs
