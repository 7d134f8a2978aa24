// What the end-to-end trainer tests share: a tiny Llama config, the files of a tiny job made
// through the CLI, and a JSONL reader for metrics.jsonl / samples.jsonl / data files.
#pragma once
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/run_cli.h"

namespace scorch::test {

// 2 layers, hidden 32, the quickstart tokenizer's 512-token vocabulary (35k parameters).
inline const char* kTinyModel = R"({"model_type": "llama", "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256,
  "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2,
  "pad_token_id": 3})";

inline std::string quickstart_tokenizer() { return std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model"; }

// In `dir`: model.json (kTinyModel), `data` (n arithmetic samples, make-data seed 3) and base/
// (the random model, init-model seed 5, quickstart tokenizer). Returns "" on success, else the
// output of the command that failed.
inline std::string make_tiny_job_files(const std::string& dir, int n, const std::string& data = "train.jsonl") {
  std::ofstream(dir + "/model.json") << kTinyModel;
  CommandResult r = run_scorch("make-data --task arith --n " + std::to_string(n) + " --seed 3 --out " + dir + "/" + data);
  if (r.exit_code != 0) return r.output;
  r = run_scorch("init-model --config " + dir + "/model.json --out " + dir + "/base --seed 5 --tokenizer " +
                 quickstart_tokenizer());
  return r.exit_code != 0 ? r.output : "";
}

// Every non-empty line of `path` parsed as JSON (an unreadable file gives no lines).
inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace scorch::test
