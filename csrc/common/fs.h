// File helpers: atomic writes (temp file, fsync, rename) so a crash never leaves a half file,
// and whole-file reads that fail with a UserError naming the path.
#pragma once
#include <string>

namespace scorch::fs {

// Writes `content` to `path` atomically: `path.tmp.<pid>` is written and fsynced, renamed over
// `path`, then the directory is fsynced. On failure the previous file (if any) is intact.
void atomic_write(const std::string& path, const std::string& content);
// Reads a whole file; throws UserError("cannot read <what> '<path>': <reason>") if it cannot.
std::string read_file(const std::string& path, const std::string& what = "file");
bool exists(const std::string& path);
bool is_directory(const std::string& path);
void make_directories(const std::string& path);
// Deletes `path` and everything below it (no error if it does not exist). Use this, never
// std::filesystem::remove_all: the torch wheel's libtorch.so exports its own std::filesystem
// symbols, and its remove_all crashes on non-empty directories when linked ahead of libstdc++.
void remove_all(const std::string& path);
// fsync a directory so a rename inside it is durable.
void sync_directory(const std::string& path);
// A file written in pieces and put in place whole, like atomic_write: `path.tmp.<pid>` is
// written, then commit() fsyncs and renames it over `path`. Without commit() the destructor
// deletes the temporary file and `path` is untouched. For outputs too large to build in memory.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  void write(const std::string& bytes);
  void commit();

 private:
  std::string path_, tmp_;
  int fd_ = -1;
};

// True when `path` is a directory with at least one entry.
bool is_nonempty_directory(const std::string& path);

// A directory written beside `target` (`target.staging.<pid>`) and put in its place whole by
// commit(): until then nothing in `target` changes, so a command that fails half-way (bad input
// found late, a crash, a full disk) leaves what was there intact. commit() swaps the two with one
// atomic rename (renameat2 RENAME_EXCHANGE when `target` exists) and then deletes the old one.
// Without commit() the destructor deletes the staging directory. A process killed before its
// commit() leaves its staging directory behind; the next StagedDirectory for the same target
// removes the ones of writers no longer running (and puts back a moved-aside old directory that a
// kill mid-swap left without its replacement).
class StagedDirectory {
 public:
  explicit StagedDirectory(std::string target);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  const std::string& path() const { return staging_; }
  void commit();

 private:
  void remove_debris_of_dead_writers() const;
  std::string target_;
  std::string staging_;
  bool committed_ = false;
};

// Test hook: when set, atomic_write throws right before the rename (simulates a crash mid-write).
void set_fail_before_rename_for_testing(bool fail);

}  // namespace scorch::fs
