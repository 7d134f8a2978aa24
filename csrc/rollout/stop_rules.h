// Stop rules of the decode loop: after each sampled token, whether the row is finished and why.
// The first rule that applies names the reason:
//   1. an end-of-sequence id (the engine's, plus the caller's extra ids such as a chat template's
//      end-of-turn)                                               -> FinishReason::kEos
//   2. one of SamplingParams::stop_token_ids, or the text now contains one of its stop_strings
//                                                                 -> FinishReason::kStop
//   3. the row's budget of new tokens is spent                    -> FinishReason::kLength
// The token that ends a row is part of its completion.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rollout/sampling.h"

namespace scorch {

class Tokenizer;

enum class FinishReason {
  kEos,     // generated an end-of-sequence id (model config / tokenizer / chat template); included
  kStop,    // generated one of SamplingParams::stop_token_ids, or the text contains a stop string
  kLength,  // hit max_new_tokens or the model's context length
};
const char* finish_reason_name(FinishReason reason);  // "eos" | "stop" | "length"

// Stop-string matcher over a row's generated tokens. Decoding the whole completion every step would
// be quadratic; a stop string of S bytes lies within the last S + 2 tokens once it is complete
// (every non-control token decodes to at least one byte; +2 covers a byte-fallback character cut
// at the window's start), so only that tail is decoded. A match must end in the newest token:
// any earlier one would have stopped the row at an earlier step.
class StopStringMatcher {
 public:
  // Keeps references: the tokenizer and the strings must outlive the matcher.
  StopStringMatcher(const Tokenizer* tokenizer, const std::vector<std::string>& stops);
  bool active() const { return !stops_.empty(); }
  bool matches(const std::vector<int64_t>& ids) const;

 private:
  const Tokenizer* tokenizer_;
  const std::vector<std::string>& stops_;
  int64_t window_ = 0;
};

class StopRules {
 public:
  // End-of-sequence ids are `eos_ids` and `extra_eos_ids`. Keeps references to `params` and
  // `tokenizer`, which must outlive the rules. UserError for stop strings without a tokenizer.
  StopRules(const std::vector<int64_t>& eos_ids, const std::vector<int64_t>& extra_eos_ids,
            const SamplingParams& params, const Tokenizer* tokenizer);

  // Why a row whose generated tokens are `ids` (the newest last) and that may generate `budget`
  // tokens in all is finished, or nullopt while it goes on.
  std::optional<FinishReason> finished(const std::vector<int64_t>& ids, int64_t budget) const;

 private:
  std::vector<int64_t> eos_ids_;
  const std::vector<int64_t>& stop_token_ids_;
  StopStringMatcher stop_strings_;
};

}  // namespace scorch
