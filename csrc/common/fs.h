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

// Test hook: when set, atomic_write throws right before the rename (simulates a crash mid-write).
void set_fail_before_rename_for_testing(bool fail);

}  // namespace scorch::fs
