// Distributed execution through PyTorch's c10d (DESIGN.md "Distributed"): torchrun's environment
// contract, a TCPStore rendezvous, and a process group (ProcessGroupNCCL with CUDA, one GPU per
// local rank; ProcessGroupGloo otherwise). Without RANK/WORLD_SIZE in the environment a run is a
// single process: world size 1 and no process group.
//
// Rendezvous. torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT and, by default, TORCHELASTIC_USE_AGENT_STORE=True: its agent already serves a
// TCPStore at MASTER_ADDR:MASTER_PORT, so every rank (rank 0 included) connects as a client.
// Otherwise (tools/launch, Slurm, by hand) rank 0 serves the store. Keys live under "scorch/".
//
// Failure. Every collective runs with the configured timeout (dist.timeout_s). A rank that dies
// closes its connections: the others' next collective fails at once with an error naming the
// collective, and they exit non-zero; a rank that hangs makes the others fail at the timeout.
// Long one-sided phases (rank 0 saving a checkpoint or evaluating while the others wait) use
// wait_for_root, a store wait with its own, longer timeout, instead of a collective.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace scorch::dist {

struct LaunchEnv {
  bool launched = false;  // RANK and WORLD_SIZE are set
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;  // TORCHELASTIC_USE_AGENT_STORE=True (torchrun's agent hosts the store)
};

// Reads the variables through `get` (getenv by default). Throws UserError naming the variable for
// malformed or inconsistent values (RANK outside WORLD_SIZE, RANK without WORLD_SIZE, a bad port).
LaunchEnv parse_launch_env(const std::function<const char*(const char*)>& get);
LaunchEnv read_launch_env();

class Group {
 public:
  struct Impl;
  explicit Group(std::unique_ptr<Impl> impl);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const;
  int size() const;
  int local_rank() const;
  const std::string& backend() const;  // "gloo" | "nccl"
  double timeout_s() const;

  // In place, every rank's tensor of the same shape and dtype (on the group's device for NCCL).
  void all_reduce_sum(at::Tensor& tensor);
  void all_reduce_max(at::Tensor& tensor);
  void broadcast(at::Tensor& tensor, int root = 0);
  // Every rank's `tensor` (same shape on all ranks), in rank order.
  std::vector<at::Tensor> all_gather(const at::Tensor& tensor);
  // `tensor` is [size() * n, ...] on every rank; returns this rank's chunk [n, ...] summed over ranks.
  at::Tensor reduce_scatter_sum(const at::Tensor& tensor);
  void barrier();

  // Conveniences on host values (through a small tensor on the group's device).
  double all_reduce_sum(double value);
  // Every rank's bytes, in rank order (any lengths).
  std::vector<std::string> all_gather_bytes(const std::string& bytes);
  // Rank 0 calls it when a one-sided phase named `tag` is done; the other ranks block until then,
  // up to `timeout_s` (UserError naming the phase after it). Tags must be unique per run.
  void wait_for_root(const std::string& tag, double timeout_s);

 private:
  std::unique_ptr<Impl> impl_;
};

// The process group for `env` (nullptr when not launched). backend: auto | nccl | gloo (auto =
// nccl when CUDA is available, else gloo). Throws UserError for nccl without CUDA or NCCL, and
// when the rendezvous does not complete within `timeout_s`.
std::unique_ptr<Group> init_process_group(const LaunchEnv& env, const std::string& backend, double timeout_s);

// The process-wide group of this run (set by `scorch train` after init_process_group; nullptr in
// a single process). rank()/world_size()/local_rank() read it (0 / 1 / 0 without a group).
void set_current(Group* group);
Group* current();
int rank();
int world_size();
int local_rank();

}  // namespace scorch::dist
