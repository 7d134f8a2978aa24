// Leveled, rank-aware logging to stderr. Only rank 0 prints info/debug unless SCORCH_LOG_ALL_RANKS=1;
// warnings and errors print on every rank with a "[rank N]" prefix when world size > 1.
#pragma once
#include <sstream>
#include <string>

namespace scorch::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3, Off = 4 };

void set_level(Level level);
Level level();
// Parses "debug" | "info" | "warn" | "error" | "off"; throws UserError naming the value otherwise.
Level parse_level(const std::string& name);
void set_rank(int rank, int world_size);
void write(Level level, const std::string& message);

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
template <class... Args> void debug(const Args&... a) { if (level() <= Level::Debug) write(Level::Debug, cat(a...)); }
template <class... Args> void info(const Args&... a) { if (level() <= Level::Info) write(Level::Info, cat(a...)); }
template <class... Args> void warn(const Args&... a) { if (level() <= Level::Warn) write(Level::Warn, cat(a...)); }
template <class... Args> void error(const Args&... a) { if (level() <= Level::Error) write(Level::Error, cat(a...)); }

}  // namespace scorch::log
