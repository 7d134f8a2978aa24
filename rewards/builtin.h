// Internal to rewards/: registration hooks of the builtin rewards (called once by
// reward_registry()) and the params shared by the rewards that extract math answers.
#pragma once
#include "rewards/math_answer.h"
#include "rewards/reward.h"

namespace scorch::rewards {

void register_math_rewards();         // math_answer (math_answer.cpp)
void register_format_rewards();       // format, overlong, exact_match (format.cpp)
void register_consistency_rewards();  // majority_vote, soft_consistency (self_consistency.cpp)
void register_judge_rewards();        // self_verify, self_rubric (self_judge.cpp)

// Params `boxed`, `answer_phrase`, `gsm8k`, `last_number` (all default true).
math::ExtractOptions read_extract_options(Params& params);
// Params `rel_tol` (1e-4) and `max_answer_chars` (256).
math::CompareOptions read_compare_options(Params& params);

// Extracted answer of every sample; "" where none (or the completion only echoes the prompt).
struct ExtractedAnswers {
  std::vector<std::string> answers;  // [num_samples]
  size_t no_answer = 0;
  size_t echo = 0;
};
ExtractedAnswers extract_all(const RewardBatch& batch, const math::ExtractOptions& options, bool reject_prompt_echo);

}  // namespace scorch::rewards
