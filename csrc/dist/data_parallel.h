// Data parallelism on a dist::Group (ALGORITHMS.md §1, DESIGN.md "Distributed"): every rank holds
// the whole model, runs its own share of the batch, and the ranks' gradients are SUMMED — each
// rank's loss is already divided by the GLOBAL unit count (train/loss_norm.h), so the sum is the
// gradient of the global mean and a 2-rank run equals a 1-rank run with twice the batch.
//
// Gradients travel in flat buckets of about bucket_bytes (one all-reduce per bucket instead of one
// per parameter), after the step's last backward. The all-reduce does not overlap the backward
// (no autograd hooks): on CPU/Gloo it is a few ms of a multi-second step for the quickstart model
// (tools/bench/dist), so overlap would not pay there; large models on NCCL would gain from it.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "dist/dist.h"

namespace scorch::dist {

using TensorMap = std::map<std::string, at::Tensor>;

// Copies rank `root`'s values of every tensor into the others' (in place; same names and shapes).
void broadcast_tensors(Group& group, const TensorMap& tensors, int root = 0);

// Sums the .grad() of every parameter that requires grad over the ranks, in place, in buckets of
// about `bucket_bytes`. A parameter without a gradient on this rank contributes zeros (and gets a
// zero gradient), so every rank ends with the same set of gradients. Returns the number of
// all-reduce calls made.
int64_t all_reduce_gradients(Group& group, const TensorMap& params, int64_t bucket_bytes);

// Step metrics from every rank, merged: a key ending in "max" (or starting "time/") takes the
// maximum over the ranks that report it, one ending in "min" the minimum, every other key the mean
// over the ranks that report it (ranks run equal shares of the batch). Every rank gets the result.
std::map<std::string, double> merge_metrics(Group& group, const std::map<std::string, double>& local);

// ZeRO-1 ownership: parameter name -> owning rank, balancing element counts greedily over the
// names in sorted order (deterministic, the same on every rank, independent of the run).
std::map<std::string, int> partition_parameters(const TensorMap& params, int world_size);

}  // namespace scorch::dist
