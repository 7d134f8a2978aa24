#include "common/memory.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/error.h"

namespace scorch {

int64_t available_host_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : -1;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (bytes >= 1024 && u < 6) {
    bytes /= 1024;
    ++u;
  }
  char buf[64];
  if (u == 0) std::snprintf(buf, sizeof(buf), "%.0f %s", bytes, units[u]);
  else std::snprintf(buf, sizeof(buf), bytes < 10 ? "%.2f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

void check_host_memory(double bytes, const std::string& what, const std::string& fix) {
  const int64_t available = available_host_memory();
  if (available < 0 || bytes <= static_cast<double>(available)) return;
  throw UserError(what + " needs " + format_bytes(bytes) + ", but only " + format_bytes(static_cast<double>(available)) +
                  " of memory is available: " + fix);
}

}  // namespace scorch
