// Preference record -> PreferenceExample (see preference_example.h).
#include "data/preference_example.h"

#include <algorithm>

#include "common/error.h"
#include "tokenizer/chat_template.h"

namespace scorch::data {

PreferenceExample tokenize_preference(const PreferenceRecord& record, const ChatRenderer& renderer,
                                      int64_t max_length, Truncation truncation, const std::string& source,
                                      TruncationStats* stats) {
  PreferenceExample ex;
  ex.line = record.line;
  ex.weight = record.weight;
  ex.prompt_ids = renderer.render_prompt(record.prompt);
  ex.chosen_ids = renderer.render_completion(record.chosen);
  ex.rejected_ids = renderer.render_completion(record.rejected);
  const auto prompt_len = static_cast<int64_t>(ex.prompt_ids.size());
  const int64_t longest = prompt_len + static_cast<int64_t>(std::max(ex.chosen_ids.size(), ex.rejected_ids.size()));
  if (longest <= max_length) return ex;
  const std::string where = source + ":" + std::to_string(record.line) + ": ";
  if (truncation == Truncation::Error) {
    throw UserError(where + "prompt + completion has " + std::to_string(longest) + " tokens, more than data.max_length " +
                    std::to_string(max_length) + " (data.truncation: error). Fix: raise data.max_length or set "
                    "data.truncation to right or left");
  }
  const int64_t before = static_cast<int64_t>(ex.prompt_ids.size() + ex.chosen_ids.size() + ex.rejected_ids.size());
  if (truncation == Truncation::Right) {
    const int64_t room = max_length - prompt_len;
    if (room < 1) {
      throw UserError(where + "the prompt alone has " + std::to_string(prompt_len) + " tokens, no room within data.max_length " +
                      std::to_string(max_length) + ". Fix: raise data.max_length or use data.truncation: left");
    }
    if (static_cast<int64_t>(ex.chosen_ids.size()) > room) ex.chosen_ids.resize(static_cast<size_t>(room));
    if (static_cast<int64_t>(ex.rejected_ids.size()) > room) ex.rejected_ids.resize(static_cast<size_t>(room));
  } else {
    const int64_t cut = longest - max_length;
    if (cut >= prompt_len) {
      throw UserError(where + "a completion alone fills data.max_length " + std::to_string(max_length) +
                      ". Fix: raise data.max_length or use data.truncation: right");
    }
    ex.prompt_ids.erase(ex.prompt_ids.begin(), ex.prompt_ids.begin() + cut);
  }
  ex.truncated = true;
  if (stats) {
    ++stats->truncated;
    stats->tokens_dropped += before - static_cast<int64_t>(ex.prompt_ids.size() + ex.chosen_ids.size() + ex.rejected_ids.size());
  }
  return ex;
}

}  // namespace scorch::data
