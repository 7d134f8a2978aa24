// bench_rewards: math_answer throughput (samples/s) on synthetic completions, one thread (the
// baseline, measured in the same run) versus 2, 4, ... and all hardware threads (std::thread,
// one RewardSet per thread on a contiguous shard). Also times extraction alone, to show where
// the time goes. Usage: bench_rewards [num_samples=100000] [repeats=3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "rewards/math_answer.h"
#include "rewards/reward.h"

namespace {

using scorch::rewards::RewardBatch;
using scorch::rewards::RewardSample;

// Completions of realistic shape (~300-700 chars of reasoning, then an answer in one of the
// forms the extractor handles), and gold answers in the forms datasets use.
std::vector<RewardSample> synthesize(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  const char* filler[] = {"First, we note the quantities given in the problem. ",
                          "Next, combine the two partial results carefully. ",
                          "We check the units and simplify the expression. ",
                          "Let x be the unknown; then 3x + 2 = 11, so x = 3. ",
                          "Substituting back, both sides agree, as expected. "};
  std::vector<RewardSample> out(n);
  for (size_t i = 0; i < n; ++i) {
    RewardSample& s = out[i];
    s.prompt = "Problem " + std::to_string(i) + ": compute the value.";
    s.group = static_cast<int64_t>(i / 8);
    std::string body;
    const int sentences = uni(6, 14);
    for (int k = 0; k < sentences; ++k) body += filler[uni(0, 4)];
    const int a = uni(1, 5000), b = uni(2, 9);
    const bool right = uni(0, 9) < 6;
    std::string answer, gold;
    switch (uni(0, 5)) {
      case 0:  // boxed integer, gold with thousands separator
        answer = "\\boxed{" + std::to_string(a * 1000 + (right ? 0 : 1)) + "}";
        gold = std::to_string(a) + "," + std::to_string(1000 + 0).substr(1);
        break;
      case 1:  // boxed fraction vs decimal gold
        answer = "\\boxed{\\frac{1}{" + std::to_string(b) + "}}";
        gold = std::to_string((right ? 1.0 : 2.0) / b).substr(0, 8);
        break;
      case 2:  // answer phrase with LaTeX
        answer = "The final answer is $" + std::to_string(right ? a : a + 1) + "\\text{ cm}$.";
        gold = std::to_string(a);
        break;
      case 3:  // GSM8K style
        answer = "#### " + std::to_string(right ? a : -a);
        gold = "Some solution text.\n#### " + std::to_string(a);
        break;
      case 4:  // last number only
        answer = "so in total we get " + std::to_string(right ? a : a + 2) + " apples";
        gold = std::to_string(a);
        break;
      default:  // percentages and tuples
        answer = right ? "\\boxed{(" + std::to_string(b) + ", " + std::to_string(a) + ")}" : "\\boxed{50\\%}";
        gold = "(" + std::to_string(b) + "," + std::to_string(a) + ")";
        break;
    }
    s.completion = body + answer;
    s.fields["answer"] = gold;
  }
  return out;
}

RewardBatch make_batch(const std::vector<RewardSample>& all, size_t begin, size_t end) {
  RewardBatch b;
  b.samples.assign(all.begin() + static_cast<std::ptrdiff_t>(begin), all.begin() + static_cast<std::ptrdiff_t>(end));
  const int64_t first = b.samples.empty() ? 0 : b.samples.front().group;
  for (auto& s : b.samples) s.group -= first;
  b.index_groups();
  return b;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Scores `shards` concurrently (one thread and one RewardSet each); returns (seconds, sum of rewards).
std::pair<double, double> run(const std::vector<RewardBatch>& shards) {
  std::vector<double> sums(shards.size(), 0.0);
  std::vector<std::unique_ptr<scorch::rewards::RewardSet>> sets;
  scorch::RewardSpec spec;
  spec.name = "math_answer";
  for (size_t t = 0; t < shards.size(); ++t) sets.push_back(std::make_unique<scorch::rewards::RewardSet>(std::vector<scorch::RewardSpec>{spec}));
  const double t0 = now_s();
  std::vector<std::thread> threads;
  for (size_t t = 0; t < shards.size(); ++t) {
    threads.emplace_back([&, t] {
      const auto out = sets[t]->score(shards[t]);
      for (double v : out.total) sums[t] += v;
    });
  }
  for (auto& th : threads) th.join();
  const double dt = now_s() - t0;
  double sum = 0;
  for (double s : sums) sum += s;
  return {dt, sum};
}

}  // namespace

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 100000;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 3;
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const auto samples = synthesize(n, 1234);
  size_t chars = 0;
  for (const auto& s : samples) chars += s.completion.size();
  std::printf("math_answer throughput: %zu synthetic completions (mean %.0f chars), best of %d, %u hardware threads\n",
              n, static_cast<double>(chars) / static_cast<double>(n), repeats, hw);

  // Extraction alone, single thread.
  double best_extract = 1e30;
  size_t extracted = 0;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now_s();
    extracted = 0;
    for (const auto& s : samples) extracted += scorch::rewards::math::extract_answer(s.completion).ok();
    best_extract = std::min(best_extract, now_s() - t0);
  }

  std::vector<unsigned> thread_counts = {1};
  for (unsigned t = 2; t < hw; t *= 2) thread_counts.push_back(t);
  if (hw > 1) thread_counts.push_back(hw);

  std::printf("\n%-28s %8s %14s %9s %12s\n", "variant", "threads", "samples/s", "speedup", "mean reward");
  std::printf("%-28s %8d %14.0f %9s %12s\n", "extract_answer only", 1, static_cast<double>(n) / best_extract, "-", "-");
  double baseline = 0, baseline_sum = 0;
  for (unsigned t : thread_counts) {
    std::vector<RewardBatch> shards;
    for (unsigned k = 0; k < t; ++k) {
      // Shard at group boundaries (multiples of 8 samples) so groups stay whole.
      const size_t groups = (n + 7) / 8;
      const size_t b = std::min(n, (groups * k / t) * 8), e = std::min(n, (groups * (k + 1) / t) * 8);
      shards.push_back(make_batch(samples, b, e));
    }
    double best = 1e30, sum = 0;
    for (int r = 0; r < repeats; ++r) {
      const auto res = run(shards);
      best = std::min(best, res.first);
      sum = res.second;
    }
    const double rate = static_cast<double>(n) / best;
    if (t == 1) {
      baseline = rate;
      baseline_sum = sum;
    }
    std::printf("%-28s %8u %14.0f %8.2fx %12.4f%s\n", t == 1 ? "math_answer (baseline)" : "math_answer", t, rate,
                rate / baseline, sum / static_cast<double>(n), sum == baseline_sum ? "" : "  MISMATCH");
  }
  std::printf("\n(extracted an answer from %zu of %zu completions)\n", extracted, n);
  return 0;
}
