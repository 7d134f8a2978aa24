// The model-backed Judge (rewards/judge.h) for self_verify / self_rubric: a Transformer, its
// tokenizer and chat template. next_token_logprobs is one batched prefill through the rollout
// engine's KV cache (no sampling); generate is the rollout engine. The policy under training can
// judge itself (construct from its model and renderer), or a separate checkpoint can be loaded by
// `make_judge(DIR)` (registered factory: DIR's tokenizer.json or tokenizer.model, chat template from
// SCORCH_JUDGE_CHAT_TEMPLATE, default `plain`).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "rewards/judge.h"

namespace scorch {
class Transformer;
class ChatRenderer;
}  // namespace scorch

namespace scorch::rewards {

class ModelJudge : public Judge {
 public:
  // Keeps references: the model and renderer (and its tokenizer) must outlive the judge.
  ModelJudge(const Transformer& model, const ChatRenderer& renderer);
  std::vector<int64_t> render_chat(const std::vector<JudgeMessage>& messages) override;
  int64_t single_token_id(const std::string& text) override;
  std::vector<std::vector<double>> next_token_logprobs(const std::vector<std::vector<int64_t>>& prompt_ids,
                                                       const std::vector<int64_t>& candidate_ids) override;
  std::vector<std::string> generate(const std::vector<std::vector<int64_t>>& prompt_ids,
                                    const JudgeSampling& sampling) override;

 private:
  const Transformer& model_;
  const ChatRenderer& renderer_;
};

}  // namespace scorch::rewards
