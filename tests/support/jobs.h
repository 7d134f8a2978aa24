// What the end-to-end trainer tests share: a tiny Llama config, the files of a tiny job made
// through the CLI, a JSONL reader for metrics.jsonl / samples.jsonl / data files, and the helpers
// of the crash tests (a command killed at a kill point, the files a killed writer can leave).
#pragma once
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
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

// The exit code of a command that died by SIGKILL, as run_command reports it.
inline constexpr int kKilledExitCode = 128 + SIGKILL;

// `scorch ARGS` with SCORCH_KILL_AT=POINT (common/kill_point.h): it dies by SIGKILL at that point.
inline CommandResult run_scorch_killed_at(const std::string& point, const std::string& args) {
  return run_command("SCORCH_KILL_AT='" + point + "' '" + std::string(SCORCH_BIN) + "' " + args);
}

// Paths below `dir` (relative) that only an unfinished write leaves: staging directories
// (`*.staging.<pid>`), temporary files and checkpoints (`*.tmp.<pid>`, `*.tmp-<pid>`) and
// directories moved aside (`*.old.<pid>`, `*.old-<pid>`).
inline std::vector<std::string> partial_files(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::end(it);
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    for (const char* mark : {".staging.", ".tmp.", ".tmp-", ".old.", ".old-"}) {
      if (name.find(mark) != std::string::npos) {
        found.push_back(std::filesystem::relative(it->path(), dir).string());
        break;
      }
    }
  }
  return found;
}

// Every regular file below `dir`: relative path -> content.
inline std::map<std::string, std::string> files_below(const std::string& dir) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); !ec && it != std::filesystem::end(it);
       it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    std::ifstream in(it->path(), std::ios::binary);
    out[std::filesystem::relative(it->path(), dir).string()] =
        std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  return out;
}

}  // namespace scorch::test
