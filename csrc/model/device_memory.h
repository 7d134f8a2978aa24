// Pre-flight memory checks on the device a job runs on: what a new allocation can still use, and a
// refusal (exit 2, naming the setting and the bytes) before an allocation that cannot fit, instead
// of an out-of-memory error halfway through. The host side is common/memory.h.
#pragma once
#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace scorch {

// Bytes a new allocation on `device` can use, or -1 when unknown. The CPU: the host's
// MemAvailable. CUDA: the driver's free memory plus what torch's caching allocator holds reserved
// but unused (freed activations it keeps for reuse are available to the next allocation).
int64_t available_memory(const c10::Device& device);

// UserError "<what> needs X, but only Y of <device> memory is available: <fix>" when `bytes` (a
// double, so that absurd sizes cannot overflow) exceeds available_memory(device). No-op when unknown.
void check_memory(const c10::Device& device, double bytes, const std::string& what, const std::string& fix);

}  // namespace scorch
