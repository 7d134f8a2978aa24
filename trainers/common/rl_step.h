// What every online-RL trainer (GRPO, SCoRe) does the same way at the start of a step: draw the
// step's prompts from the cursor and render them, sample with the configured generation settings,
// and describe each rollout to the rewards. One place, so both trainers truncate, seed and score
// identically.
#pragma once
#include <cstdint>
#include <vector>

#include "config/config.h"
#include "data/cursor.h"
#include "data/dataset.h"
#include "rewards/reward.h"
#include "rollout/engine.h"
#include "rollout/sampling.h"

namespace scorch {
class ChatRenderer;
}

namespace scorch::trainers {

struct StepPrompts {
  std::vector<const data::PromptRecord*> records;  // into the dataset
  std::vector<std::vector<int64_t>> ids;           // rendered prompt tokens
  int64_t truncated = 0;                           // prompts cut to generation.max_prompt_length
};

// The next `n` prompts of `cursor`, rendered through the chat template; a prompt longer than
// generation.max_prompt_length keeps its end (TRL's truncation side for prompts).
StepPrompts draw_prompts(data::DataCursor& cursor, const std::vector<data::PromptRecord>& dataset,
                         const ChatRenderer& renderer, int64_t n, int64_t max_prompt_length);

// Sampling settings of RL step `step` with n samples per prompt: generation.* from the config, the
// chat template's stop ids, and a seed derived from (seed, step, rank) — a resumed run repeats a
// step's rollouts, and ranks draw different streams.
SamplingParams rollout_params(const Config& config, const ChatRenderer& renderer, int64_t step, int64_t n);

// The rollout engine's options from the config (generation.decode_steps, fused_decode_attention,
// lookahead).
EngineOptions rollout_engine_options(const Config& config);

// The reward input for one rollout of `record` (prompt text and ids, gold answer and extra fields,
// group = the prompt's index in the step, step); the caller sets the completion.
rewards::RewardSample reward_sample(const data::PromptRecord& record, const std::vector<int64_t>& prompt_ids,
                                    int64_t group, int64_t step);

}  // namespace scorch::trainers
