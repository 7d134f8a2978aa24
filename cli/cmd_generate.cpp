// `scorch generate --model DIR (--prompts FILE.jsonl --out FILE.jsonl | --prompt TEXT) [sampling flags]`
// Samples completions with the rollout engine so results can be checked from outside (parity with
// transformers, eyeballing a checkpoint). Input lines hold "prompt" (text, rendered as one user
// message through --chat-template; `none` = the tokenizer alone, BOS as the tokenizer says),
// "messages" (a chat), or "prompt_ids" (token ids used as they are). Each output line is the input
// object plus prompt_ids, completion_ids, completion, logprobs, finish_reason (+ sample_index when
// n > 1): one line per sample, ordered by (input line, sample).
#include <CLI/CLI.hpp>
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "cli/commands.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/rng.h"
#include "common/strings.h"
#include "model/hf_checkpoint.h"
#include "rollout/engine.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace scorch::cli {
namespace {

struct GenerateArgs {
  std::string model, prompts_file, out, prompt, tokenizer, chat_template = "auto", device = "auto", dtype;
  std::string tiktoken_pattern;
  std::string decode_steps = "auto";
  bool fused_decode_attention = false, no_lookahead = false;
  std::vector<std::string> stop;
  int64_t batch_size = 64;
  SamplingParams sampling;
};

struct InputLine {
  nlohmann::json object;  // the input's fields, echoed to the output
  std::vector<int64_t> prompt_ids;
};

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::vector<ChatMessage> parse_messages(const nlohmann::json& m, const std::string& where) {
  if (!m.is_array() || m.empty()) throw UserError(where + ": \"messages\" must be a non-empty array of {role, content}");
  std::vector<ChatMessage> out;
  for (const auto& x : m) {
    if (!x.is_object() || !x.contains("role") || !x.contains("content") || !x["role"].is_string() ||
        !x["content"].is_string()) {
      throw UserError(where + ": every message needs string \"role\" and \"content\"");
    }
    const std::string role = x["role"].get<std::string>();
    if (!is_known_chat_role(role)) {
      throw UserError(where + ": \"role\" '" + shorten(role) + "' is unknown (use system, user, assistant or tool)");
    }
    out.push_back(ChatMessage{role, x["content"].get<std::string>()});
  }
  return out;
}

// Token ids of one input object; the renderer is null when no tokenizer could be loaded.
std::vector<int64_t> prompt_ids_of(const nlohmann::json& j, const ChatRenderer* chat, const std::string& where) {
  if (j.contains("prompt_ids")) {
    const auto& ids = j["prompt_ids"];
    if (!ids.is_array()) throw UserError(where + ": \"prompt_ids\" must be an array of token ids");
    std::vector<int64_t> out;
    for (const auto& x : ids) {
      if (!x.is_number_integer()) throw UserError(where + ": \"prompt_ids\" must hold integers");
      out.push_back(x.get<int64_t>());
    }
    return out;
  }
  const bool has_prompt = j.contains("prompt"), has_messages = j.contains("messages");
  if (!has_prompt && !has_messages) throw UserError(where + ": needs \"prompt\" (text), \"messages\" or \"prompt_ids\"");
  if (!chat) throw UserError(where + ": text prompts need a tokenizer (none found: pass --tokenizer PATH)");
  if (has_messages) return chat->render_prompt(parse_messages(j["messages"], where));
  if (!j["prompt"].is_string()) throw UserError(where + ": \"prompt\" must be a string");
  return chat->render_prompt({ChatMessage{"user", j["prompt"].get<std::string>()}});
}

std::vector<InputLine> read_inputs(const GenerateArgs& a, const ChatRenderer* chat) {
  std::vector<InputLine> lines;
  if (!a.prompt.empty()) {
    InputLine l;
    l.object = {{"prompt", a.prompt}};
    l.prompt_ids = prompt_ids_of(l.object, chat, "--prompt");
    lines.push_back(std::move(l));
    return lines;
  }
  std::ifstream in(a.prompts_file);
  if (!in) throw UserError("--prompts: cannot open '" + a.prompts_file + "'");
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = a.prompts_file + ":" + std::to_string(number);
    InputLine l;
    if (json_nesting_depth(text) > kMaxJsonNesting) {
      throw UserError(where + ": arrays and objects nest deeper than " + std::to_string(kMaxJsonNesting) + " levels");
    }
    try {
      l.object = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw UserError(where + ": not valid JSON (" + std::string(e.what()) + ")");
    }
    if (!l.object.is_object()) throw UserError(where + ": each line must be a JSON object");
    l.prompt_ids = prompt_ids_of(l.object, chat, where);
    if (l.prompt_ids.empty()) throw UserError(where + ": the prompt is empty");
    lines.push_back(std::move(l));
  }
  if (lines.empty()) throw UserError("--prompts: '" + a.prompts_file + "' holds no prompts");
  return lines;
}

