// ScPO pair building (ALGORITHMS.md §3; Prasad et al. 2024). For each unlabelled prompt the model
// samples k responses; answers are extracted with math_answer's extractor and clustered with its
// comparer (each answer joins the first cluster whose representative it equals, so the result is
// deterministic in sample order); V(y) = size of y's cluster.
//   y+ = the first response of the most-voted cluster (ties: the cluster formed first)
//   y− = the first response of the least-voted OTHER cluster (ties: the cluster formed first)
//   kept iff V+ ≥ τ·k and V+ > V−; weight w = (V+ − V−) / k.
// Responses with no extractable answer vote for nothing and are never chosen or rejected; a prompt
// whose responses all agree (one cluster) has no rejected response and gives no pair.
//
// scpo.pairs: gold (the labelled baseline, as IRPO builds pairs) uses the prompt's gold answer
// instead of the vote, from the same k samples:
//   y+ = the first response whose answer equals the gold (math_answer's comparer, gold first)
//   y− = the first response with a different answer, else the first with no answer
//   kept iff both exist; weight 1; votes = (responses equal to the gold, the rest).
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

enum class ScpoVerdict { kKept, kBelowThreshold, kUnanimous, kTie, kNoAnswer, kAllCorrect, kNoneCorrect };
// kept | below_threshold | unanimous | tie | no_answer (vote) | all_correct | none_correct (gold)
const char* scpo_verdict_name(ScpoVerdict verdict);

struct ScpoPairChoice {
  ScpoVerdict verdict = ScpoVerdict::kNoAnswer;
  int64_t chosen = -1, rejected = -1;  // sample indices (kept, and y+ whenever any answer exists)
  int64_t top_votes = 0, bottom_votes = 0;  // gold: responses equal to the gold, and the rest
  double weight = 0.0;                 // (V+ − V−) / k; gold: 1
  std::string chosen_answer, rejected_answer;
};

// `answers`: one per sample, "" = no answer; k = answers.size(); `threshold` τ as a fraction of k.
ScpoPairChoice choose_scpo_pair(const std::vector<std::string>& answers, double threshold);
// The same samples judged against `gold` (an answer, i.e. after math::gold_answer; not empty).
ScpoPairChoice choose_scpo_gold_pair(const std::vector<std::string>& answers, const std::string& gold);

// scpo.pairs: gold needs every prompt's gold answer: UserError naming `path`:line of the first
// prompt without one (and how many lack one) and the fix.
void require_gold_answers(const std::vector<data::PromptRecord>& prompts, const std::string& path);

struct ScpoPairStats {
  int64_t prompts = 0, kept = 0;
  std::map<std::string, int64_t> verdicts;   // scpo_verdict_name -> prompts
  bool gold_pairs = false;                      // scpo.pairs: gold
  std::map<int64_t, int64_t> margin_histogram;  // V+ − V− -> kept pairs (gold: samples with the gold answer)
  int64_t with_gold = 0, chosen_correct = 0;     // kept pairs whose prompt has a gold answer
  double mean_weight = 0.0;
  // kept_fraction, vote_margin_histogram (gold: correct_count_histogram), chosen_accuracy (when gold exists), ...
  nlohmann::json to_json() const;
};

// Samples scpo.num_samples responses per prompt (scpo.temperature, scpo.top_p,
// generation.max_prompt_length / max_completion_length / stop) with the session's model and writes the
// kept pairs to `out_path` as preference JSONL ({"prompt", "chosen", "rejected", "weight", "votes"}).
// scpo.pairs picks the pairs (vote: `threshold` applies; gold: the caller has checked every prompt's
// `answer` with require_gold_answers, once, naming the user's data file). With vote, gold answers are
// only used for the chosen_accuracy diagnostic.
ScpoPairStats build_scpo_pairs(const Config& config, const ModelSession& session,
                               const std::vector<data::PromptRecord>& prompts, double threshold, uint64_t seed,
                               const std::string& out_path);

}  // namespace scorch::trainers
