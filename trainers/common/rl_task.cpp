#include "trainers/common/rl_task.h"

#include <algorithm>

#include "common/error.h"
#include "dist/dist.h"
#include "model/hf_checkpoint.h"
#include "model/lora.h"
#include "model/transformer.h"
#include "rewards/model_judge.h"
#include "tokenizer/chat_template.h"
#include "train/metrics.h"

namespace scorch::trainers {

StepPrompts draw_prompts(data::DataCursor& cursor, const std::vector<data::PromptRecord>& dataset,
                         const ChatRenderer& renderer, int64_t n, int64_t max_prompt_length) {
  StepPrompts out;
  for (int64_t index : cursor.next_batch(n)) {
    out.records.push_back(&dataset[static_cast<size_t>(index)]);
    std::vector<int64_t> ids = renderer.render_prompt(out.records.back()->prompt);
    if (static_cast<int64_t>(ids.size()) > max_prompt_length) {
      ids.erase(ids.begin(), ids.end() - max_prompt_length);
      ++out.truncated;
    }
    out.ids.push_back(std::move(ids));
  }
  return out;
}

SamplingParams rollout_params(const Config& config, const ChatRenderer& renderer, int64_t step, int64_t n) {
  SamplingParams sp;
  sp.temperature = config.generation.temperature;
  sp.top_p = config.generation.top_p;
  sp.top_k = config.generation.top_k;
  sp.max_new_tokens = config.generation.max_completion_length;
  sp.stop_token_ids = renderer.stop_ids();
  sp.stop_strings = config.generation.stop;
  sp.seed = config.seed * 1000003ULL + static_cast<uint64_t>(step) + (static_cast<uint64_t>(dist::rank()) << 40);
  sp.n = n;
  return sp;
}

EngineOptions rollout_engine_options(const Config& config) {
  EngineOptions options;
  options.decode_steps = config.generation.decode_steps;
  options.fused_decode_attention = config.generation.fused_decode_attention;
  options.lookahead = config.generation.lookahead;
  return options;
}

rewards::RewardSample reward_sample(const data::PromptRecord& record, const std::vector<int64_t>& prompt_ids,
                                    int64_t group, int64_t step) {
  rewards::RewardSample r;
  r.prompt = record.prompt_text;
  r.prompt_ids = prompt_ids;
  r.group = group;
  r.fields = record.extra.is_object() ? record.extra : nlohmann::json::object();
  if (record.answer) r.fields["answer"] = *record.answer;
  r.step = step;
  return r;
}

void CompletionLengths::add(double length, bool was_truncated) {
  ++count, sum += length, min = std::min(min, length), max = std::max(max, length);
  if (was_truncated) ++truncated; else terminated_sum += length;
}

RlTask::RlTask(const Config& config, ModelSession& session, std::vector<data::PromptRecord> train,
               std::vector<data::PromptRecord> eval_prompts, std::string run_dir, const std::string& name)
    // Prompts are sharded by rank (a prompt's whole group stays on its rank: data/cursor.h).
    : DatasetTask(config, static_cast<int64_t>(train.size()), "data.train holds no prompts: " + name + " needs a prompt dataset"),
      config_(config),
      session_(session),
      train_(std::move(train)),
      eval_prompts_(std::move(eval_prompts)),
      run_dir_(std::move(run_dir)),
      rewards_(config.rewards, rewards::RewardContext{std::make_shared<rewards::ModelJudge>(*session.model, *session.renderer)},
               "config") {
  pad_id_ = session.pad_id();
  temperature_ = config.generation.temperature > 0 ? config.generation.temperature : 1.0;
}

RlTask::~RlTask() = default;

void RlTask::make_reference(const std::string& path) {
  if (!path.empty()) {
    LoadOptions lo;
    lo.dtype = session_.dtype;
    lo.device = session_.device;
    reference_ = std::make_unique<Transformer>(load_hf_model(path, lo));
  } else {
    reference_ = std::make_unique<Transformer>(frozen_reference(*session_.model));
  }
  reference_->set_requires_grad(false);
}

StepPrompts RlTask::draw_step_prompts() {
  return draw_prompts(cursor_, train_, *session_.renderer,
                      config_.train.micro_batch_size * config_.train.gradient_accumulation_steps,
                      config_.generation.max_prompt_length);
}

bool RlTask::logs_samples(int64_t step) {
  if (!samples_) samples_ = std::make_unique<SamplesLogger>(run_dir_, dist::rank(), step - 1);
  return config_.log.samples > 0 && (step == 1 || step % std::max<int64_t>(1, config_.log.every) == 0);
}

void RlTask::log_sample(int64_t step, const nlohmann::json& sample) {
  if (!samples_) samples_ = std::make_unique<SamplesLogger>(run_dir_, dist::rank(), step - 1);
  samples_->log(step, sample);  // the writer replaces invalid UTF-8 (a completion may end mid-character)
}

}  // namespace scorch::trainers
