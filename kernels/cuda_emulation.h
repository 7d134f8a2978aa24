// A CPU emulation of the CUDA execution model that scorch's kernels use, so that their index
// arithmetic, shared memory, block barriers and warp collectives can be tested without a GPU
// (tests/kernels/test_kernels_emulated.cpp; the CUDA sources are compiled as C++ with
// SCORCH_CUDA_EMULATION defined, through kernels/cuda_compat.cuh). Not for production use.
//
// Model: a launch runs its blocks one after another. A block's threads are cooperative fibers
// (ucontext) on one OS thread: each runs until it reaches __syncthreads, a warp collective or its
// end. A warp collective (shuffles, ballot) releases once every live thread of the warp has arrived
// at one, __syncthreads once every live thread of the block has (a thread that returned counts as
// arrived, as on Volta and later). Threads waiting at different barriers -- a deadlock or a
// divergent collective on a GPU -- are an error here. The order in which runnable threads run is
// selectable (schedule()): a result that changes with it reveals a race. __shared__ variables are static (blocks do
// not overlap); dynamic shared memory starts filled with 0xFF bytes (NaN as float or double), so a
// read before a write shows. Numerics: __fmul_rn & co. are the plain IEEE operations (compile with
// -ffp-contract=off), rsqrtf is 1 / sqrtf and exp2f / expf are the C library's -- the hardware's
// approximate instructions are not emulated, so values are checked with tolerances, not bits.
// What this cannot find: races that no order of whole barrier-to-barrier runs exposes, memory-model
// and occupancy effects, out-of-bounds accesses that stay inside a CPU allocation, compiler bugs. The GPU tests (label gpu) remain the judge on hardware.
#pragma once
#include "kernels/cuda_emulation_schedule.h"

