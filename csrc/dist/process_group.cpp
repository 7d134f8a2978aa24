// c10d process groups behind scorch::dist::Group (dist.h). The wheel's libtorch contains c10d,
// gloo and (CUDA wheels) NCCL; ProcessGroupGloo.hpp needs gloo's header names, which
// cmake/gloo_shim declares (see its README.md).
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <ATen/ATen.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <stdexcept>

#include "common/error.h"
#include "common/log.h"
#include "dist/dist.h"

namespace scorch::dist {

// Defined in nccl_backend.cpp (CUDA builds with nccl.h), else below: a UserError.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                    int size, int local_rank, std::chrono::milliseconds timeout);
bool nccl_available();

struct Group::Impl {
  int rank = 0, size = 1, local_rank = 0;
  std::string backend;
  double timeout_s = 600;
  c10::Device device = c10::kCPU;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> pg;

  // Runs one collective and waits for it; a failure (dead peer, timeout) becomes one message.
  template <typename F>
  void run(const char* what, F&& start) {
    try {
      c10::intrusive_ptr<c10d::Work> work = start();
      work->wait();
    } catch (const std::exception& e) {
      std::string msg = e.what();
      if (const auto cut = msg.find("\nException raised from"); cut != std::string::npos) msg.resize(cut);
      throw std::runtime_error("rank " + std::to_string(rank) + ": collective " + what + " failed (" + backend +
                               ", timeout " + std::to_string(static_cast<int64_t>(timeout_s)) +
                               " s): another rank died, hung or disagrees. " + msg);
    }
  }
  at::Tensor on_device(const at::Tensor& t) const { return t.device() == device ? t : t.to(device); }
};

Group::Group(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Group::~Group() = default;
int Group::rank() const { return impl_->rank; }
int Group::size() const { return impl_->size; }
int Group::local_rank() const { return impl_->local_rank; }
const std::string& Group::backend() const { return impl_->backend; }
double Group::timeout_s() const { return impl_->timeout_s; }

// In-place collectives on a tensor that may live elsewhere than the group's device (CUDA tensors
// with a Gloo group, say) or be non-contiguous: through a contiguous copy on the group's device.
template <typename F>
static void in_place(at::Tensor& t, const c10::Device& device, F&& op) {
  if (t.device() == device && t.is_contiguous()) {
    op(t);
    return;
  }
  at::Tensor staged = t.to(device).contiguous();
  op(staged);
  t.copy_(staged);
}

void Group::all_reduce_sum(at::Tensor& t) {
  in_place(t, impl_->device, [&](at::Tensor& x) {
    std::vector<at::Tensor> v{x};
    impl_->run("all_reduce", [&] { return impl_->pg->allreduce(v); });
  });
}

void Group::all_reduce_max(at::Tensor& t) {
  in_place(t, impl_->device, [&](at::Tensor& x) {
    std::vector<at::Tensor> v{x};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::MAX;
    impl_->run("all_reduce(max)", [&] { return impl_->pg->allreduce(v, o); });
  });
}

void Group::broadcast(at::Tensor& t, int root) {
  in_place(t, impl_->device, [&](at::Tensor& x) {
    std::vector<at::Tensor> v{x};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    impl_->run("broadcast", [&] { return impl_->pg->broadcast(v, o); });
  });
}

std::vector<at::Tensor> Group::all_gather(const at::Tensor& t) {
  std::vector<at::Tensor> in{impl_->on_device(t).contiguous()};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < impl_->size; ++r) out[0].push_back(at::empty_like(in[0]));
  impl_->run("all_gather", [&] { return impl_->pg->allgather(out, in); });
  return out[0];
}

at::Tensor Group::reduce_scatter_sum(const at::Tensor& t) {
  if (t.dim() == 0 || t.size(0) % impl_->size != 0) {
    throw std::invalid_argument("reduce_scatter_sum: the first dimension (" + std::to_string(t.dim() ? t.size(0) : 0) +
                                ") must be a multiple of the world size " + std::to_string(impl_->size));
  }
  std::vector<at::Tensor> chunks = impl_->on_device(t).contiguous().chunk(impl_->size, 0);
  std::vector<std::vector<at::Tensor>> in(1);
  for (auto& c : chunks) in[0].push_back(c.contiguous());
  std::vector<at::Tensor> out{at::empty_like(in[0][0])};
  impl_->run("reduce_scatter", [&] { return impl_->pg->reduce_scatter(out, in); });
  return out[0];
}

void Group::barrier() {
  // A barrier as a one-element all-reduce: the same timeout and failure handling as every other
  // collective, and no device-id guessing for NCCL.
  at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(impl_->device));
  all_reduce_sum(one);
}

