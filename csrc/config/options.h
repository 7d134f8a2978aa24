// The config's named options as enums. Each enum's names are listed once, in option_names() (in
// enumerator order): the config reads and writes these names, and its errors offer them as the valid
// values. A header of its own and free of the Config struct, so the rollout engine and the kernels'
// callers can name an option without including the whole config.
#pragma once
#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace scorch {

// generation.decode_steps: the rollout engine's decode steps (rollout/engine.h).
enum class DecodeSteps {
  kAuto,       // CUDA: static steps in CUDA graphs; CPU: dynamic steps
  kDynamic,    // attention over the used slots, eager (the CPU default)
  kStatic,     // static shapes, eager (no graph): for comparisons and debugging
  kCudaGraph,  // static shapes, replayed from CUDA graphs (on CPU: static shapes, eager)
};
constexpr std::array<const char*, 4> option_names(DecodeSteps) { return {"auto", "dynamic", "static", "cuda_graph"}; }

// grpo.loss_type: how the per-token policy-gradient terms are normalised (grpo_loss.h).
enum class GrpoLossType { kGrpo, kBnpo, kDrGrpo, kDapo };
constexpr std::array<const char*, 4> option_names(GrpoLossType) { return {"grpo", "bnpo", "dr_grpo", "dapo"}; }

// grpo.scale_rewards: what a group-centred reward is divided by (TRL's scale_rewards).
enum class RewardScaling { kGroup, kBatch, kNone };
constexpr std::array<const char*, 3> option_names(RewardScaling) { return {"group", "batch", "none"}; }

// grpo.advantage: the advantage estimator (kernels/ops.h group_advantages).
enum class AdvantageEstimator { kGrpo, kRloo, kReinforcePP };
constexpr std::array<const char*, 3> option_names(AdvantageEstimator) { return {"grpo", "rloo", "reinforce_pp"}; }

// grpo.importance_sampling_level: per-token ratios, or one ratio per sequence (GSPO).
enum class ImportanceSamplingLevel { kToken, kSequence };
constexpr std::array<const char*, 2> option_names(ImportanceSamplingLevel) { return {"token", "sequence"}; }

// score.stage: which SCoRe stages a run trains.
enum class ScoreStage { kStage1, kStage2, kBoth };
constexpr std::array<const char*, 3> option_names(ScoreStage) { return {"1", "2", "both"}; }

// score.policy_gradient: SCoRe's returns as advantages (reinforce) or group-normalised (group).
enum class ScorePolicyGradient { kReinforce, kGroup };
constexpr std::array<const char*, 2> option_names(ScorePolicyGradient) { return {"reinforce", "group"}; }

// scpo.pairs: how ScPO picks (chosen, rejected) from a prompt's samples: by their vote, or by the
// prompt's gold answer (the labelled baseline, IRPO-style).
enum class ScpoPairs { kVote, kGold };
constexpr std::array<const char*, 2> option_names(ScpoPairs) { return {"vote", "gold"}; }

// The name of an option value.
template <class E>
constexpr const char* option_name(E value) {
  return option_names(value)[static_cast<size_t>(value)];
}

// Every name of the option E, in enumerator order.
template <class E>
std::vector<std::string> option_name_list() {
  const auto names = option_names(E{});
  return std::vector<std::string>(names.begin(), names.end());
}

// The value named `name`; false (and `out` untouched) when no value has that name.
template <class E>
bool parse_option(std::string_view name, E& out) {
  const auto names = option_names(E{});
  for (size_t i = 0; i < names.size(); ++i) {
    if (name == names[i]) {
      out = static_cast<E>(i);
      return true;
    }
  }
  return false;
}

// A command-line value of generation.decode_steps ("auto" | "dynamic" | "static" | "cuda_graph");
// UserError naming the valid values otherwise.
DecodeSteps parse_decode_steps(const std::string& name);
inline const char* decode_steps_name(DecodeSteps steps) { return option_name(steps); }

}  // namespace scorch
