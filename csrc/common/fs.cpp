#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <ftw.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

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

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  if (path_.empty()) throw UserError("the output file path is empty; name a file");
  if (is_directory(path_)) throw UserError("cannot write '" + path_ + "': it is a directory; name a file");
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw UserError("cannot write '" + tmp_ + "': " + errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFileWriter::write(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw UserError("cannot write '" + tmp_ + "': " + errno_text());
    }
    done += static_cast<size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  if (::fsync(fd_) != 0) throw UserError("cannot flush '" + tmp_ + "': " + errno_text());
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_.c_str());
    throw UserError("cannot flush '" + tmp_ + "': " + errno_text());
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string why = errno_text();
    ::unlink(tmp_.c_str());
    throw UserError("cannot rename '" + tmp_ + "' to '" + path_ + "': " + why);
  }
  sync_directory(std::filesystem::path(path_).parent_path().string());
}

bool is_nonempty_directory(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return false;
  bool any = false;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") {
      any = true;
      break;
    }
  }
  ::closedir(dir);
  return any;
}

StagedDirectory::StagedDirectory(std::string target) : target_(std::move(target)) {
  while (target_.size() > 1 && target_.back() == '/') target_.pop_back();
  if (target_.empty()) throw UserError("the output directory path is empty; name a directory");
  if (exists(target_) && !is_directory(target_)) {
    throw UserError("output '" + target_ + "' exists and is not a directory; choose another --out or remove it");
  }
  const std::string parent = std::filesystem::path(target_).parent_path().string();
  if (!parent.empty()) make_directories(parent);
  remove_debris_of_dead_writers();
  staging_ = target_ + ".staging." + std::to_string(::getpid());
  remove_all(staging_);
  make_directories(staging_);
}

void StagedDirectory::remove_debris_of_dead_writers() const {
  const std::filesystem::path target(target_);
  const std::string parent = target.has_parent_path() ? target.parent_path().string() : std::string(".");
  const std::string base = target.filename().string();
  DIR* dir = ::opendir(parent.c_str());
  if (dir == nullptr) return;
  std::vector<std::pair<std::string, bool>> debris;  // name, is a moved-aside old directory
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    for (const std::string tag : {".staging.", ".old."}) {
      const std::string prefix = base + tag;
      if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
      const std::string digits = name.substr(prefix.size());
      if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
      const pid_t pid = static_cast<pid_t>(std::stol(digits));
      // A live process (this one, or another command writing the same output) keeps its own.
      if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
      debris.emplace_back(name, tag == ".old.");
    }
  }
  ::closedir(dir);
  for (const auto& [name, old] : debris) {
    const std::string path = parent + "/" + name;
    // Killed between moving the old directory aside and moving the new one in: put the old one back.
    if (old && !exists(target_) && ::rename(path.c_str(), target_.c_str()) == 0) continue;
    try {
      remove_all(path);
    } catch (const std::exception&) {
      // Best effort, like the destructor: the next writer tries again.
    }
  }
}

StagedDirectory::~StagedDirectory() {
  if (committed_) return;
  try {
    remove_all(staging_);
  } catch (...) {
    // Best effort: the next writer of the same target removes a leftover staging directory.
  }
}

void StagedDirectory::commit() {
  const std::string parent = std::filesystem::path(target_).parent_path().string();
  sync_directory(staging_);
  if (g_fail_before_rename) throw std::runtime_error("simulated crash before putting '" + target_ + "' in place");
  if (!exists(target_)) {
    if (::rename(staging_.c_str(), target_.c_str()) != 0) {
      throw UserError("cannot rename '" + staging_ + "' to '" + target_ + "': " + errno_text());
    }
  } else {
    // One atomic exchange: at every instant `target` is either the old or the new directory.
    if (::syscall(SYS_renameat2, AT_FDCWD, staging_.c_str(), AT_FDCWD, target_.c_str(), 2 /* RENAME_EXCHANGE */) != 0) {
      // Filesystems without RENAME_EXCHANGE: move the old one aside, then the new one in.
      const std::string aside = target_ + ".old." + std::to_string(::getpid());
      remove_all(aside);
      if (::rename(target_.c_str(), aside.c_str()) != 0 || ::rename(staging_.c_str(), target_.c_str()) != 0) {
        throw UserError("cannot put '" + staging_ + "' in place of '" + target_ + "': " + errno_text());
      }
      staging_ = aside;
    }
    remove_all(staging_);  // after the exchange this is the old directory
  }
  committed_ = true;
  sync_directory(parent);
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
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {  // a FIFO or device would block or never end
    throw UserError("cannot read " + what + " '" + path + "': it is not a regular file");
  }
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
