// Accuracy by generation on prompts with gold answers: greedy (by default) decoding through the
// rollout engine, answers checked by the math_answer reward's extractor and comparer (gold first).
// With attempts = 2 it is the SCoRe evaluation (ALGORITHMS.md §7): after attempt 1 the
// self-correction instruction is appended as a user turn (append-only, attempt 1's exact tokens)
// and the model answers again; the report then holds Acc@t1, Acc@t2, Δ, Δ^{i→c}, Δ^{c→i}, the mean
// edit distance between the attempts and the fraction of second attempts that change the answer.
// With samples = K > 1 (attempts = 1, temperature > 0) every problem gets K samples and the report
// holds the usual sampled-evaluation metrics (as verl's mean@N / best@N / maj@N): accuracy =
// mean@K (the fraction of all K·n samples that are right: the unbiased pass@1 estimate), pass@K
// (problems with at least one right sample) and maj@K (problems whose majority answer is right;
// answers clustered with math_answer's equivalence, ties to the cluster sampled first).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/options.h"

namespace scorch {

struct Config;
class Transformer;
class ChatRenderer;
namespace data {
struct PromptRecord;
}

struct EvalOptions {
  int64_t max_new_tokens = 256;
  int64_t batch_size = 64;           // prompts per generation batch
  int64_t attempts = 1;              // 1, or 2 for the self-correction evaluation
  std::string correction_instruction;  // attempts > 1: the user turn before each new attempt
  double temperature = 0.0;          // 0 = greedy
  double top_p = 1.0;
  uint64_t seed = 0;
  int64_t keep_samples = 0;          // decoded samples kept in the report (for logs)
  int64_t samples = 1;               // K samples per problem (K > 1: attempts 1, temperature > 0)
  DecodeSteps decode_steps = DecodeSteps::kAuto;  // the engine's decode steps (rollout/engine.h)
  bool settings_from_cli = false;                 // refusals name `--decode-steps`, not generation.*
};

struct EvalReport {
  int64_t n = 0;
  int64_t attempts_reported = 1;
  double accuracy = 0.0;             // attempt 1 (mean@K over the samples when samples = K > 1)
  int64_t samples_per_problem = 1;
  double pass_at_k = 0.0;            // samples > 1: problems with at least one right sample
  double maj_at_k = 0.0;             // samples > 1: problems whose majority answer is right
  // attempts >= 2 (attempt 2 vs attempt 1):
  double accuracy_t2 = 0.0;
  double delta = 0.0;                // accuracy_t2 - accuracy
  double delta_i_to_c = 0.0;         // fraction of all problems wrong at t1 and right at t2
  double delta_c_to_i = 0.0;         // right at t1, wrong at t2
  double edit_distance = 0.0;        // mean token edit distance between the attempts
  double changed_fraction = 0.0;     // second attempts whose extracted answer differs from the first
  double no_answer_fraction = 0.0;   // attempt-1 completions with no extractable answer
  nlohmann::json samples = nlohmann::json::array();
  nlohmann::json to_json() const;    // the keys above (SCoRe's exact key names when attempts >= 2;
                                     // "samples", "pass_at_k", "maj_at_k" when samples > 1)
};

EvalReport evaluate_accuracy(const Transformer& model, const ChatRenderer& renderer,
                             const std::vector<data::PromptRecord>& prompts, const EvalOptions& options);

// The eval set's records that carry a gold answer: data.eval cut to data.eval_limit (empty when
// data.eval is not set). Shared by every trainer's periodic evaluation.
std::vector<data::PromptRecord> load_eval_prompts(const Config& config);
// Greedy attempt-1 accuracy with the config's generation.eval_max_new_tokens.
double eval_accuracy(const Config& config, const Transformer& model, const ChatRenderer& renderer,
                     const std::vector<data::PromptRecord>& prompts);
// The periodic evaluation every single-turn trainer logs: eval_accuracy (greedy) and, with
// train.eval_samples = K >= 2, eval_mean_at_k / eval_pass_at_k / eval_maj_at_k over K samples per
// problem at generation.temperature and top_p, seeded with the config's seed (the same draws at
// every evaluation of the same weights). Nothing is added when `prompts` is empty.
void add_eval_metrics(const Config& config, const Transformer& model, const ChatRenderer& renderer,
                      const std::vector<data::PromptRecord>& prompts, std::map<std::string, double>& metrics);

// Self-correction metrics from per-problem outcomes (t1 correct, t2 correct): the part of the
// report that is pure counting, exposed for tests.
struct CorrectionCounts {
  double accuracy_t1, accuracy_t2, delta, delta_i_to_c, delta_c_to_i;
};
CorrectionCounts correction_metrics(const std::vector<bool>& t1_correct, const std::vector<bool>& t2_correct);

// The majority answer of one problem's samples: answers ("" = none) clustered with math_answer's
// equivalence (each joins the first cluster whose first member it equals); the largest cluster
// wins, ties to the one sampled first. "" when no sample has an answer.
std::string majority_answer(const std::vector<std::string>& answers);

}  // namespace scorch
