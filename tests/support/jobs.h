// What the end-to-end trainer tests share: a tiny Llama config for `scorch init-model` and a
// JSONL reader for metrics.jsonl / samples.jsonl / data files.
#pragma once
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace scorch::test {

// 2 layers, hidden 32, the quickstart tokenizer's 512-token vocabulary (35k parameters).
inline const char* kTinyModel = R"({"model_type": "llama", "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
  "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
  "pad_token_id": 3})";

// Every non-empty line of `path` parsed as JSON (an unreadable file gives no lines).
inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace scorch::test
