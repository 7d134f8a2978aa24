// The Reward interface (ALGORITHMS.md §5, §6, §8): a reward scores a whole batch of rollouts at
// once, because self-consistency rewards need the other completions of the same prompt and
// self-judging rewards want one batched forward pass. No torch here: rule-based rewards must build
// and run without it, and this header is included by the trainers and the CLI.
//
// Contract:
//   - score() returns exactly one value per sample. NaN means "could not score" (no gold answer,
//     judge output unparseable, ...): it is counted and excluded from means, never silently 0.
//   - diagnostics are named numbers for metrics (logged as rewards/<name>/<key>).
//   - advantage_offsets (empty, or one per sample) are added to the sample's advantage *after*
//     group normalisation by the GRPO trainer; RESTRAIN's −δ for low-consistency prompts uses it.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "config/config.h"

namespace scorch::rewards {

class Judge;

// One rollout to score. Samples of the same prompt share `group`.
struct RewardSample {
  std::string prompt;                  // the prompt text as the dataset gave it (before chat template)
  std::vector<int64_t> prompt_ids;     // the prompt token ids the policy saw (may be empty offline)
  std::string completion;              // decoded completion text
  std::vector<int64_t> completion_ids; // exact rollout tokens (may be empty offline)
  int64_t group = 0;                   // index into RewardBatch::groups
  nlohmann::json fields;               // dataset fields: "answer" (gold, optional) and any extras
  int64_t turn = 0;                    // 0-based turn of a multi-turn episode (SCoRe: 0 or 1)
  int64_t step = 0;                    // training step (0 offline)
  bool truncated = false;              // hit max_completion_length without EOS
};

// A batch: the samples and, for each group, the indices of its members (in sample order).
struct RewardBatch {
  std::vector<RewardSample> samples;
  std::vector<std::vector<size_t>> groups;  // groups[g] = sample indices with samples[i].group == g

  // Rebuilds `groups` from samples[i].group (group ids must be 0..num_groups-1; gaps allowed).
  void index_groups();
  // The gold answer of sample i as a string, or "" when the dataset has none (numbers are printed).
  std::string gold(size_t i) const;
};

struct RewardOutput {
  std::vector<double> values;                  // [num_samples]; NaN = could not score
  std::map<std::string, double> diagnostics;   // e.g. accuracy, no_answer, majority_ratio
  std::vector<double> advantage_offsets;       // empty, or [num_samples] (added to advantages)
};

class Reward {
 public:
  virtual ~Reward() = default;
  virtual RewardOutput score(const RewardBatch& batch) = 0;
};

// Reads a reward's `params:` mapping strictly, with the config's binder (config/yaml_binder.h):
// every key a reward reads is declared with its default and constraint; finish() rejects keys
// nobody declared, naming `rewards[i].params.<key>` and suggesting the nearest valid key. Errors are
// UserError with the file and line. With null params every getter returns its default (used to
// list the schema).
class Params {
 public:
  Params(std::shared_ptr<const YamlTree> params, std::string key_prefix, std::string source);
  ~Params();

  double number(const std::string& key, double def, double lo = -1e300, double hi = 1e300,
                const std::string& help = "");
  int64_t integer(const std::string& key, int64_t def, int64_t lo, int64_t hi, const std::string& help = "");
  bool flag(const std::string& key, bool def, const std::string& help = "");
  std::string text(const std::string& key, const std::string& def, const std::vector<std::string>& choices = {},
                   const std::string& help = "");
  std::vector<std::string> texts(const std::string& key, const std::vector<std::string>& def,
                                 const std::string& help = "");
  // Throws UserError for any key in the mapping that no getter asked for.
  void finish() const;

  // One line per declared key: "key (type, default X): help" — for `scorch reward --list`.
  const std::vector<std::string>& schema() const { return schema_; }
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  struct Binding;  // the YAML mapping and its strict reader
  std::unique_ptr<Binding> binding_;
  std::vector<std::string> schema_;
};

// What a reward constructor may need besides its params.
struct RewardContext {
  std::shared_ptr<Judge> judge;  // the judging model; null when none is available
};

struct RewardInfo {
  std::string description;
  bool needs_judge = false;      // self-judging rewards: construction fails without a judge
  std::function<std::unique_ptr<Reward>(Params&, const RewardContext&)> make;
};

// The registry of reward names. Builtins (math_answer, format, overlong, exact_match,
// majority_vote, soft_consistency, self_verify, self_rubric) are registered on first use;
// a researcher adds one with register_reward() (e.g. from a static initialiser in its file).
void register_reward(const std::string& name, RewardInfo info);
const std::map<std::string, RewardInfo>& reward_registry();
// The params schema of a registered reward (see Params::schema).
std::vector<std::string> reward_params_schema(const std::string& name);

// The weighted combination of a config's `rewards:` list.
//   total_i = Σ_k weight_k · r_k,i  over components with weight != 0; NaN if any of those r_k,i is
//   NaN (a sample that cannot be scored by one component cannot be scored). Weight-0 components
//   are still computed and logged but affect neither the total (never NaN) nor the offsets.
//   advantage_offset_i = Σ_k offset_k,i over components with weight != 0 (not multiplied by the
//   weight: offsets are in advantage units, not reward units).
// Components are named by their reward name; a repeated name gets "_<index>" appended
// (format, format_2, ...).
struct RewardSetOutput {
  std::vector<double> total;                         // [num_samples]
  std::vector<std::string> names;                    // [num_components]
  std::vector<std::vector<double>> components;       // [num_components][num_samples], unweighted
  std::vector<double> advantage_offsets;             // [num_samples], 0 where none
  // rewards/<name>/mean and /std (non-NaN values), rewards/<name>/nan_count,
  // rewards/<name>/<diagnostic>, reward (mean total over non-NaN), reward_nan_count.
  std::map<std::string, double> metrics;
};

class RewardSet {
 public:
  // `source` names the config file in error messages. Throws UserError for an unknown reward name
  // (with a suggestion), bad params, or a self-judging reward without a judge.
  RewardSet(const std::vector<RewardSpec>& specs, const RewardContext& context = {},
            const std::string& source = "config");
  RewardSetOutput score(const RewardBatch& batch);
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<double>& weights() const { return weights_; }

 private:
  std::vector<std::string> names_;
  std::vector<double> weights_;
  std::vector<std::unique_ptr<Reward>> rewards_;
};

// Checks names and params of every spec without building anything that needs a model (for
// `scorch train --dry-run` and early config validation). Throws the same UserErrors as RewardSet.
void validate_reward_specs(const std::vector<RewardSpec>& specs, const std::string& source = "config");

// Thrown by a self-judging reward's constructor when the context has no judge.
class JudgeMissing : public UserError {
 public:
  using UserError::UserError;
};

// Mean and count of the non-NaN values.
struct FiniteStats {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
  size_t count = 0;
  size_t nan_count = 0;
};
FiniteStats finite_stats(const std::vector<double>& values);

}  // namespace scorch::rewards
