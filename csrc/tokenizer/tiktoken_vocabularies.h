// The tiktoken vocabularies scorch knows. A rank file holds only "<base64 bytes> <rank>" lines: the
// pre-tokenizer pattern and the special tokens live in the code of whoever publishes it. scorch
// recognises a published rank file by its rank count and the sha256 of its bytes and takes both
// from here, transcribed from that code (cited per entry). Internal to csrc/tokenizer.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace scorch {

struct TiktokenVocabulary {
  std::string name;         // also a value of tokenizer.tiktoken_pattern: "llama3"
  std::string description;  // for messages: "Llama 3.x (llama-models' tokenizer.model)"
  int64_t ranks = 0;        // lines in the file
  std::string sha256;       // of the file's bytes
  std::string pattern;      // the pre-tokenizer regex (tiktoken's pat_str)
  std::vector<std::pair<std::string, int64_t>> special_tokens;
  std::string bos, eos, pad;      // special-token text; "" = the vocabulary has none
  std::vector<std::string> stop;  // special tokens that also end generation, besides eos
  bool add_bos = false;           // encode(text, add_bos=true) starts with bos
};

const std::vector<TiktokenVocabulary>& known_tiktoken_vocabularies();
// The known vocabulary with this rank count and file sha256, or null.
const TiktokenVocabulary* find_tiktoken_vocabulary(int64_t ranks, const std::string& sha256);
// By name (tokenizer.tiktoken_pattern: llama3; gpt2 = r50k_base), or null.
const TiktokenVocabulary* tiktoken_vocabulary_named(const std::string& name);

}  // namespace scorch