void run_generate(GenerateArgs a) {
  if (a.prompt.empty() == a.prompts_file.empty()) throw UserError("give exactly one of --prompts FILE.jsonl or --prompt TEXT");
  if (!a.prompts_file.empty() && a.out.empty()) throw UserError("--prompts needs --out FILE.jsonl");
  if (!a.prompts_file.empty() && same_file(a.prompts_file, a.out)) {
    throw UserError("--out '" + a.out + "' is the --prompts file; write the samples to another file");
  }
  if (a.batch_size < 1) throw UserError("--batch-size must be >= 1");
  const DecodeSteps decode_steps = parse_decode_steps(a.decode_steps);
  a.sampling.stop_strings = a.stop;
  validate_sampling_params(a.sampling);
  if (!fs::is_directory(a.model)) throw UserError("--model: '" + a.model + "' is not a model directory");

  // Tokenizer: --tokenizer, else the model directory's tokenizer.json / tokenizer.model when present.
  std::unique_ptr<Tokenizer> tokenizer;
  const std::string tok_path = !a.tokenizer.empty() ? a.tokenizer : a.model;
  if (!a.tokenizer.empty() || has_tokenizer_file(a.model)) {
    TokenizerOptions tokenizer_options;
    tokenizer_options.tiktoken_pattern = a.tiktoken_pattern;
    tokenizer = load_tokenizer(tok_path, tokenizer_options);
  }
  if (!tokenizer && !a.tiktoken_pattern.empty()) {
    throw UserError("--tiktoken-pattern needs a tiktoken tokenizer, and '" + a.model + "' has no tokenizer file "
                    "(pass --tokenizer PATH)");
  }
  std::unique_ptr<ChatRenderer> chat;
  if (tokenizer) chat = std::make_unique<ChatRenderer>(*tokenizer, a.chat_template);
  if (!chat && !a.stop.empty()) throw UserError("--stop needs a tokenizer (pass --tokenizer PATH)");
  const std::vector<InputLine> inputs = read_inputs(a, chat.get());

  LoadOptions load;
  if (a.device == "auto") load.device = at::hasCUDA() ? at::Device(at::kCUDA) : at::Device(at::kCPU);
  else if (a.device == "cpu" || a.device == "cuda") load.device = at::Device(a.device);
  else throw UserError("--device must be auto, cpu or cuda, got '" + a.device + "'");
  if (load.device.is_cuda() && !at::hasCUDA()) throw UserError("--device cuda: no CUDA device is available");
  if (!a.dtype.empty()) load.dtype = parse_model_dtype(a.dtype);
  const Transformer model = load_hf_model(a.model, load);
  if (tokenizer && tokenizer->vocab_size() > model.config().vocab_size) {
    throw UserError("tokenizer vocabulary (" + std::to_string(tokenizer->vocab_size()) + ") is larger than the model's (" +
                    std::to_string(model.config().vocab_size) + "): wrong --tokenizer?");
  }
  EngineOptions opts;
  opts.decode_steps = decode_steps;
  opts.fused_decode_attention = a.fused_decode_attention;
  opts.lookahead = !a.no_lookahead;
  opts.settings_from_cli = true;
  if (chat) opts.extra_eos_ids = chat->stop_ids();
  GenerationEngine engine(model, tokenizer.get(), opts);

  std::ostringstream out;
  const int64_t N = static_cast<int64_t>(inputs.size());
  int64_t generated = 0;
  double seconds = 0;
  for (int64_t start = 0, chunk = 0; start < N; start += a.batch_size, ++chunk) {
    const int64_t end = std::min(N, start + a.batch_size);
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t i = start; i < end; ++i) prompts.push_back(inputs[i].prompt_ids);
    SamplingParams p = a.sampling;
    p.seed = rng::derive(a.sampling.seed, {rng::kTagSampling, static_cast<uint64_t>(chunk)});
    std::vector<Sample> samples;
    try {
      samples = engine.generate(prompts, p);
    } catch (const UserError& e) {  // name the input line rather than the position in the chunk
      throw UserError(std::string(e.what()) + (a.prompt.empty() ? " (prompts " + std::to_string(start + 1) + ".." +
                                                                      std::to_string(end) + " of " + a.prompts_file + ")"
                                                                : ""));
    }
    seconds += engine.last_stats().prefill_seconds + engine.last_stats().decode_seconds;
    for (const Sample& s : samples) {
      const InputLine& in = inputs[start + s.prompt_index];
      nlohmann::json j = in.object;
      j["prompt_ids"] = in.prompt_ids;
      j["completion_ids"] = s.completion_ids;
      if (tokenizer) j["completion"] = tokenizer->decode(s.completion_ids);
      j["logprobs"] = s.logprobs;
      j["finish_reason"] = finish_reason_name(s.finish_reason);
      if (a.sampling.n > 1) j["sample_index"] = s.sample_index;
      generated += static_cast<int64_t>(s.completion_ids.size());
      if (!a.prompt.empty()) {  // quick look: the text, then the record
        if (tokenizer) std::printf("--- sample %lld [%s]\n%s\n", static_cast<long long>(s.sample_index),
                                   finish_reason_name(s.finish_reason), tokenizer->decode(s.completion_ids).c_str());
        else std::printf("--- sample %lld [%s]\n", static_cast<long long>(s.sample_index), finish_reason_name(s.finish_reason));
      }
      out << dump(j) << "\n";
    }
  }
  if (!a.out.empty()) {
    fs::atomic_write(a.out, out.str());
    std::fprintf(stderr, "wrote %lld samples of %lld prompts to %s (%lld tokens, %.1f tokens/s)\n",
                 static_cast<long long>(N * a.sampling.n), static_cast<long long>(N), a.out.c_str(),
                 static_cast<long long>(generated), seconds > 0 ? generated / seconds : 0.0);
  } else {  // --prompt without --out: the records follow the texts on stdout
    std::fputs(out.str().c_str(), stdout);
  }
}

}  // namespace

