// SFT samples as token ids: a record rendered through the chat template, with the loss mask on the
// assistant completion tokens only (end-of-turn / EOS included, so the model learns to stop;
// ALGORITHMS.md §1), then cut to max_length.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace scorch {
class ChatRenderer;
}

namespace scorch::data {

enum class Truncation { Right, Left, Error };
// "right" | "left" | "error"; anything else is a UserError naming data.truncation.
Truncation parse_truncation(const std::string& name);

struct SftExample {
  std::vector<int64_t> input_ids;  // [L]
  // [L] loss_mask[t] = 1 iff input_ids[t] is a training target (predicted from position t-1).
  // Always 0 at t = 0: the first token has nothing before it. A chat sample ends with its last
  // target (the final end-of-turn); trailing tokens that train nothing are not kept.
  std::vector<uint8_t> loss_mask;
  int64_t line = 0;                // source line, for messages
  bool truncated = false;
  int64_t num_targets() const;
};

// What truncation did, for the log and metrics.
struct TruncationStats {
  int64_t truncated = 0;       // samples cut to max_length
  int64_t tokens_dropped = 0;  // tokens removed by cutting
  int64_t no_target = 0;       // samples with no target left after cutting (dropped from the set)
};

// Renders one record. `source` names the file for error messages. With Truncation::Error a sample
// longer than max_length is a UserError "<source>:<line>: ...".
// {"text"} records are BOS + encode(text) + EOS with every token after the first a target.
SftExample tokenize_sft(const SftRecord& record, const ChatRenderer& renderer, int64_t max_length,
                        Truncation truncation, const std::string& source, TruncationStats* stats = nullptr);

// The whole dataset; samples left with no target are dropped and counted in `stats`.
// Throws UserError if nothing is left.
std::vector<SftExample> tokenize_sft_dataset(const SftDataset& dataset, const ChatRenderer& renderer,
                                             int64_t max_length, Truncation truncation,
                                             TruncationStats* stats = nullptr);

}  // namespace scorch::data
