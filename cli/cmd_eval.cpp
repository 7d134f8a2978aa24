// `scorch eval --model DIR --data FILE.jsonl --out FILE.json [--attempts 2] ...`: accuracy by
// greedy generation on a dataset with answers (and the two-attempt self-correction metrics), or
// mean@K / pass@K / maj@K over K sampled answers per problem (--samples K --temperature T).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"
#include "config/config.h"
#include "data/dataset.h"
#include "tokenizer/tokenizer.h"
#include "trainers/common/evaluation.h"
#include "train/session.h"

namespace scorch::cli {
namespace {
struct EvalArgs {
  std::string model, data, out, tokenizer, chat_template = "auto", device = "auto", decode_steps = "auto";
  std::string tiktoken_pattern;
  int64_t max_new_tokens = 256, attempts = 1, limit = 0, batch_size = 64, samples = 1;
  double temperature = 0.0, top_p = 1.0;
  uint64_t seed = 0;
  std::string instruction = ScoreSection{}.correction_instruction;
};

void run_eval(const EvalArgs& a) {
  if (a.attempts < 1 || a.attempts > 2) throw UserError("--attempts must be 1 or 2, got " + std::to_string(a.attempts));
  if (a.max_new_tokens < 1) throw UserError("--max-new-tokens must be >= 1");
  if (a.temperature < 0) throw UserError("--temperature must be >= 0");
  if (a.samples < 1) throw UserError("--samples must be >= 1, got " + std::to_string(a.samples));
  if (a.samples > 1 && a.temperature <= 0) {
    throw UserError("--samples " + std::to_string(a.samples) + " needs --temperature > 0 (greedy samples are all the same)");
  }
  if (a.samples > 1 && a.attempts != 1) throw UserError("--samples > 1 works with --attempts 1 only");
  if (!a.out.empty() && same_file(a.data, a.out)) {
    throw UserError("--out '" + a.out + "' is the --data file; write the report to another file");
  }
  const DecodeSteps decode_steps = parse_decode_steps(a.decode_steps);
  auto dataset = data::load_prompt_dataset(a.data);
  std::vector<data::PromptRecord> prompts;
  int64_t without_answer = 0;
  for (auto& r : dataset.records) {
    if (r.answer) prompts.push_back(std::move(r));
    else ++without_answer;
  }
  if (prompts.empty()) throw UserError("'" + a.data + "' has no line with an \"answer\" field: eval needs gold answers");
  if (a.limit > 0 && static_cast<int64_t>(prompts.size()) > a.limit) prompts.resize(static_cast<size_t>(a.limit));
  TokenizerOptions tokenizer_options;
  tokenizer_options.tiktoken_pattern = a.tiktoken_pattern;
  ModelSession session = open_model_session(a.model, a.tokenizer, a.chat_template, a.device, "auto", tokenizer_options);
  EvalOptions options;
  options.max_new_tokens = a.max_new_tokens;
  options.attempts = a.attempts;
  options.correction_instruction = a.instruction;
  options.temperature = a.temperature;
  options.top_p = a.top_p;
  options.seed = a.seed;
  options.batch_size = a.batch_size;
  options.samples = a.samples;
  options.decode_steps = decode_steps;
  options.settings_from_cli = true;
  const EvalReport report = evaluate_accuracy(*session.model, *session.renderer, prompts, options);
  // The terminal table: the paper's names (ALGORITHMS.md §7) next to the JSON keys, in a fixed order.
  static const std::pair<const char*, const char*> kRows[] = {
      {"accuracy", "Accuracy"}, {"no_answer_fraction", "no answer"}, {"pass_at_k", "pass@K"}, {"maj_at_k", "maj@K"},
      {"accuracy_t1", "Accuracy@t1"}, {"accuracy_t2", "Accuracy@t2"}, {"delta", "Δ(t1,t2)"},
      {"delta_i_to_c", "Δ^{i→c}"}, {"delta_c_to_i", "Δ^{c→i}"}, {"edit_distance", "edit distance"},
      {"changed_fraction", "changed answers"}};
  const nlohmann::json summary = report.to_json();
  std::printf("%-18s %-16s %s\n", "key", "metric", "value");
  std::printf("%-18s %-16s %lld\n", "n", "problems", static_cast<long long>(report.n));
  for (const auto& [key, label] : kRows) {
    if (!summary.contains(key)) continue;
    // Pad by code points, not bytes: the labels hold UTF-8 (Δ, →).
    std::string padded = label;
    int64_t width = 0;
    for (unsigned char ch : padded) width += (ch & 0xC0) != 0x80;
    padded.append(static_cast<size_t>(std::max<int64_t>(0, 16 - width)), ' ');
    std::printf("%-18s %s %.4f\n", key, padded.c_str(), summary[key].get<double>());
  }
  if (without_answer > 0) std::fprintf(stderr, "note: %lld lines without an answer were left out\n", static_cast<long long>(without_answer));
  if (!a.out.empty()) fs::atomic_write(a.out, summary.dump(2) + "\n");
}
}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Accuracy by generation on a dataset with answers (and two-attempt self-correction)");
  cmd->add_option("--model", a->model, "HF model directory")->check(non_empty_path)->required();
  cmd->add_option("--data", a->data, "JSONL with \"prompt\" and \"answer\"")->check(non_empty_path)->required();
  cmd->add_option("--out", a->out, "Write the report as JSON here")->check(non_empty_path);
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json, tokenizer.model or their directory (default: the model directory)")->check(non_empty_path);
  cmd->add_option("--tiktoken-pattern", a->tiktoken_pattern, kTiktokenPatternHelp);
  cmd->add_option("--chat-template", a->chat_template, "auto (the model's own template, else plain) | chatml | llama-2 | plain | none")->capture_default_str();
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "Tokens per attempt")->capture_default_str()->check(positive_number);
  cmd->add_option("--attempts", a->attempts, "1, or 2 for the self-correction metrics")->capture_default_str()->check(CLI::Range(1, 2));
  cmd->add_option("--temperature", a->temperature, "0 = greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-p", a->top_p, "Nucleus sampling (temperature > 0)")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Sampling seed (temperature > 0)")->check(non_negative_number);
  cmd->add_option("--samples", a->samples,
                  "K samples per problem (temperature > 0): accuracy = mean@K, plus pass@K and maj@K")
      ->capture_default_str();
  cmd->add_option("--limit", a->limit, "Evaluate the first N problems only")->check(non_negative_number);
  cmd->add_option("--batch-size", a->batch_size, "Prompts per generation batch")->capture_default_str()->check(positive_number);
  cmd->add_option("--device", a->device, "auto | cpu | cuda")->capture_default_str();
  cmd->add_option("--decode-steps", a->decode_steps, "auto (CUDA graphs on CUDA) | dynamic | static | cuda_graph")
      ->capture_default_str();
  cmd->add_option("--correction-instruction", a->instruction, "The user turn before attempt 2 (default: SCoRe's)");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace scorch::cli
