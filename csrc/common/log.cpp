#include "common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

#include "common/error.h"

namespace scorch::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::Info)};
std::atomic<int> g_rank{0};
std::atomic<int> g_world{1};
std::mutex g_mutex;

bool all_ranks() {
  const char* v = std::getenv("SCORCH_LOG_ALL_RANKS");
  return v && std::string(v) == "1";
}
}  // namespace

void set_level(Level l) { g_level = static_cast<int>(l); }
Level level() { return static_cast<Level>(g_level.load()); }

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::Debug;
  if (name == "info") return Level::Info;
  if (name == "warn" || name == "warning") return Level::Warn;
  if (name == "error") return Level::Error;
  if (name == "off") return Level::Off;
  throw UserError("unknown log level '" + name + "': use debug, info, warn, error or off");
}

void set_rank(int rank, int world_size) {
  g_rank = rank;
  g_world = world_size;
}

void write(Level l, const std::string& message) {
  const int rank = g_rank.load();
  if (l < Level::Warn && rank != 0 && !all_ranks()) return;
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&now));
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_world.load() > 1) {
    std::fprintf(stderr, "[%s %s rank %d] %s\n", stamp, names[static_cast<int>(l)], rank, message.c_str());
  } else {
    std::fprintf(stderr, "[%s %s] %s\n", stamp, names[static_cast<int>(l)], message.c_str());
  }
  std::fflush(stderr);
}

}  // namespace scorch::log
