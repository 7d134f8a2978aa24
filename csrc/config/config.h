// The job configuration: YAML -> typed structs, strictly validated (DESIGN.md "Config").
// Defaults live in the member initialisers below (one place per struct); constraints and key
// names live in config.cpp's schema, the names of each enum option in options.h. Keys reuse TRL's
// names where TRL has one. No YAML here: config/yaml_binder.h does the reading.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/options.h"

namespace scorch {

struct YamlTree;  // a YAML subtree with its line numbers (config/yaml_binder.h)

struct ModelSection {
  std::string path;                 // HF model directory (config.json + safetensors)
  std::string dtype = "auto";       // auto | float32 | bfloat16 (auto: bf16 on CUDA, fp32 on CPU)
  std::string device = "auto";      // auto | cpu | cuda
  bool gradient_checkpointing = false;  // recompute each decoder layer in the backward (Transformer)
  // Training forwards run kernels' fused RMSNorm / RoPE / SiLU * up with their fused backward
  // (Transformer::set_fused_training_ops); false: the eager ATen ops (for comparisons).
  bool fused_training_ops = true;
};

struct TokenizerSection {
  std::string path;                 // tokenizer.json / tokenizer.model / *.tiktoken / their directory; empty = model.path
  bool parse_special = false;       // special-token text in data becomes control ids (tokenizer.json, tiktoken)
  // auto = the model's own Jinja template (tokenizer_config.json / chat_template.jinja beside the
  // tokenizer) when it has one, else plain; or a built-in: chatml | llama-2 | plain | none.
  std::string chat_template = "auto";
  // Extra template variables (e.g. enable_thinking: false) as a JSON object; auto only.
  std::string chat_template_kwargs = "{}";
  // tiktoken rank files only: the pre-tokenizer regex, or a known vocabulary's name (llama3, qwen,
  // r50k_base, cl100k_base, o200k_base) whose pattern to use; empty = the recognised vocabulary's.
  std::string tiktoken_pattern;
};

struct DataSection {
  std::string train;                // JSONL
  std::string eval;                 // JSONL, optional
  int64_t max_length = 512;         // prompt + completion tokens per sample
  std::string truncation = "right"; // right | left | error
  bool packing = false;
  bool shuffle = true;
  bool skip_malformed = false;      // count and skip malformed lines instead of failing
  int64_t eval_limit = 0;           // 0 = whole eval set
};

struct TrainSection {
  int64_t max_steps = 0;            // optimizer steps; 0 = derive from epochs
  int64_t epochs = 1;
  int64_t micro_batch_size = 8;     // samples (prompts for RL) per micro-batch per rank
  int64_t gradient_accumulation_steps = 1;
  double max_grad_norm = 1.0;       // 0 disables clipping
  int64_t eval_every = 0;           // steps; 0 = only at the end
  int64_t eval_samples = 0;         // K >= 2: evaluations also log mean@K / pass@K / maj@K of K samples
                                    // per problem at generation.temperature (fixed seed); 0 = greedy only
  int64_t max_nonfinite_steps = 3;  // consecutive skipped steps before exit 3
  int64_t threads = 0;              // CPU intra-op threads; 0 = torch default
};

struct OptimSection {
  std::string name = "adamw";
  double learning_rate = 1e-5;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  std::string lr_scheduler_type = "constant";  // constant | linear | cosine
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  double min_lr_ratio = 0.0;        // cosine/linear floor as a fraction of learning_rate
  bool decay_norms_and_biases = false;
};

struct GenerationSection {
  double temperature = 1.0;         // 0 = greedy
  double top_p = 1.0;
  int64_t top_k = 0;                // 0 = off
  int64_t max_prompt_length = 512;
  int64_t max_completion_length = 256;
  std::vector<std::string> stop;    // stop strings
  int64_t eval_max_new_tokens = 256;
  // Decode steps of the rollout engine (rollout/engine.h): auto = CUDA graphs on CUDA, dynamic
  // steps on CPU; dynamic | static | cuda_graph force one kind (dynamic = no graphs, as eager).
  DecodeSteps decode_steps = DecodeSteps::kAuto;
  // Static decode steps: each layer's RoPE, cache write and attention in scorch's one-kernel
  // decode_attention (rollout/engine.h EngineOptions::fused_decode_attention; off until measured on
  // a GPU), and queueing the next step before the host reads this one's tokens (lookahead).
  bool fused_decode_attention = false;
  bool lookahead = true;
};

struct RewardSpec {
  std::string name;
  double weight = 1.0;
  std::shared_ptr<const YamlTree> params;  // a mapping or null; read by the reward's own schema (rewards/)
  int line = 0;                     // where it was declared, for error messages
  std::string source;               // the file it was declared in ("" = unknown)
};

struct CheckpointSection {
  int64_t save_every = 0;           // steps; 0 = only at the end
  int64_t keep_last = 2;
  std::string resume_from;          // a checkpoint directory; empty = latest in the run dir
  bool export_final = true;         // write run_dir/export (HF format) at the end
};

struct LogSection {
  std::string level = "info";
  int64_t every = 1;                // steps between metrics.jsonl lines
  int64_t samples = 4;              // decoded rollouts per log step in samples.jsonl
  bool progress = true;
};

struct DistSection {
  std::string backend = "auto";     // auto | nccl | gloo
  double timeout_s = 600.0;
  int64_t bucket_mb = 25;
  bool zero1 = false;
};

// LoRA adapters on the decoder's linear projections (model/lora.h), with PEFT's LoraConfig names
// and defaults. enabled = false trains every weight.
struct LoraSection {
  bool enabled = false;
  int64_t r = 8;
  double lora_alpha = 8.0;
  double lora_dropout = 0.0;
  // q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, or "all-linear" (all seven; the LM
  // head excluded, as PEFT). PEFT's default for Llama / Qwen2 / Mistral is q_proj, v_proj.
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  bool use_rslora = false;                 // scaling lora_alpha / sqrt(r) instead of lora_alpha / r
  std::string init_lora_weights = "kaiming";  // kaiming (PEFT's true) | gaussian; B = 0 both ways
};

struct SftSection {
  bool completion_only_loss = true;
};

struct DpoSection {
  double beta = 0.1;
  std::string loss_type = "sigmoid";  // sigmoid | ipo | hinge | robust | sft, or a comma list
  std::vector<double> loss_weights;   // optional, one per loss_type entry
  double label_smoothing = 0.0;
  double rpo_alpha = 0.0;             // weight of the NLL-on-chosen term; 0 = off
  std::string reference = "live";     // live | precompute
};

struct ScpoSection {
  int64_t num_samples = 8;
  ScpoPairs pairs = ScpoPairs::kVote;  // vote | gold (needs every prompt's `answer`)
  double threshold = 0.5;             // tau as a fraction of num_samples (vote only)
  int64_t rounds = 1;
  std::vector<double> round_thresholds;  // per round (vote only); empty = `threshold` every round
  double beta = 0.5;
  double alpha = 1.0;
  double temperature = 0.7;
  double top_p = 0.9;
};

struct GrpoSection {
  int64_t num_generations = 8;
  double beta = 0.0;
  double epsilon = 0.2;
  double epsilon_high = 0.0;          // 0 = same as epsilon
  double delta = 0.0;                 // two-sided clip of the ratio; 0 = off
  GrpoLossType loss_type = GrpoLossType::kDapo;
  RewardScaling scale_rewards = RewardScaling::kGroup;
  AdvantageEstimator advantage = AdvantageEstimator::kGrpo;
  int64_t num_iterations = 1;
  ImportanceSamplingLevel importance_sampling_level = ImportanceSamplingLevel::kToken;
  bool mask_truncated_completions = false;
  double top_entropy_quantile = 1.0;
  double entropy_coef = 0.0;
};

struct ScoreSection {
  ScoreStage stage = ScoreStage::kBoth;
  int64_t stage1_steps = 100;
  int64_t stage2_steps = 100;
  double alpha = 10.0;
  double beta1 = 0.01;
  double beta2 = 0.1;
  int64_t num_attempts = 2;
  std::string correction_instruction =
      "There might be an error in the solution above because of lack of understanding of the "
      "question. Please correct the error, if any, and rewrite the solution.";
  ScorePolicyGradient policy_gradient = ScorePolicyGradient::kReinforce;
  int64_t num_generations = 1;
  std::string reference_model;        // KL reference (HF dir); empty = the starting model
};

struct Config {
  std::string trainer;                // sft | dpo | scpo | grpo | score
  uint64_t seed = 42;
  std::string run_dir;                // default runs/<config file stem>
  ModelSection model;
  TokenizerSection tokenizer;
  DataSection data;
  TrainSection train;
  OptimSection optim;
  GenerationSection generation;
  std::vector<RewardSpec> rewards;
  CheckpointSection checkpoint;
  LogSection log;
  DistSection dist;
  LoraSection lora;
  SftSection sft;
  DpoSection dpo;
  ScpoSection scpo;
  GrpoSection grpo;
  ScoreSection score;
};

// Loads and validates `path`, applying `overrides` ("a.b.c=value", same checks as the file).
// Throws UserError naming the key path, the file and line, and what would be valid.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// Same, from YAML text (`source` names it in messages).
Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});
// The resolved config (every key, defaults filled in) as YAML; parse_config of it gives it back.
std::string to_yaml(const Config& config);
// All valid dotted key paths (for help and suggestions).
std::vector<std::string> config_keys();

// The `rewards:` list of a rewards file, read with the config's checks (`rewards[i].name` required,
// `weight` finite, `params` a mapping). The top level has the list; a training config's other
// sections are allowed and ignored, anything else is an error, and so is an empty list.
std::vector<RewardSpec> parse_reward_specs(const std::string& yaml_text, const std::string& source);
std::vector<RewardSpec> load_reward_specs(const std::string& path);
// A reward's params from YAML text (a mapping), for specs built in code.
std::shared_ptr<const YamlTree> parse_reward_params(const std::string& yaml_text);

}  // namespace scorch
