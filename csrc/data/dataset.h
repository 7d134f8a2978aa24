// JSONL datasets in DESIGN.md's formats (TRL's field names), parsed and validated up front so a
// bad line fails before any training step, naming file:line.
//
//   SFT         {"prompt": P, "completion": C} | {"messages": [{"role","content"(,"train")}...]} | {"text": T}
//               P may be a string or a message list; C a string or a list of assistant messages.
//               "train": false on an assistant message keeps it out of the loss (two-attempt data).
//   Preference  {"prompt": P, "chosen": C, "rejected": C, "weight"?: number}   (weight: ScPO)
//   RL prompts  {"prompt": P, "answer"?: string|number, ...}: every other field goes to `extra`
//               (an object) and on to the rewards.
// Blank lines are ignored. A malformed line is a UserError "<file>:<line>: <what>" unless
// skip_malformed is set, in which case it is skipped and counted. A dataset with no usable line,
// or a missing file, is a UserError.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/chat_template.h"

namespace scorch::data {

struct DatasetOptions {
  bool skip_malformed = false;  // config data.skip_malformed
};

struct SftRecord {
  int64_t line = 0;                   // 1-based line in the file
  std::vector<ChatMessage> messages;  // prompt/completion becomes [user P, assistant C]
  bool is_text = false;               // {"text": ...}: language modelling on every token
  std::string text;
};

struct PreferenceRecord {
  int64_t line = 0;
  std::vector<ChatMessage> prompt;  // a string prompt becomes one user message
  std::string chosen, rejected;     // assistant completions
  double weight = 1.0;
};

struct PromptRecord {
  int64_t line = 0;
  std::vector<ChatMessage> prompt;      // a string prompt becomes one user message
  std::string prompt_text;              // the string prompt, or the last user message's content
  std::optional<std::string> answer;    // numbers are kept as their JSON text ("66", "2.5")
  nlohmann::json extra = nlohmann::json::object();  // all other fields, untouched
};

template <class Record>
struct Dataset {
  std::string path;
  std::vector<Record> records;
  int64_t skipped = 0;  // malformed lines skipped (skip_malformed only)
  int64_t size() const { return static_cast<int64_t>(records.size()); }
  const Record& operator[](int64_t i) const { return records[static_cast<size_t>(i)]; }
};

using SftDataset = Dataset<SftRecord>;
using PreferenceDataset = Dataset<PreferenceRecord>;
using PromptDataset = Dataset<PromptRecord>;

SftDataset load_sft_dataset(const std::string& path, const DatasetOptions& options = {});
PreferenceDataset load_preference_dataset(const std::string& path, const DatasetOptions& options = {});
PromptDataset load_prompt_dataset(const std::string& path, const DatasetOptions& options = {});

}  // namespace scorch::data
