// Pre-flight memory checks: a job whose weights, optimizer state or KV cache cannot fit is told so
// before it allocates (exit 2, naming the setting and the bytes), instead of dying in the allocator.
#pragma once
#include <cstdint>
#include <string>

namespace scorch {

// Bytes of host memory a new allocation can use (Linux MemAvailable), or -1 when unknown.
int64_t available_host_memory();
// "1.5 GiB", "640 MiB", "12 KiB", "12 B".
std::string format_bytes(double bytes);
// UserError "<what> needs X, but only Y of memory is available: <fix>" when `bytes` (a double, so
// that absurd sizes cannot overflow) exceeds the available host memory. No-op when unknown.
void check_host_memory(double bytes, const std::string& what, const std::string& fix);

}  // namespace scorch
