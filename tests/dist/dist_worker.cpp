// A process of the 2-rank collective tests (test_dist.cpp starts it through tools/launch or by
// hand with RANK/WORLD_SIZE/MASTER_*): `scorch_dist_worker collectives | die TIMEOUT_S`.
//   collectives: every wrapper of dist::Group against values each rank can compute for all ranks;
//                prints "ok" and exits 0, or names the first mismatch and exits 1.
//   die:         rank 1 SIGKILLs itself after the first collective; rank 0 keeps all-reducing and
//                must fail with a message (the test checks its exit code and how long it took).
#include <ATen/ATen.h>
#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include "dist/data_parallel.h"
#include "dist/dist.h"

using namespace scorch;

namespace {
int failures = 0;
void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  const double err = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  const double scale = want.to(at::kDouble).abs().max().item<double>() + 1e-30;
  if (!(got.sizes() == want.sizes()) || err / scale > 1e-6) {
    std::cerr << "MISMATCH " << what << ": relative error " << err / scale << "\n";
    ++failures;
  }
}
// Rank r's input: deterministic, nonzero, different per rank.
at::Tensor input(int r, int64_t n) { return at::arange(n, at::kDouble).mul(0.25).add(1.0 + 10.0 * r).to(at::kFloat); }
}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "collectives";
  const double timeout = argc > 2 ? std::stod(argv[2]) : 30.0;
  try {
    auto group = dist::init_process_group(dist::read_launch_env(), "gloo", timeout);
    if (!group) {
      std::cerr << "not launched (RANK/WORLD_SIZE unset)\n";
      return 2;
    }
    const int r = group->rank(), W = group->size();
    if (mode == "die") {
      for (int i = 0;; ++i) {
        at::Tensor t = at::ones({4});
        group->all_reduce_sum(t);
        if (r == 1) ::kill(::getpid(), SIGKILL);
        ::usleep(20000);
      }
    }
    // all_reduce: Σ_r input(r)
    at::Tensor want_sum = at::zeros({7});
    for (int q = 0; q < W; ++q) want_sum += input(q, 7);
    at::Tensor t = input(r, 7);
    group->all_reduce_sum(t);
    expect_close(t, want_sum, "all_reduce_sum");
    at::Tensor mx = input(r, 5);
    group->all_reduce_max(mx);
    expect_close(mx, input(W - 1, 5), "all_reduce_max");
    // Non-contiguous input reduced in place.
    at::Tensor base = input(r, 12).view({3, 4});
    at::Tensor col = base.t();
    group->all_reduce_sum(col);
    at::Tensor want_col = at::zeros({3, 4});
    for (int q = 0; q < W; ++q) want_col += input(q, 12).view({3, 4});
    expect_close(base, want_col, "all_reduce_sum(non-contiguous)");
    // broadcast from the last rank
    at::Tensor b = input(r, 6);
    group->broadcast(b, W - 1);
    expect_close(b, input(W - 1, 6), "broadcast");
    // all_gather
    auto gathered = group->all_gather(input(r, 3));
    if (static_cast<int>(gathered.size()) != W) ++failures, std::cerr << "MISMATCH all_gather size\n";
    for (int q = 0; q < W && q < static_cast<int>(gathered.size()); ++q) expect_close(gathered[q], input(q, 3), "all_gather[" + std::to_string(q) + "]");
    // reduce_scatter: chunk r of Σ_q input(q)
    at::Tensor rs = group->reduce_scatter_sum(input(r, 4 * W));
    at::Tensor want_rs = at::zeros({4 * W});
    for (int q = 0; q < W; ++q) want_rs += input(q, 4 * W);
    expect_close(rs, want_rs.slice(0, 4 * r, 4 * r + 4), "reduce_scatter_sum");
    // host values and bytes
    const double s = group->all_reduce_sum(1.5 + r);
    double want_s = 0;
    for (int q = 0; q < W; ++q) want_s += 1.5 + q;
    if (std::abs(s - want_s) > 1e-12) ++failures, std::cerr << "MISMATCH all_reduce_sum(double)\n";
    auto bytes = group->all_gather_bytes(std::string(static_cast<size_t>(r + 1), static_cast<char>('a' + r)));
    for (int q = 0; q < W; ++q) {
      if (bytes[q] != std::string(static_cast<size_t>(q + 1), static_cast<char>('a' + q))) ++failures, std::cerr << "MISMATCH all_gather_bytes\n";
    }
    // gradients in buckets small enough to need several calls, one parameter without a gradient
    dist::TensorMap params;
    for (int k = 0; k < 5; ++k) {
      at::Tensor p = at::zeros({10 + k}).requires_grad_(true);
      if (k != 3) p.mutable_grad() = input(r, 10 + k) * (k + 1);
      params["p" + std::to_string(k)] = p;
    }
    const int64_t calls = dist::all_reduce_gradients(*group, params, 64);
    if (calls < 3) ++failures, std::cerr << "MISMATCH bucket count " << calls << "\n";
    for (int k = 0; k < 5; ++k) {
      at::Tensor want = at::zeros({10 + k});
      if (k != 3) for (int q = 0; q < W; ++q) want += input(q, 10 + k) * (k + 1);
      expect_close(params["p" + std::to_string(k)].grad(), want, "gradient p" + std::to_string(k));
    }
    // metrics: mean, max, min, time/ = max, keys only some ranks report
    std::map<std::string, double> m{{"loss", 1.0 + r}, {"len_max", 3.0 * r}, {"len_min", 3.0 * r}, {"time/step", 2.0 + r}};
    if (r == 0) m["eval_accuracy"] = 0.5;
    auto merged = dist::merge_metrics(*group, m);
    double mean_loss = 0;
    for (int q = 0; q < W; ++q) mean_loss += 1.0 + q;
    mean_loss /= W;
    if (std::abs(merged["loss"] - mean_loss) > 1e-12 || merged["len_max"] != 3.0 * (W - 1) || merged["len_min"] != 0.0 ||
        merged["time/step"] != 2.0 + (W - 1) || merged["eval_accuracy"] != 0.5) {
      ++failures, std::cerr << "MISMATCH merge_metrics\n";
    }
    group->wait_for_root("done", timeout);
    group->barrier();
    if (failures == 0) std::printf("rank %d ok\n", r);
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "worker error: " << e.what() << "\n";
    return 1;
  }
}
