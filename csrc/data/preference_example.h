// Preference pairs as token ids (DPO / ScPO): the prompt rendered once through the chat template,
// and each completion as the assistant would generate it (content + end-of-turn), so
// prompt_ids + chosen_ids is exactly the rendered conversation and both share the prompt's tokens.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/sft_example.h"

namespace scorch::data {

struct PreferenceExample {
  std::vector<int64_t> prompt_ids;    // render_prompt(prompt): ends with the assistant header
  std::vector<int64_t> chosen_ids;    // render_completion(chosen): all targets, end-of-turn last
  std::vector<int64_t> rejected_ids;  // render_completion(rejected)
  double weight = 1.0;
  int64_t line = 0;
  bool truncated = false;
};

// Fits prompt + each completion into max_length: `right` cuts the completions' ends, `left` cuts the
// prompt's start (keeping at least one prompt token), `error` is a UserError "<source>:<line>: ...".
// A completion left with no token, or a prompt that alone fills max_length under `right`, is a
// UserError too (the pair would compare nothing).
PreferenceExample tokenize_preference(const PreferenceRecord& record, const ChatRenderer& renderer,
                                      int64_t max_length, Truncation truncation, const std::string& source,
                                      TruncationStats* stats = nullptr);

}  // namespace scorch::data
