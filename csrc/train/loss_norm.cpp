// Global token count for loss normalisation (see loss_norm.h).
#include "train/loss_norm.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace scorch {

double global_token_count(const std::vector<int64_t>& micro_batch_tokens, Reducer* reducer) {
  double local = 0.0;
  for (const int64_t n : micro_batch_tokens) {
    if (n < 0) throw std::invalid_argument("global_token_count: negative token count " + std::to_string(n));
    local += static_cast<double>(n);
  }
  const double total = reducer ? reducer->all_reduce_sum(local) : local;
  return std::max(total, 1.0);
}

}  // namespace scorch