void register_generate(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Sample completions from a model (rollout engine)");
  cmd->add_option("--model", args->model, "HF model directory (config.json + safetensors)")->check(non_empty_path)->required();
  cmd->add_option("--prompts", args->prompts_file, "JSONL: {\"prompt\"} | {\"messages\"} | {\"prompt_ids\"} per line")->check(non_empty_path);
  cmd->add_option("--out", args->out, "Output JSONL (one line per sample)")->check(non_empty_path);
  cmd->add_option("--prompt", args->prompt, "One prompt text: print its samples to stdout");
  cmd->add_option("--tokenizer", args->tokenizer, "tokenizer.json, tokenizer.model or their directory (default: the model directory)")->check(non_empty_path);
  cmd->add_option("--tiktoken-pattern", args->tiktoken_pattern, kTiktokenPatternHelp);
  cmd->add_option("--chat-template", args->chat_template, "auto (the model's own template, else plain) | chatml | llama-2 | plain | none (text through the tokenizer alone)")
      ->capture_default_str();
  cmd->add_option("--n", args->sampling.n, "Samples per prompt")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", args->sampling.temperature, "0 = greedy")->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-p", args->sampling.top_p, "Nucleus mass in (0, 1]")->capture_default_str();
  cmd->add_option("--top-k", args->sampling.top_k, "0 = off")->capture_default_str();
  cmd->add_option("--max-new-tokens", args->sampling.max_new_tokens, "Per sample")->capture_default_str()
      ->check(positive_number);
  cmd->add_option("--seed", args->sampling.seed, "Same seed, same samples (on CPU)")->capture_default_str()->check(non_negative_number);
  cmd->add_option("--stop", args->stop, "Stop string (repeatable)");
  cmd->add_option("--batch-size", args->batch_size, "Prompts per engine batch")->capture_default_str()->check(positive_number);
  cmd->add_option("--device", args->device, "auto | cpu | cuda")->capture_default_str();
  cmd->add_option("--dtype", args->dtype, "float32 | bfloat16 | float16 (default: as stored)");
  cmd->add_option("--decode-steps", args->decode_steps,
                  "auto (CUDA graphs on CUDA) | dynamic (eager, no graphs) | static | cuda_graph")
      ->capture_default_str();
  cmd->add_flag("--fused-decode-attention", args->fused_decode_attention,
                "Static steps: RoPE, cache write and attention in scorch's one kernel (not yet measured on a GPU)");
  cmd->add_flag("--no-lookahead", args->no_lookahead,
                "Static steps: wait for the host's stop rules before queueing the next step");
  cmd->callback([args] { run_generate(*args); });
}

}  // namespace scorch::cli
