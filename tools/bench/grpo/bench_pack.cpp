// bench_pack: one policy-gradient micro-batch (forward, DAPO loss, backward) with the rows padded to
// the longest (the baseline, measured in the same run) versus packed (several rows per forward row,
// positions restarting, a block-diagonal mask: trainers/common/policy_gradient.h), on a random
// model of a given shape and rows of random prompt and completion lengths. Prints the forward's
// token positions, the share of them that is padding, and the median time of each.
//   bench_pack [--config configs/quickstart/model_config.json] [--rows 128] [--prompt 24:64]
//              [--completion 4:48] [--threads 1] [--repeats 7] [--seed 0]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/fs.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "trainers/common/policy_gradient.h"
#include "trainers/common/policy_loss.h"

namespace {

std::pair<int64_t, int64_t> range(const std::string& s) {
  const size_t colon = s.find(':');
  if (colon == std::string::npos) throw std::invalid_argument("expected LO:HI, got " + s);
  return {std::stoll(s.substr(0, colon)), std::stoll(s.substr(colon + 1))};
}

}  // namespace

int main(int argc, char** argv) {
  std::string config = "configs/quickstart/model_config.json", prompt = "24:64", completion = "4:48";
  int64_t rows = 128, threads = 1, repeats = 7, seed = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--config") config = v;
    else if (k == "--rows") rows = std::stoll(v);
    else if (k == "--prompt") prompt = v;
    else if (k == "--completion") completion = v;
    else if (k == "--threads") threads = std::stoll(v);
    else if (k == "--repeats") repeats = std::stoll(v);
    else if (k == "--seed") seed = std::stoll(v);
    else {
      std::fprintf(stderr, "bench_pack: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  at::set_num_threads(static_cast<int>(threads));
  scorch::Transformer model(scorch::model_config_from_json(nlohmann::json::parse(scorch::fs::read_file(config)), config));
  model.init_weights(static_cast<uint64_t>(seed));
  for (auto& [name, t] : model.named_parameters()) t.requires_grad_(true);
  const int64_t vocab = model.config().vocab_size;

  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  const auto [p_lo, p_hi] = range(prompt);
  const auto [c_lo, c_hi] = range(completion);
  auto uniform = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  std::vector<std::vector<int64_t>> prompts(static_cast<size_t>(rows));
  std::vector<scorch::trainers::PolicyRow> policy_rows;
  for (int64_t r = 0; r < rows; ++r) {
    auto& p = prompts[static_cast<size_t>(r)];
    for (int64_t t = uniform(p_lo, p_hi); t > 0; --t) p.push_back(uniform(4, vocab - 1));
    scorch::trainers::PolicyRow row;
    row.prompt = &p;
    for (int64_t t = uniform(c_lo, c_hi); t > 0; --t) row.completion.push_back(uniform(4, vocab - 1));
    row.logprobs.assign(row.completion.size(), -2.0f);
    row.advantages = {static_cast<float>(uniform(-10, 10)) / 10.0f};
    policy_rows.push_back(std::move(row));
  }

  scorch::trainers::PolicyLossOptions options;
  std::printf("bench_pack: %s, %lld rows, prompt %s, completion %s tokens, %lld thread(s), median of %lld\n\n",
              config.c_str(), static_cast<long long>(rows), prompt.c_str(), completion.c_str(),
              static_cast<long long>(threads), static_cast<long long>(repeats));
  std::printf("| rows | forward rows x T | token positions | padding | median ms | vs padded |\n|---|---|---|---|---|---|\n");
  double padded_ms = 0;
  for (bool pack : {false, true}) {
    const auto batch = scorch::trainers::pack_policy_batch(policy_rows, /*pad_id=*/0, at::kCPU, pack);
    std::vector<double> ms;
    for (int64_t k = 0; k < repeats + 1; ++k) {  // the first is warm-up
      for (auto& [name, t] : model.named_parameters()) t.mutable_grad() = at::Tensor();
      std::map<std::string, double> metrics;
      const auto start = std::chrono::steady_clock::now();
      scorch::trainers::policy_gradient_step(model, batch, 1.0, options, static_cast<double>(batch.tokens), 1, false,
                                             metrics);
      const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      if (k > 0) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2];
    if (!pack) padded_ms = median;
    const double padding = 1.0 - static_cast<double>(batch.tokens) / static_cast<double>(batch.layout.slots);
    std::printf("| %s | %lld x %lld | %lld | %.1f%% | %.1f | %.2fx |\n", pack ? "packed" : "padded (baseline)",
                static_cast<long long>(batch.layout.input_ids.size(0)), static_cast<long long>(batch.layout.input_ids.size(1)),
                static_cast<long long>(batch.layout.slots), 100.0 * padding, median, padded_ms / median);
  }
  return 0;
}
