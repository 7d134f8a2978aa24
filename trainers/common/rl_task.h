// What the online-RL trainers (GRPO, SCoRe) share: the task base (RlTask: prompts, data cursor,
// rewards with the policy as judge, the frozen reference, sampling temperature, sample logging) and
// the start of every step: draw the step's prompts from the cursor and render them, sample with the
// configured generation settings, and describe each rollout to the rewards. One place, so both
// trainers truncate, seed and score identically. A new RL trainer derives from RlTask and writes
// its step: how it rolls out, scores and lays out the rows (policy_gradient.h).
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"
#include "data/cursor.h"
#include "data/dataset.h"
#include "rewards/reward.h"
#include "rollout/engine.h"
#include "rollout/sampling.h"
#include "train/loop.h"
#include "train/session.h"

namespace scorch {
class ChatRenderer;
class SamplesLogger;
class Transformer;
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

// Completion lengths of a step's rollouts (TRL's completions/* metrics).
struct CompletionLengths {
  void add(double length, bool truncated);
  double count = 0, sum = 0, min = std::numeric_limits<double>::infinity(), max = 0, truncated = 0, terminated_sum = 0;
  double mean() const { return count > 0 ? sum / count : 0.0; }
};

class RlTask : public DatasetTask {
 public:
  // `config`, `session` and `run_dir` must outlive the task. `name` is the trainer's name in
  // messages. Self-judging rewards (self_verify, self_rubric) are judged by the policy itself.
  RlTask(const Config& config, ModelSession& session, std::vector<data::PromptRecord> train,
         std::vector<data::PromptRecord> eval_prompts, std::string run_dir, const std::string& name);
  ~RlTask() override;

  const Transformer* reference() const { return reference_.get(); }

 protected:
  // The frozen KL reference: the model at `path` when set, else the policy as it is now, or with
  // LoRA the base with the adapter disabled (model/lora.h; on resume the loop loads the checkpoint
  // into the policy after this, so the reference stays the initial model).
  void make_reference(const std::string& path = "");
  // The next train.micro_batch_size × gradient_accumulation_steps prompts, rendered and truncated.
  StepPrompts draw_step_prompts();
  // Opens the run's samples.jsonl on the first step this process runs (rank 0 writes; lines after
  // step − 1 left by an interrupted run are dropped), and says whether step `step` logs decoded
  // samples (log.samples > 0, step 1 and every log.every steps).
  bool logs_samples(int64_t step);
  // Appends one decoded sample to the run's samples.jsonl (rank 0; invalid UTF-8 replaced on write).
  void log_sample(int64_t step, const nlohmann::json& sample);

  const Config& config_;
  ModelSession& session_;
  std::vector<data::PromptRecord> train_, eval_prompts_;
  std::string run_dir_;
  rewards::RewardSet rewards_;
  std::unique_ptr<Transformer> reference_;
  int64_t pad_id_ = 0;
  double temperature_ = 1.0;  // generation.temperature, or 1 when sampling greedily

 private:
  std::unique_ptr<SamplesLogger> samples_;
};

}  // namespace scorch::trainers
