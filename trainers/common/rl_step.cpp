#include "trainers/common/rl_step.h"

#include "dist/dist.h"
#include "tokenizer/chat_template.h"

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
  options.decode_steps = parse_decode_steps(config.generation.decode_steps);
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

}  // namespace scorch::trainers
