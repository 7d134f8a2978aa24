// Loss normalisation for gradient accumulation (ALGORITHMS.md §1): a token-level loss is divided by
// the number of target tokens of the WHOLE optimizer step — every micro-batch of every rank — not
// by each micro-batch's own count. Then the accumulated gradient is
//     sum over all target tokens of d(loss_token) / global_tokens
// which does not depend on how the batch is split (1×8, 4×2 and 8×1 give the same gradients up to
// fp32 rounding). Per-micro-batch means weight a token of a short micro-batch more: the bug
// transformers had before 4.46.
//
// How a trainer uses it (counts must be known before the first backward, so the step's
// micro-batches are collated first — they are anyway, to count tokens for the progress bar):
//   std::vector<int64_t> counts;  for (auto& mb : micro_batches) counts.push_back(mb.num_target_tokens);
//   const double denom = global_token_count(counts, reducer);        // all-reduced over ranks
//   for (auto& mb : micro_batches) (sum_of_token_losses(mb) / denom).backward();
// With data parallelism the gradient all-reduce must then SUM the ranks' gradients (each rank's
// losses already carry the global denominator); if it averages, multiply the loss by world_size.
#pragma once
#include <cstdint>
#include <vector>

namespace scorch {

// The one collective loss normalisation needs. dist/ provides the process-group implementation.
class Reducer {
 public:
  virtual ~Reducer() = default;
  virtual double all_reduce_sum(double value) = 0;
};

// Single process: the sum over ranks is the local value.
class IdentityReducer : public Reducer {
 public:
  double all_reduce_sum(double value) override { return value; }
};

// Sum of `micro_batch_tokens` over this rank's micro-batches and (through `reducer`; nullptr =
// single process) over all ranks. Never returns less than 1, so a step whose micro-batches hold no
// target token gives a zero loss instead of 0/0. Throws std::invalid_argument for a negative count.
double global_token_count(const std::vector<int64_t>& micro_batch_tokens, Reducer* reducer = nullptr);

}  // namespace scorch