#include <c10/core/Device.h>
#include <strings.h>
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace scorch::emu {

constexpr int kWarpSize = 32;
constexpr size_t kFiberStack = 256 * 1024;

struct Fiber {
  enum State { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  dim3 index;
  int linear = 0;
  State state = kRunnable;
  int64_t warp_waits = 0, block_waits = 0;  // barriers passed so far (for the error message)
};

struct Block {
  dim3 block_index, block_dim, grid_dim;
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber* current = nullptr;
  std::vector<uint64_t> exchange;  // one slot per thread for warp collectives / syncthreads_or
  std::vector<unsigned char> dynamic_shared;
  std::function<void()> body;
};

inline Block*& current_block() {
  static Block* block = nullptr;
  return block;
}

inline void wait_at(Fiber::State state) {
  Block* b = current_block();
  Fiber* f = b->current;
  f->state = state;
  ++(state == Fiber::kAtWarpBarrier ? f->warp_waits : f->block_waits);
  swapcontext(&f->context, &b->scheduler);
}

inline void syncthreads() { wait_at(Fiber::kAtBlockBarrier); }
inline void syncwarp() { wait_at(Fiber::kAtWarpBarrier); }

inline void fiber_main() {
  Block* b = current_block();
  b->body();
  b->current->state = Fiber::kDone;
  swapcontext(&b->current->context, &b->scheduler);  // never resumed
}

inline void run_block(Block& b) {
  const size_t n = b.fibers.size();
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  if (schedule() == Schedule::kReverse) std::reverse(order.begin(), order.end());
  if (schedule() == Schedule::kShuffled) {  // a fixed permutation per block (xorshift)
    uint64_t x = 0x9E3779B97F4A7C15ull ^ (b.block_index.x * 0x100000001B3ull + b.block_index.y);
    for (size_t i = n; i > 1; --i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      std::swap(order[i - 1], order[x % i]);
    }
  }
  while (true) {
    for (const size_t i : order) {
      Fiber& f = b.fibers[i];
      if (f.state != Fiber::kRunnable) continue;
      b.current = &f;
      swapcontext(&b.scheduler, &f.context);
    }
    bool released = false;
    for (size_t w = 0; w < n; w += kWarpSize) {
      size_t live = 0, waiting = 0;
      for (size_t i = w; i < std::min(n, w + kWarpSize); ++i) {
        if (b.fibers[i].state == Fiber::kDone) continue;
        ++live;
        waiting += b.fibers[i].state == Fiber::kAtWarpBarrier;
      }
      if (live > 0 && waiting == live) {
        for (size_t i = w; i < std::min(n, w + kWarpSize); ++i) {
          if (b.fibers[i].state == Fiber::kAtWarpBarrier) b.fibers[i].state = Fiber::kRunnable;
        }
        released = true;
      }
    }
    if (released) continue;
    size_t live = 0, at_block = 0;
    for (const Fiber& f : b.fibers) {
      if (f.state == Fiber::kDone) continue;
      ++live;
      at_block += f.state == Fiber::kAtBlockBarrier;
    }
    if (live == 0) return;
    if (at_block != live) {
      std::string where;
      for (size_t w = 0; w < n; w += kWarpSize) {
        int counts[4] = {0, 0, 0, 0};
        for (size_t i = w; i < std::min(n, w + kWarpSize); ++i) ++counts[b.fibers[i].state];
        if (counts[Fiber::kAtWarpBarrier] > 0) {
          where += " warp " + std::to_string(w / kWarpSize) + ": " + std::to_string(counts[Fiber::kAtWarpBarrier]) +
                   " lanes at a warp collective, " + std::to_string(counts[Fiber::kAtBlockBarrier]) +
                   " at __syncthreads, " + std::to_string(counts[Fiber::kDone]) + " returned (warp / block waits";
          for (size_t i = w; i < std::min(n, w + kWarpSize); ++i) {
            where += " " + std::to_string(b.fibers[i].warp_waits) + "/" + std::to_string(b.fibers[i].block_waits);
          }
          where += ");";
        }
      }
      throw std::logic_error("CUDA emulation: threads of a block wait at different barriers (a warp collective "
                             "that not every live lane of its warp reached, or __syncthreads in divergent code):" +
                             where);
    }
    for (Fiber& f : b.fibers) {
      if (f.state == Fiber::kAtBlockBarrier) f.state = Fiber::kRunnable;
    }
  }
}

// Warp collectives: every lane writes its value, waits for its warp, reads, waits again (so no lane
// overwrites its slot before every lane has read).
template <typename T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "8-byte values at most");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
T from_bits(uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}
template <typename T, typename SourceLane>
T exchange(T v, SourceLane&& source_lane) {
  Block* b = current_block();
  const int me = b->current->linear, lane = me % kWarpSize, base = me - lane;
  b->exchange[me] = to_bits(v);
  syncwarp();
  const int src = source_lane(lane);
  const T out = from_bits<T>(b->exchange[base + src]);
  syncwarp();
  return out;
}
template <typename T>
T shfl_xor(T v, int lane_mask, int width = kWarpSize) {
  return exchange(v, [&](int lane) {
    const int segment = lane / width * width, src = lane ^ lane_mask;
    return src >= segment && src < segment + width ? src : lane;
  });
}
template <typename T>
T shfl_up(T v, unsigned delta, int width = kWarpSize) {
  return exchange(v, [&](int lane) {
    const int segment = lane / width * width, src = lane - static_cast<int>(delta);
    return src >= segment ? src : lane;
  });
}
template <typename T>
T shfl(T v, int src_lane, int width = kWarpSize) {
  return exchange(v, [&](int lane) { return lane / width * width + ((src_lane % width) + width) % width; });
}
inline unsigned ballot(bool predicate) {
  Block* b = current_block();
  const int me = b->current->linear, lane = me % kWarpSize, base = me - lane;
  b->exchange[me] = predicate ? 1 : 0;
  syncwarp();
  unsigned bits = 0;
  for (int i = 0; i < kWarpSize && base + i < static_cast<int>(b->fibers.size()); ++i) {
    if (b->fibers[base + i].state != Fiber::kDone && b->exchange[base + i]) bits |= 1u << i;
  }
  syncwarp();
  return bits;
}
inline int syncthreads_or(int predicate) {
  Block* b = current_block();
  const int me = b->current->linear;
  b->exchange[me] = predicate ? 1 : 0;
  syncthreads();
  int any = 0;
  for (size_t i = 0; i < b->fibers.size(); ++i) {
    if (b->fibers[i].state != Fiber::kDone && b->exchange[i]) any = 1;
  }
  syncthreads();
  return any;
}

// kernel<<<grid, block, shared_bytes>>>(args...): every block in turn, its threads as fibers.
template <typename... Params>
struct Launch {
  dim3 grid, block;
  size_t shared_bytes;
  void (*kernel)(Params...);

  template <typename... Args>
  void operator()(Args&&... args) const {
    const std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
    const size_t threads = static_cast<size_t>(block.x) * block.y * block.z;
    if (threads == 0 || threads > 1024) throw std::invalid_argument("CUDA emulation: 1..1024 threads per block");
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) throw std::invalid_argument("CUDA emulation: an empty grid");
    if (shared_bytes > 48 * 1024) throw std::invalid_argument("CUDA emulation: over 48 KiB of dynamic shared memory");
    Block b;
    b.block_dim = block;
    b.grid_dim = grid;
    b.fibers.resize(threads);
    for (Fiber& f : b.fibers) f.stack = std::make_unique<char[]>(kFiberStack);
    b.body = [&] { std::apply(kernel, params); };
    for (unsigned z = 0; z < grid.z; ++z)
      for (unsigned y = 0; y < grid.y; ++y)
        for (unsigned x = 0; x < grid.x; ++x) {
          b.block_index = dim3(x, y, z);
          b.exchange.assign(threads, 0);
          b.dynamic_shared.assign(shared_bytes, 0xFF);
          for (size_t i = 0; i < threads; ++i) {
            Fiber& f = b.fibers[i];
            f.linear = static_cast<int>(i);
            f.index = dim3(static_cast<unsigned>(i % block.x), static_cast<unsigned>(i / block.x % block.y),
                           static_cast<unsigned>(i / (static_cast<size_t>(block.x) * block.y)));
            f.state = Fiber::kRunnable;
            f.warp_waits = f.block_waits = 0;
            getcontext(&f.context);
            f.context.uc_stack.ss_sp = f.stack.get();
            f.context.uc_stack.ss_size = kFiberStack;
            f.context.uc_link = nullptr;
            makecontext(&f.context, &fiber_main, 0);
          }
          current_block() = &b;
          run_block(b);
          current_block() = nullptr;
        }
  }
};
template <typename... Params>
Launch<Params...> launch(dim3 grid, dim3 block, size_t shared_bytes, void (*kernel)(Params...)) {
  return Launch<Params...>{grid, block, shared_bytes, kernel};
}

