// `scorch reward --config rewards.yaml --in samples.jsonl --out scored.jsonl [--model DIR]`
// Scores completions offline with the same `rewards:` list a training config uses. Each input
// line has `prompt`, `completion`, optionally `answer`, `group` (lines with equal `group` values
// form one group; without it each line is its own group), `prompt_ids` / `completion_ids` and any
// extra fields (all passed to the rewards). Each output line is the input line (key order kept)
// plus `reward` (weighted total, null where it could not be scored) and `rewards` ({name: value}),
// and `advantage_offset` when a reward sets one. A summary table goes to stdout.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "rewards/judge.h"
#include "rewards/reward.h"

namespace scorch::cli {
namespace {

using ordered_json = nlohmann::ordered_json;

struct RewardArgs {
  std::string config;
  std::string in;
  std::string out;
  std::string model;
  bool list = false;
};

std::vector<int64_t> read_ids(const nlohmann::json& v, const std::string& where, const char* key) {
  std::vector<int64_t> ids;
  if (v.is_null()) return ids;
  if (!v.is_array()) throw UserError(where + ": `" + key + "` must be a list of token ids");
  for (const auto& x : v) {
    if (!x.is_number_integer()) throw UserError(where + ": `" + key + "` must be a list of integer token ids");
    ids.push_back(x.get<int64_t>());
  }
  return ids;
}

// Reads the samples; `lines` keeps each input object (key order preserved) for the output.
rewards::RewardBatch read_samples(const std::string& path, std::vector<ordered_json>& lines) {
  std::istringstream text(fs::read_file(path, "samples file"));
  rewards::RewardBatch batch;
  std::map<std::string, int64_t> group_ids;
  std::string line;
  size_t line_no = 0;
  while (std::getline(text, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json obj;
    if (json_nesting_depth(line) > kMaxJsonNesting) {
      throw UserError(where + ": arrays and objects nest deeper than " + std::to_string(kMaxJsonNesting) + " levels");
    }
    try {
      obj = nlohmann::json::parse(line);
      lines.push_back(ordered_json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      throw UserError(where + ": not valid JSON (" + std::string(e.what()) + ")");
    }
    if (!obj.is_object()) throw UserError(where + ": each line must be a JSON object");
    rewards::RewardSample s;
    for (const char* key : {"prompt", "completion"}) {
      if (!obj.contains(key) || !obj[key].is_string()) {
        throw UserError(where + ": missing string field `" + key + "` (each line needs `prompt` and `completion`)");
      }
    }
    s.prompt = obj["prompt"].get<std::string>();
    s.completion = obj["completion"].get<std::string>();
    if (obj.contains("answer") && !(obj["answer"].is_string() || obj["answer"].is_number() || obj["answer"].is_null())) {
      throw UserError(where + ": `answer` must be a string or a number");
    }
    if (obj.contains("prompt_ids")) s.prompt_ids = read_ids(obj["prompt_ids"], where, "prompt_ids");
    if (obj.contains("completion_ids")) s.completion_ids = read_ids(obj["completion_ids"], where, "completion_ids");
    if (obj.contains("turn") && obj["turn"].is_number_integer()) s.turn = obj["turn"].get<int64_t>();
    if (obj.contains("step") && obj["step"].is_number_integer()) s.step = obj["step"].get<int64_t>();
    // Equal `group` values (any JSON value) share a group; no `group` = a group of one.
    const std::string key = obj.contains("group") && !obj["group"].is_null() ? "g:" + obj["group"].dump()
                                                                              : "line:" + std::to_string(line_no);
    auto it = group_ids.emplace(key, static_cast<int64_t>(group_ids.size())).first;
    s.group = it->second;
    s.fields = std::move(obj);
    batch.samples.push_back(std::move(s));
  }
  if (batch.samples.empty()) throw UserError("samples file '" + path + "' has no samples (one JSON object per line)");
  batch.index_groups();
  return batch;
}

ordered_json number_or_null(double v) { return std::isnan(v) ? ordered_json(nullptr) : ordered_json(v); }

void print_list() {
  for (const auto& kv : rewards::reward_registry()) {
    std::printf("%s%s\n  %s\n", kv.first.c_str(), kv.second.needs_judge ? " (needs --model)" : "",
                kv.second.description.c_str());
    for (const auto& line : rewards::reward_params_schema(kv.first)) std::printf("    %s\n", line.c_str());
  }
}

void run_reward(const RewardArgs& a) {
  if (a.list) {
    print_list();
    return;
  }
  if (a.config.empty() || a.in.empty() || a.out.empty()) {
    throw UserError("scorch reward needs --config FILE, --in SAMPLES.jsonl and --out SCORED.jsonl (or --list)");
  }
  if (same_file(a.in, a.out)) {
    throw UserError("--out '" + a.out + "' is the --in file; write the scored samples to another file");
  }
  const auto specs = load_reward_specs(a.config);
  const auto& registry = rewards::reward_registry();
  bool needs_judge = false;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto it = registry.find(specs[i].name);
    if (it == registry.end() || !it->second.needs_judge) continue;
    needs_judge = true;
    if (a.model.empty()) {
      throw UserError(specs[i].name + " needs --model DIR: reward `rewards[" + std::to_string(i) + "]` in " + a.config +
                      ":" + std::to_string(specs[i].line) + " asks a model to judge the completions");
    }
  }
  rewards::RewardContext context;
  if (needs_judge) context.judge = rewards::make_judge(a.model);
  else if (!a.model.empty()) log::warn("--model ", a.model, " is unused: no self-judging reward in ", a.config);
  rewards::RewardSet set(specs, context, a.config);

  std::vector<ordered_json> lines;
  const rewards::RewardBatch batch = read_samples(a.in, lines);
  const rewards::RewardSetOutput scored = set.score(batch);

  bool any_offset = false;
  for (double o : scored.advantage_offsets) any_offset = any_offset || o != 0.0;
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    ordered_json& o = lines[i];
    o["reward"] = number_or_null(scored.total[i]);
    ordered_json per = ordered_json::object();
    for (size_t k = 0; k < scored.names.size(); ++k) per[scored.names[k]] = number_or_null(scored.components[k][i]);
    o["rewards"] = std::move(per);
    if (any_offset) o["advantage_offset"] = scored.advantage_offsets[i];
    out += o.dump() + "\n";
  }
  fs::atomic_write(a.out, out);

  // Summary: one row per component, then the total, then every diagnostic.
  std::printf("scored %zu samples in %zu groups from %s -> %s\n", batch.samples.size(), batch.groups.size(),
              a.in.c_str(), a.out.c_str());
  std::printf("%-24s %8s %10s %8s\n", "component", "weight", "mean", "nan");
  for (size_t k = 0; k < scored.names.size(); ++k) {
    const auto s = rewards::finite_stats(scored.components[k]);
    std::printf("%-24s %8.3g %10.4f %8zu\n", scored.names[k].c_str(), set.weights()[k], s.mean, s.nan_count);
  }
  const auto t = rewards::finite_stats(scored.total);
  std::printf("%-24s %8s %10.4f %8zu\n", "total", "", t.mean, t.nan_count);
  for (const auto& kv : scored.metrics) {
    const auto& name = kv.first;
    if (name.size() > 5 && (name.rfind("/mean") == name.size() - 5 || name.rfind("/std") == name.size() - 4)) continue;
    std::printf("  %s = %g\n", name.c_str(), kv.second);
  }
}

}  // namespace

void register_reward(CLI::App& app) {
  auto args = std::make_shared<RewardArgs>();
  auto* cmd = app.add_subcommand("reward", "Score completions offline with a rewards config");
  cmd->add_option("--config", args->config, "YAML file with a `rewards:` list (a training config works too)")->check(non_empty_path);
  cmd->add_option("--in", args->in, "JSONL samples: prompt, completion, [answer], [group], extra fields")->check(non_empty_path);
  cmd->add_option("--out", args->out, "JSONL output: each input line + reward + rewards")->check(non_empty_path);
  cmd->add_option("--model", args->model, "Judge model directory (needed by self_verify / self_rubric)")->check(non_empty_path);
  cmd->add_flag("--list", args->list, "List the available rewards and their params");
  cmd->callback([args] { run_reward(*args); });
}

}  // namespace scorch::cli
