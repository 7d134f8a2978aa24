#include "rewards/model_judge.h"

#include <ATen/ATen.h>

#include <cstdlib>

#include "common/error.h"
#include "model/hf_checkpoint.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "rollout/engine.h"
#include "rollout/sampling.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace scorch::rewards {

ModelJudge::ModelJudge(const Transformer& model, const ChatRenderer& renderer) : model_(model), renderer_(renderer) {}

std::vector<int64_t> ModelJudge::render_chat(const std::vector<JudgeMessage>& messages) {
  std::vector<ChatMessage> chat;
  for (const auto& m : messages) chat.push_back(ChatMessage{m.role, m.content});
  return renderer_.render_prompt(chat);
}

int64_t ModelJudge::single_token_id(const std::string& text) {
  const auto ids = renderer_.tokenizer().encode(text);
  return ids.size() == 1 ? ids[0] : -1;
}

std::vector<std::vector<double>> ModelJudge::next_token_logprobs(const std::vector<std::vector<int64_t>>& prompts,
                                                                 const std::vector<int64_t>& candidates) {
  if (prompts.empty()) return {};
  at::NoGradGuard no_grad;
  GenerationEngine engine(model_, &renderer_.tokenizer());
  size_t longest = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    validate_prompt(prompts[i], static_cast<int64_t>(i), engine.context_length(), model_.config().vocab_size);
    longest = std::max(longest, prompts[i].size());
  }
  KvCache cache = KvCache::for_model(model_.config(), static_cast<int64_t>(prompts.size()),
                                     static_cast<int64_t>(longest), model_.dtype(), model_.device());
  // [B, V] next-token logits of every prompt from one left-padded prefill.
  at::Tensor logp = at::log_softmax(engine.append_tokens(cache, prompts).to(at::kDouble), -1).cpu();
  std::vector<std::vector<double>> out(prompts.size(), std::vector<double>(candidates.size()));
  for (size_t b = 0; b < prompts.size(); ++b) {
    for (size_t c = 0; c < candidates.size(); ++c) out[b][c] = logp[b][candidates[c]].item<double>();
  }
  return out;
}

std::vector<std::string> ModelJudge::generate(const std::vector<std::vector<int64_t>>& prompts, const JudgeSampling& s) {
  at::NoGradGuard no_grad;
  GenerationEngine engine(model_, &renderer_.tokenizer());
  SamplingParams params;
  params.temperature = s.temperature;
  params.top_p = s.top_p;
  params.max_new_tokens = s.max_new_tokens;
  params.seed = s.seed;
  params.stop_token_ids = renderer_.stop_ids();
  std::vector<std::string> texts;
  for (const auto& sample : engine.generate(prompts, params)) texts.push_back(renderer_.tokenizer().decode(sample.completion_ids));
  return texts;
}

namespace {
// A judge checkpoint loaded from a directory: owns what ModelJudge references.
class LoadedJudge : public ModelJudge {
 public:
  struct Parts {
    std::unique_ptr<Transformer> model;
    std::unique_ptr<Tokenizer> tokenizer;
    std::unique_ptr<ChatRenderer> renderer;
  };
  explicit LoadedJudge(std::shared_ptr<Parts> parts) : ModelJudge(*parts->model, *parts->renderer), parts_(std::move(parts)) {}

 private:
  std::shared_ptr<Parts> parts_;
};

const bool registered = [] {
  register_judge_factory([](const std::string& dir) -> std::shared_ptr<Judge> {
    auto parts = std::make_shared<LoadedJudge::Parts>();
    parts->tokenizer = load_tokenizer(dir);
    const char* tmpl = std::getenv("SCORCH_JUDGE_CHAT_TEMPLATE");
    parts->renderer = std::make_unique<ChatRenderer>(*parts->tokenizer, tmpl && *tmpl ? tmpl : "plain");
    parts->model = std::make_unique<Transformer>(load_hf_model(dir));
    return std::make_shared<LoadedJudge>(parts);
  });
  return true;
}();
}  // namespace

}  // namespace scorch::rewards
