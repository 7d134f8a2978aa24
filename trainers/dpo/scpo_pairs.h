// ScPO pair building (ALGORITHMS.md §3; Prasad et al. 2024). For each unlabelled prompt the model
// samples k responses; answers are extracted with math_answer's extractor and clustered with its
// comparer (each answer joins the first cluster whose representative it equals, so the result is
// deterministic in sample order); V(y) = size of y's cluster.
//   y+ = the first response of the most-voted cluster (ties: the cluster formed first)
//   y− = the first response of the least-voted OTHER cluster (ties: the cluster formed first)
//   kept iff V+ ≥ τ·k and V+ > V−; weight w = (V+ − V−) / k.
// Responses with no extractable answer vote for nothing and are never chosen or rejected; a prompt
// whose responses all agree (one cluster) has no rejected response and gives no pair.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace scorch {
struct Config;
struct ModelSession;
namespace data {
struct PromptRecord;
}
}  // namespace scorch

namespace scorch::trainers {

enum class ScpoVerdict { kKept, kBelowThreshold, kUnanimous, kTie, kNoAnswer };
const char* scpo_verdict_name(ScpoVerdict verdict);  // kept | below_threshold | unanimous | tie | no_answer

struct ScpoPairChoice {
  ScpoVerdict verdict = ScpoVerdict::kNoAnswer;
  int64_t chosen = -1, rejected = -1;  // sample indices (kept, and y+ whenever any answer exists)
  int64_t top_votes = 0, bottom_votes = 0;
  double weight = 0.0;                 // (V+ − V−) / k
  std::string chosen_answer, rejected_answer;
};

// `answers`: one per sample, "" = no answer; k = answers.size(); `threshold` τ as a fraction of k.
ScpoPairChoice choose_scpo_pair(const std::vector<std::string>& answers, double threshold);

struct ScpoPairStats {
  int64_t prompts = 0, kept = 0;
  std::map<std::string, int64_t> verdicts;   // scpo_verdict_name -> prompts
  std::map<int64_t, int64_t> margin_histogram;  // V+ − V− -> kept pairs
  int64_t with_gold = 0, chosen_correct = 0;     // kept pairs whose prompt has a gold answer
  double mean_weight = 0.0;
  nlohmann::json to_json() const;  // kept_fraction, vote_margin_histogram, chosen_accuracy (when gold exists), ...
};

// Samples scpo.num_samples responses per prompt (scpo.temperature, scpo.top_p,
// generation.max_prompt_length / max_completion_length / stop) with the session's model and writes the
// kept pairs to `out_path` as preference JSONL ({"prompt", "chosen", "rejected", "weight", "votes"}).
// Gold answers, when present, are only used for the chosen_accuracy diagnostic.
ScpoPairStats build_scpo_pairs(const Config& config, const ModelSession& session,
                               const std::vector<data::PromptRecord>& prompts, double threshold, uint64_t seed,
                               const std::string& out_path);

}  // namespace scorch::trainers
