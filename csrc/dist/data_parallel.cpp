#include "dist/data_parallel.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>

namespace scorch::dist {

void broadcast_tensors(Group& group, const TensorMap& tensors, int root) {
  for (const auto& [name, t] : tensors) {
    at::Tensor v = t.detach();
    if (v.is_contiguous()) {
      group.broadcast(v, root);
    } else {
      at::Tensor c = v.contiguous();
      group.broadcast(c, root);
      v.copy_(c);
    }
  }
}

int64_t all_reduce_gradients(Group& group, const TensorMap& params, int64_t bucket_bytes) {
  // Buckets of same-dtype gradients, in name order (the same on every rank).
  std::vector<at::Tensor> grads;
  for (const auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  int64_t calls = 0;
  size_t i = 0;
  while (i < grads.size()) {
    size_t j = i;
    int64_t bytes = 0;
    while (j < grads.size() && grads[j].scalar_type() == grads[i].scalar_type() &&
           (j == i || bytes + grads[j].nbytes() <= static_cast<uint64_t>(bucket_bytes))) {
      bytes += static_cast<int64_t>(grads[j].nbytes());
      ++j;
    }
    std::vector<at::Tensor> flat_parts;
    for (size_t k = i; k < j; ++k) flat_parts.push_back(grads[k].reshape({-1}));
    at::Tensor flat = at::cat(flat_parts);
    group.all_reduce_sum(flat);
    int64_t offset = 0;
    for (size_t k = i; k < j; ++k) {
      const int64_t n = grads[k].numel();
      grads[k].copy_(flat.slice(0, offset, offset + n).view(grads[k].sizes()));
      offset += n;
    }
    ++calls;
    i = j;
  }
  return calls;
}

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

std::map<std::string, double> merge_metrics(Group& group, const std::map<std::string, double>& local) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : local) j[k] = v;
  std::map<std::string, std::vector<double>> all;
  for (const std::string& s : group.all_gather_bytes(j.dump())) {
    const nlohmann::json rank_metrics = nlohmann::json::parse(s);
    for (const auto& [k, v] : rank_metrics.items()) {
      all[k].push_back(v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN());
    }
  }
  std::map<std::string, double> out;
  for (const auto& [k, vs] : all) {
    if (ends_with(k, "max") || k.rfind("time/", 0) == 0) {
      out[k] = *std::max_element(vs.begin(), vs.end());
    } else if (ends_with(k, "min")) {
      out[k] = *std::min_element(vs.begin(), vs.end());
    } else {
      double s = 0;
      for (double v : vs) s += v;
      out[k] = s / static_cast<double>(vs.size());
    }
  }
  return out;
}

std::map<std::string, int> partition_parameters(const TensorMap& params, int world_size) {
  // Largest first onto the least-loaded rank (ties: lower rank), names breaking size ties.
  std::vector<std::pair<int64_t, std::string>> order;
  for (const auto& [name, p] : params) order.emplace_back(p.numel(), name);
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<int64_t> load(static_cast<size_t>(std::max(1, world_size)), 0);
  std::map<std::string, int> owner;
  for (const auto& [n, name] : order) {
    const auto it = std::min_element(load.begin(), load.end());
    owner[name] = static_cast<int>(it - load.begin());
    *it += n;
  }
  return owner;
}

}  // namespace scorch::dist