double Group::all_reduce_sum(double value) {
  at::Tensor t = at::full({1}, value, at::TensorOptions().dtype(at::kDouble).device(impl_->device));
  all_reduce_sum(t);
  return t.cpu().item<double>();
}

std::vector<std::string> Group::all_gather_bytes(const std::string& bytes) {
  at::Tensor len = at::full({1}, static_cast<int64_t>(bytes.size()), at::TensorOptions().dtype(at::kLong).device(impl_->device));
  std::vector<at::Tensor> lens = all_gather(len);
  int64_t longest = 1;
  std::vector<int64_t> sizes;
  for (auto& l : lens) sizes.push_back(l.cpu().item<int64_t>()), longest = std::max(longest, sizes.back());
  at::Tensor buf = at::zeros({longest}, at::kByte);
  std::memcpy(buf.data_ptr(), bytes.data(), bytes.size());
  std::vector<at::Tensor> all = all_gather(impl_->on_device(buf));
  std::vector<std::string> out;
  for (size_t r = 0; r < all.size(); ++r) {
    at::Tensor c = all[r].cpu();
    out.emplace_back(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(sizes[r]));
  }
  return out;
}

void Group::wait_for_root(const std::string& tag, double timeout_s) {
  const std::string key = "root_done/" + tag;
  try {
    if (impl_->rank == 0) {
      impl_->store->set(key, std::vector<uint8_t>{1});
    } else {
      impl_->store->wait({key}, std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    }
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (const auto cut = msg.find("\nException raised from"); cut != std::string::npos) msg.resize(cut);
    throw std::runtime_error("rank " + std::to_string(impl_->rank) + ": waiting for rank 0 to finish '" + tag +
                             "' failed (rank 0 died, or took longer than " +
                             std::to_string(static_cast<int64_t>(timeout_s)) + " s): " + msg);
  }
}

std::unique_ptr<Group> init_process_group(const LaunchEnv& env, const std::string& backend_choice, double timeout_s) {
  if (!env.launched) return nullptr;
  // A peer that dies closes its sockets; the next write to them must fail as an error (EPIPE,
  // reported as a failed collective) rather than kill this rank with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  if (backend_choice != "auto" && backend_choice != "gloo" && backend_choice != "nccl") {
    throw UserError("dist.backend = '" + backend_choice + "' is not one of auto | nccl | gloo");
  }
  const bool cuda = at::hasCUDA();
  std::string backend = backend_choice == "auto" ? (cuda && nccl_available() ? "nccl" : "gloo") : backend_choice;
  if (backend == "nccl" && !cuda) {
    throw UserError("dist.backend = nccl needs CUDA, and this process sees no GPU; use dist.backend: gloo (or auto)");
  }
  if (backend == "nccl" && !nccl_available()) {
    throw UserError("dist.backend = nccl: this scorch build has no NCCL (built without CUDA or nccl.h); "
                    "use dist.backend: gloo, or rebuild with CUDA");
  }
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));

  auto impl = std::make_unique<Group::Impl>();
  impl->rank = env.rank, impl->size = env.world_size, impl->local_rank = env.local_rank;
  impl->backend = backend;
  impl->timeout_s = timeout_s;

  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0 && !env.agent_store;
  so.numWorkers = env.agent_store ? std::nullopt : std::optional<size_t>(static_cast<size_t>(env.world_size));
  so.waitWorkers = !env.agent_store;
  so.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> tcp;
  try {
    tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (const auto cut = msg.find("\nException raised from"); cut != std::string::npos) msg.resize(cut);
    throw UserError("rank " + std::to_string(env.rank) + ": rendezvous at " + env.master_addr + ":" +
                    std::to_string(env.master_port) + " failed within " + std::to_string(static_cast<int64_t>(timeout_s)) +
                    " s (" + msg + "). Check MASTER_ADDR/MASTER_PORT, that the port is free on rank 0's host, and "
                    "that all " + std::to_string(env.world_size) + " ranks started");
  }
  impl->store = c10::make_intrusive<c10d::PrefixStore>("scorch", tcp);

  if (backend == "nccl") {
    impl->device = c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
    impl->pg = make_nccl_backend(c10::make_intrusive<c10d::PrefixStore>("nccl", impl->store), env.rank,
                                 env.world_size, env.local_rank, timeout);
  } else {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("gloo", impl->store),
                                                          env.rank, env.world_size, options);
  }
  auto group = std::make_unique<Group>(std::move(impl));
  group->barrier();  // every rank is connected before anyone proceeds
  log::info("process group ready: ", backend, ", world size ", env.world_size, ", timeout ", timeout_s, " s");
  return group;
}

}  // namespace scorch::dist
