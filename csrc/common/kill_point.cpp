#include "common/kill_point.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace scorch {

void kill_point(const char* name) {
  const char* spec = std::getenv("SCORCH_KILL_AT");
  if (spec == nullptr || *spec == '\0') return;
  const std::string wanted = spec;
  const size_t colon = wanted.rfind(':');
  const std::string point = colon == std::string::npos ? wanted : wanted.substr(0, colon);
  if (point != name) return;
  const long nth = colon == std::string::npos ? 1 : std::strtol(wanted.c_str() + colon + 1, nullptr, 10);
  static std::mutex mutex;
  static std::map<std::string, long> hits;
  std::lock_guard<std::mutex> lock(mutex);
  if (++hits[point] != nth) return;
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();  // the signal is on its way: run nothing more
}

}  // namespace scorch
