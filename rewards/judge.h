// The narrow interface through which self-judging rewards (ALGORITHMS.md §6) reach a model:
// "render this chat, score these prompts, continue these prompts". The policy itself, a frozen
// copy of it or a separate judge checkpoint all implement it the same way (the model-backed
// implementation lives with the model/rollout layers, not here), so rewards/ never sees torch and
// the rewards are tested against a Judge whose outputs are fixed by construction.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace scorch::rewards {

struct JudgeMessage {
  std::string role;     // "user" | "assistant" | "system"
  std::string content;
};

struct JudgeSampling {
  int64_t max_new_tokens = 256;
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  uint64_t seed = 0;         // with temperature > 0: judgment k of a batch uses seed + k
};

class Judge {
 public:
  virtual ~Judge() = default;

  // Token ids of `messages` rendered with the judge's chat template, ending with the generation
  // prompt of the assistant turn that will answer (the prompt-rendering callback).
  virtual std::vector<int64_t> render_chat(const std::vector<JudgeMessage>& messages) = 0;

  // The id of `text` if it is exactly one token of the judge's vocabulary, else -1.
  virtual int64_t single_token_id(const std::string& text) = 0;

  // One batched forward pass, no sampling: for each prompt b and candidate c,
  // log p(candidate_ids[c] | prompt_ids[b]) of the next token under the full softmax.
  // Returns [B][C].
  virtual std::vector<std::vector<double>> next_token_logprobs(
      const std::vector<std::vector<int64_t>>& prompt_ids, const std::vector<int64_t>& candidate_ids) = 0;

  // Decoded continuations of each prompt (batched generation). Returns [B].
  virtual std::vector<std::string> generate(const std::vector<std::vector<int64_t>>& prompt_ids,
                                            const JudgeSampling& sampling) = 0;
};

// The rubric score in a judgment: the number after the last "Score:" (case-insensitive, markdown
// '*' allowed), in [0, 5]; NaN when there is none or it is out of range.
double parse_rubric_score(const std::string& judgment);

// Where a model-backed Judge comes from: the layer that implements one registers a factory
// (model directory -> Judge); `scorch reward --model DIR` and trainers call make_judge().
using JudgeFactory = std::function<std::shared_ptr<Judge>(const std::string& model_dir)>;
void register_judge_factory(JudgeFactory factory);
// Throws NotImplemented while no factory is registered.
std::shared_ptr<Judge> make_judge(const std::string& model_dir);

}  // namespace scorch::rewards
