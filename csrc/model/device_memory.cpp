#include "model/device_memory.h"

#include <algorithm>

#include "common/error.h"
#include "common/memory.h"

#if defined(SCORCH_WITH_CUDA)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace scorch {

int64_t available_memory(const c10::Device& device) {
  if (device.is_cpu()) return available_host_memory();
#if defined(SCORCH_WITH_CUDA)
  if (device.is_cuda()) {
    const c10::DeviceIndex index = device.has_index() ? device.index() : c10::cuda::current_device();
    c10::cuda::CUDAGuard guard(index);
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
      (void)cudaGetLastError();  // clear the error for the next CUDA call
      return -1;
    }
    int64_t cached = 0;
    try {
      const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
      const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
      cached = std::max<int64_t>(0, stats.reserved_bytes[all].current - stats.allocated_bytes[all].current);
    } catch (const c10::Error&) {  // the allocator has not been initialised on this device yet
      cached = 0;
    }
    return static_cast<int64_t>(free) + cached;
  }
#endif
  return -1;
}

void check_memory(const c10::Device& device, double bytes, const std::string& what, const std::string& fix) {
  if (device.is_cpu()) {
    check_host_memory(bytes, what, fix);
    return;
  }
  const int64_t available = available_memory(device);
  if (available < 0 || bytes <= static_cast<double>(available)) return;
  throw UserError(what + " needs " + format_bytes(bytes) + ", but only " + format_bytes(static_cast<double>(available)) +
                  " of " + device.str() + " memory is available: " + fix);
}

}  // namespace scorch
