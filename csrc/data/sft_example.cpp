// Record -> SftExample: render through the chat template (token level, so the assistant spans are
// exact), mark the trainable completion tokens, cut to max_length.
#include "data/sft_example.h"

#include <algorithm>

#include "common/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace scorch::data {

Truncation parse_truncation(const std::string& name) {
  if (name == "right") return Truncation::Right;
  if (name == "left") return Truncation::Left;
  if (name == "error") return Truncation::Error;
  throw UserError("data.truncation '" + name + "' is invalid; use `right`, `left` or `error`");
}

int64_t SftExample::num_targets() const {
  int64_t n = 0;
  for (uint8_t m : loss_mask) n += m;
  return n;
}

SftExample tokenize_sft(const SftRecord& record, const ChatRenderer& renderer, int64_t max_length,
                        Truncation truncation, const std::string& source, TruncationStats* stats) {
  if (max_length < 2) throw UserError("data.max_length must be >= 2 (got " + std::to_string(max_length) + ")");
  SftExample ex;
  ex.line = record.line;
  if (record.is_text) {
    const Tokenizer& tok = renderer.tokenizer();
    ex.input_ids = tok.encode(record.text, /*add_bos=*/true);
    if (tok.eos_id() >= 0) ex.input_ids.push_back(tok.eos_id());
    ex.loss_mask.assign(ex.input_ids.size(), 1);
  } else {
    RenderedChat chat = renderer.render(record.messages);
    ex.input_ids = std::move(chat.ids);
    ex.loss_mask.assign(ex.input_ids.size(), 0);
    int64_t last_target_end = 0;
    for (const TurnSpan& turn : chat.turns) {
      if (!turn.trainable) continue;
      std::fill(ex.loss_mask.begin() + turn.target_begin, ex.loss_mask.begin() + turn.target_end, 1);
      last_target_end = turn.target_end;
    }
    // Tokens after the last target (a turn separator, trailing user turns) train nothing: drop them.
    if (last_target_end > 0) {
      ex.input_ids.resize(static_cast<size_t>(last_target_end));
      ex.loss_mask.resize(static_cast<size_t>(last_target_end));
    }
  }
  const int64_t length = static_cast<int64_t>(ex.input_ids.size());
  if (length > max_length) {
    if (truncation == Truncation::Error) {
      throw UserError(source + ":" + std::to_string(record.line) + ": sample has " + std::to_string(length) +
                      " tokens, more than data.max_length " + std::to_string(max_length) +
                      " (data.truncation: error). Fix: raise data.max_length or set data.truncation to right or left");
    }
    const int64_t cut = length - max_length;
    if (truncation == Truncation::Right) {
      ex.input_ids.resize(static_cast<size_t>(max_length));
      ex.loss_mask.resize(static_cast<size_t>(max_length));
    } else {
      ex.input_ids.erase(ex.input_ids.begin(), ex.input_ids.begin() + cut);
      ex.loss_mask.erase(ex.loss_mask.begin(), ex.loss_mask.begin() + cut);
    }
    ex.truncated = true;
    if (stats) {
      ++stats->truncated;
      stats->tokens_dropped += cut;
    }
  }
  if (!ex.loss_mask.empty()) ex.loss_mask[0] = 0;
  return ex;
}

std::vector<SftExample> tokenize_sft_dataset(const SftDataset& dataset, const ChatRenderer& renderer,
                                             int64_t max_length, Truncation truncation, TruncationStats* stats) {
  TruncationStats local;
  TruncationStats& s = stats ? *stats : local;
  std::vector<SftExample> out;
  out.reserve(dataset.records.size());
  for (const SftRecord& r : dataset.records) {
    SftExample ex = tokenize_sft(r, renderer, max_length, truncation, dataset.path, &s);
    if (ex.num_targets() == 0) {
      ++s.no_target;
      continue;
    }
    out.push_back(std::move(ex));
  }
  if (out.empty()) {
    throw UserError("SFT dataset '" + dataset.path + "' has no sample with a target token left within data.max_length " +
                    std::to_string(max_length) + ". Fix: raise data.max_length or use data.truncation: left");
  }
  return out;
}

}  // namespace scorch::data