struct DeviceProperties {
  int multiProcessorCount = 132;  // an H100 / H200
};

}  // namespace scorch::emu

// --- what the kernels' sources use ------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define threadIdx (::scorch::emu::current_block()->current->index)
#define blockIdx (::scorch::emu::current_block()->block_index)
#define blockDim (::scorch::emu::current_block()->block_dim)
#define gridDim (::scorch::emu::current_block()->grid_dim)
#define __syncthreads() ::scorch::emu::syncthreads()
#define __syncthreads_or(predicate) ::scorch::emu::syncthreads_or(predicate)
#define __shfl_xor_sync(mask, ...) ::scorch::emu::shfl_xor(__VA_ARGS__)
#define __shfl_up_sync(mask, ...) ::scorch::emu::shfl_up(__VA_ARGS__)
#define __shfl_sync(mask, ...) ::scorch::emu::shfl(__VA_ARGS__)
#define __ballot_sync(mask, predicate) ::scorch::emu::ballot(predicate)
#define C10_CUDA_KERNEL_LAUNCH_CHECK() \
  do {                                 \
  } while (0)
#define SCORCH_LAUNCH(grid, block, shared_bytes, stream, ...) ::scorch::emu::launch(grid, block, shared_bytes, __VA_ARGS__)
#define SCORCH_EXTERN_SHARED(type, name) \
  type* name = reinterpret_cast<type*>(::scorch::emu::current_block()->dynamic_shared.data())

using std::isfinite;
using std::isinf;
using std::isnan;
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline int __ffs(unsigned x) { return ffs(static_cast<int>(x)); }
template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) {
  return b < a ? b : a;
}
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) {
  return a < b ? b : a;
}

namespace c10::cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
};
inline int getCurrentCUDAStream() { return 0; }
}  // namespace c10::cuda
namespace at::cuda {
inline const ::scorch::emu::DeviceProperties* getCurrentDeviceProperties() {
  static const ::scorch::emu::DeviceProperties properties;
  return &properties;
}
}  // namespace at::cuda
