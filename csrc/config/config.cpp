// The config schema (every key, its constraint, the order the resolved YAML prints them), the
// `rewards:` list and the cross-key checks. One visitor walks the schema for three jobs: reading
// (yaml::Reader), writing the resolved YAML (yaml::Writer) and listing the valid keys.
#include "config/config.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "config/yaml_binder.h"

namespace scorch {
namespace {

using yaml::at_least;
using yaml::format_double;
using yaml::one_of;
using yaml::positive;
using yaml::range;
using yaml::scalar_or_list;
using yaml::Spec;

// The schema: every key of every section, in the order the resolved YAML prints them. Enum options
// take their valid names from options.h.
template <class V>
void visit(Config& c, V& v) {
  v.field("trainer", c.trainer, one_of({"sft", "dpo", "scpo", "grpo", "score"}));
  v.field("seed", c.seed, at_least(0));
  v.field("run_dir", c.run_dir, Spec{});
  v.section("model", [&] {
    auto& s = c.model;
    v.field("path", s.path, Spec{});
    v.field("dtype", s.dtype, one_of({"auto", "float32", "bfloat16"}));
    v.field("device", s.device, one_of({"auto", "cpu", "cuda"}));
    v.field("gradient_checkpointing", s.gradient_checkpointing, Spec{});
    v.field("fused_training_ops", s.fused_training_ops, Spec{});
  });
  v.section("tokenizer", [&] {
    auto& s = c.tokenizer;
    v.field("path", s.path, Spec{});
    v.field("chat_template", s.chat_template, one_of({"auto", "chatml", "llama-2", "plain", "none"}));
    v.field("parse_special", s.parse_special, Spec{});
    v.field_json_object("chat_template_kwargs", s.chat_template_kwargs);
    v.field("tiktoken_pattern", s.tiktoken_pattern, Spec{});
  });
  v.section("data", [&] {
    auto& s = c.data;
    v.field("train", s.train, Spec{});
    v.field("eval", s.eval, Spec{});
    v.field("max_length", s.max_length, range(2, 1 << 20));
    v.field("truncation", s.truncation, one_of({"right", "left", "error"}));
    v.field("packing", s.packing, Spec{});
    v.field("shuffle", s.shuffle, Spec{});
    v.field("skip_malformed", s.skip_malformed, Spec{});
    v.field("eval_limit", s.eval_limit, at_least(0));
  });
  v.section("train", [&] {
    auto& s = c.train;
    v.field("max_steps", s.max_steps, at_least(0));
    v.field("epochs", s.epochs, range(1, 1 << 20));
    v.field("micro_batch_size", s.micro_batch_size, range(1, 1 << 16));
    v.field("gradient_accumulation_steps", s.gradient_accumulation_steps, range(1, 1 << 16));
    v.field("max_grad_norm", s.max_grad_norm, at_least(0));
    v.field("eval_every", s.eval_every, at_least(0));
    v.field("eval_samples", s.eval_samples, range(0, 1024));
    v.field("max_nonfinite_steps", s.max_nonfinite_steps, at_least(1));
    v.field("threads", s.threads, range(0, 1024));
  });
  v.section("optim", [&] {
    auto& s = c.optim;
    v.field("name", s.name, one_of({"adamw"}));
    v.field("learning_rate", s.learning_rate, range(0, 1, true));
    v.field("weight_decay", s.weight_decay, range(0, 1));
    v.field("adam_beta1", s.adam_beta1, range(0, 1, false, true));
    v.field("adam_beta2", s.adam_beta2, range(0, 1, false, true));
    v.field("adam_epsilon", s.adam_epsilon, range(0, 1, true));
    v.field("lr_scheduler_type", s.lr_scheduler_type, one_of({"constant", "linear", "cosine"}));
    v.field("warmup_steps", s.warmup_steps, at_least(0));
    v.field("warmup_ratio", s.warmup_ratio, range(0, 1));
    v.field("min_lr_ratio", s.min_lr_ratio, range(0, 1));
    v.field("decay_norms_and_biases", s.decay_norms_and_biases, Spec{});
  });
  v.section("generation", [&] {
    auto& s = c.generation;
    v.field("temperature", s.temperature, range(0, 100));
    v.field("top_p", s.top_p, range(0, 1, true));
    v.field("top_k", s.top_k, at_least(0));
    v.field("max_prompt_length", s.max_prompt_length, range(1, 1 << 20));
    v.field("max_completion_length", s.max_completion_length, range(1, 1 << 20));
    v.field("stop", s.stop, Spec{});
    v.field("eval_max_new_tokens", s.eval_max_new_tokens, range(1, 1 << 20));
    v.field("decode_steps", s.decode_steps, Spec{});
    v.field("fused_decode_attention", s.fused_decode_attention, Spec{});
    v.field("lookahead", s.lookahead, Spec{});
  });
  v.rewards(c.rewards);
  v.section("checkpoint", [&] {
    auto& s = c.checkpoint;
    v.field("save_every", s.save_every, at_least(0));
    v.field("keep_last", s.keep_last, at_least(1));
    v.field("resume_from", s.resume_from, Spec{});
    v.field("export_final", s.export_final, Spec{});
  });
  v.section("log", [&] {
    auto& s = c.log;
    v.field("level", s.level, one_of({"debug", "info", "warn", "error", "off"}));
    v.field("every", s.every, at_least(1));
    v.field("samples", s.samples, at_least(0));
    v.field("progress", s.progress, Spec{});
  });
  v.section("dist", [&] {
    auto& s = c.dist;
    v.field("backend", s.backend, one_of({"auto", "nccl", "gloo"}));
    v.field("timeout_s", s.timeout_s, positive());
    v.field("bucket_mb", s.bucket_mb, at_least(1));
    v.field("zero1", s.zero1, Spec{});
  });
  v.section("lora", [&] {
    auto& s = c.lora;
    v.field("enabled", s.enabled, Spec{});
    v.field("r", s.r, at_least(1));
    v.field("lora_alpha", s.lora_alpha, positive());
    v.field("lora_dropout", s.lora_dropout, range(0, 1, false, true));
    v.field("target_modules", s.target_modules, scalar_or_list());  // names checked against the model (model/lora.h)
    v.field("use_rslora", s.use_rslora, Spec{});
    v.field("init_lora_weights", s.init_lora_weights, one_of({"kaiming", "gaussian"}));
  });
  v.section("sft", [&] { v.field("completion_only_loss", c.sft.completion_only_loss, Spec{}); });
  v.section("dpo", [&] {
    auto& s = c.dpo;
    v.field("beta", s.beta, positive());
    v.field("loss_type", s.loss_type, Spec{});  // one name or a comma list: checked in validate()
    v.field("loss_weights", s.loss_weights, at_least(0));
    v.field("label_smoothing", s.label_smoothing, range(0, 0.5, false, true));
    v.field("rpo_alpha", s.rpo_alpha, at_least(0));
    v.field("reference", s.reference, one_of({"live", "precompute"}));
  });
  v.section("scpo", [&] {
    auto& s = c.scpo;
    v.field("num_samples", s.num_samples, range(2, 1 << 14));
    v.field("pairs", s.pairs, Spec{});
    v.field("threshold", s.threshold, range(0, 1));
    v.field("rounds", s.rounds, at_least(1));
    v.field("round_thresholds", s.round_thresholds, range(0, 1));
    v.field("beta", s.beta, positive());
    v.field("alpha", s.alpha, at_least(0));
    v.field("temperature", s.temperature, range(0, 100));
    v.field("top_p", s.top_p, range(0, 1, true));
  });
  v.section("grpo", [&] {
    auto& s = c.grpo;
    v.field("num_generations", s.num_generations, range(2, 1 << 14));
    v.field("beta", s.beta, at_least(0));
    v.field("epsilon", s.epsilon, range(0, 1, true));
    v.field("epsilon_high", s.epsilon_high, range(0, 10));
    v.field("delta", s.delta, at_least(0));
    v.field("loss_type", s.loss_type, Spec{});
    v.field("scale_rewards", s.scale_rewards, Spec{});
    v.field("advantage", s.advantage, Spec{});
    v.field("num_iterations", s.num_iterations, at_least(1));
    v.field("importance_sampling_level", s.importance_sampling_level, Spec{});
    v.field("mask_truncated_completions", s.mask_truncated_completions, Spec{});
    v.field("top_entropy_quantile", s.top_entropy_quantile, range(0, 1, true));
    v.field("entropy_coef", s.entropy_coef, at_least(0));
  });
  v.section("score", [&] {
    auto& s = c.score;
    v.field("stage", s.stage, Spec{});
    v.field("stage1_steps", s.stage1_steps, at_least(0));
    v.field("stage2_steps", s.stage2_steps, at_least(0));
    v.field("alpha", s.alpha, at_least(0));
    v.field("beta1", s.beta1, at_least(0));
    v.field("beta2", s.beta2, at_least(0));
    v.field("num_attempts", s.num_attempts, range(2, 16));
    v.field("correction_instruction", s.correction_instruction, Spec{});
    v.field("policy_gradient", s.policy_gradient, Spec{});
    v.field("num_generations", s.num_generations, range(1, 1 << 14));
    v.field("reference_model", s.reference_model, Spec{});
  });
}

// ---------------------------------------------------------------------------------------------
// The `rewards:` list: one reader for a job config and a rewards file.

const std::vector<std::string> kRewardEntryKeys = {"name", "weight", "params"};

std::vector<RewardSpec> read_reward_list(const yaml::Origin& o, const YAML::Node& n) {
  std::vector<RewardSpec> out;
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsSequence()) o.fail(n, "rewards", "`rewards` must be a list of {name, weight, params} entries, got a " +
                                                std::string(n.IsMap() ? "mapping" : "scalar"));
  size_t index = 0;
  for (const auto& item : n) {
    const std::string p = "rewards[" + std::to_string(index++) + "]";
    if (!item.IsMap()) o.fail(item, p, "`" + p + "` must be a mapping with keys `name`, `weight`, `params`");
    RewardSpec spec;
    spec.line = item.Mark().line + 1;
    spec.source = o.source();
    if (const YAML::Node name = item["name"]; name.IsDefined()) {
      if (!name.IsScalar()) o.fail(name, p + ".name", "`" + p + ".name` must be a string");
      spec.name = name.Scalar();
    }
    if (const YAML::Node weight = item["weight"]; weight.IsDefined()) {
      spec.weight = yaml::read_double(o, weight, p + ".weight", Spec{});
    }
    if (const YAML::Node params = item["params"]; params.IsDefined()) {
      if (!params.IsNull() && !params.IsMap()) o.fail(params, p + ".params", "`" + p + ".params` must be a mapping");
      spec.params = std::make_shared<const YamlTree>(YamlTree{params});
    }
    for (const auto& kv : item) {
      const std::string k = kv.first.Scalar();
      if (std::find(kRewardEntryKeys.begin(), kRewardEntryKeys.end(), k) != kRewardEntryKeys.end()) continue;
      const std::string hint = nearest(k, kRewardEntryKeys);
      o.fail(kv.first, p + "." + k, "unknown key `" + p + "." + shorten(k) + "`" + (hint.empty() ? "" : " — did you mean `" + p + "." + hint + "`?") +
                                        " (a reward entry has " + join_quoted(kRewardEntryKeys) + ")");
    }
    if (spec.name.empty()) o.fail(item, p, "`" + p + "` has no `name` (the reward to use, e.g. math_answer)");
    out.push_back(std::move(spec));
  }
  return out;
}

// The schema's reader, writer and key lister, each with the `rewards:` list.
class ConfigReader : public yaml::Reader {
 public:
  using yaml::Reader::Reader;
  void rewards(std::vector<RewardSpec>& out) {
    const YAML::Node n = take("rewards");
    if (n.IsDefined() && !n.IsNull()) out = read_reward_list(origin(), n);
  }
};

class ConfigWriter : public yaml::Writer {
 public:
  using yaml::Writer::Writer;
  void rewards(const std::vector<RewardSpec>& r) {
    YAML::Emitter& out = emitter();
    out << YAML::Key << "rewards" << YAML::Value << YAML::BeginSeq;
    for (const auto& spec : r) {
      out << YAML::BeginMap << YAML::Key << "name" << YAML::Value << spec.name << YAML::Key << "weight" << YAML::Value
          << format_double(spec.weight);
      if (spec.params && spec.params->node.IsMap() && spec.params->node.size() > 0) {
        out << YAML::Key << "params" << YAML::Value << spec.params->node;
      }
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
};

class ConfigKeyLister : public yaml::KeyLister {
 public:
  void rewards(std::vector<RewardSpec>&) { keys.push_back("rewards"); }
};

void fail_at(const yaml::Reader& r, const std::string& key, const std::string& msg) {
  throw UserError("config error in " + r.where_key(key) + ": " + msg);
}

// Cross-key rules that a single key's range cannot express.
void validate(const Config& c, const yaml::Reader& r) {
  if (c.trainer.empty()) {
    fail_at(r, "trainer", "missing required key `trainer` (one of `sft`, `dpo`, `scpo`, `grpo`, `score`)");
  }
  if (c.model.path.empty()) {
    fail_at(r, "model.path", "missing required key `model.path` (a HuggingFace model directory, e.g. runs/quickstart/base)");
  }
  if (c.data.train.empty()) {
    fail_at(r, "data.train", "missing required key `data.train` (the training JSONL file)");
  }
  if (c.grpo.epsilon_high != 0.0 && c.grpo.epsilon_high < c.grpo.epsilon) {
    fail_at(r, "grpo.epsilon_high", "`grpo.epsilon_high` (" + format_double(c.grpo.epsilon_high) +
                                        ") must be >= `grpo.epsilon` (" + format_double(c.grpo.epsilon) + "), or 0 to use epsilon");
  }
  for (const std::string& name : split(c.dpo.loss_type, ',')) {
    const std::vector<std::string> dpo_losses = {"sigmoid", "ipo", "hinge", "robust", "sft"};
    if (std::find(dpo_losses.begin(), dpo_losses.end(), trim(name)) == dpo_losses.end()) {
      fail_at(r, "dpo.loss_type", "`dpo.loss_type` names unknown loss '" + trim(name) + "': use " + join_quoted(dpo_losses) +
                                      " or a comma list of them (e.g. sigmoid,sft)");
    }
  }
  if (!c.dpo.loss_weights.empty()) {
    const size_t n = split(c.dpo.loss_type, ',').size();
    if (c.dpo.loss_weights.size() != n) {
      fail_at(r, "dpo.loss_weights", "`dpo.loss_weights` has " + std::to_string(c.dpo.loss_weights.size()) +
                                         " entries but `dpo.loss_type` names " + std::to_string(n) + " loss(es)");
    }
  }
  if (c.optim.warmup_steps > 0 && c.optim.warmup_ratio > 0) {
    fail_at(r, "optim.warmup_ratio", "set either `optim.warmup_steps` or `optim.warmup_ratio`, not both");
  }
  if (c.generation.top_k < 0) fail_at(r, "generation.top_k", "`generation.top_k` must be >= 0");
  // Gold pairs have no vote to threshold. A threshold at its default is accepted (the resolved
  // config writes every key, and it must parse again); any other value would be silently ignored.
  if (c.scpo.pairs == ScpoPairs::kGold) {
    const ScpoSection defaults;
    if (c.scpo.threshold != defaults.threshold) {
      fail_at(r, "scpo.threshold", "`scpo.threshold` is the vote threshold and `scpo.pairs: gold` has no vote: "
                                   "remove `scpo.threshold`, or use `scpo.pairs: vote`");
    }
    if (!c.scpo.round_thresholds.empty()) {
      fail_at(r, "scpo.round_thresholds", "`scpo.round_thresholds` are vote thresholds and `scpo.pairs: gold` has no vote: "
                                          "remove `scpo.round_thresholds`, or use `scpo.pairs: vote`");
    }
  }
  if (c.train.eval_samples == 1) {
    fail_at(r, "train.eval_samples", "`train.eval_samples` 1 is greedy evaluation already: use 0, or K >= 2 samples");
  }
  if (c.train.eval_samples > 1 && c.generation.temperature <= 0) {
    fail_at(r, "train.eval_samples", "sampled evaluation needs `generation.temperature` > 0 (it samples at that temperature)");
  }
}

}  // namespace

Config parse_config(const std::string& text, const std::string& source, const std::vector<std::string>& overrides) {
  const YAML::Node loaded = yaml::load(text, source);
  YAML::Node root = (loaded.IsNull() || !loaded.IsDefined()) ? YAML::Node(YAML::NodeType::Map) : loaded;
  if (!root.IsMap()) throw UserError("config error in " + source + ": the top level must be a mapping of sections (model:, data:, ...)");
  yaml::check_no_duplicate_keys(root, source);
  std::set<std::string> overridden;
  for (const auto& o : overrides) overridden.insert(yaml::apply_override(root, o));
  Config config;
  ConfigReader reader(root, yaml::Origin(source, overridden));
  reader.explain_unknown("train.precision",
                         "`train.precision` is not a setting (it was never read): the training precision is `model.dtype` — "
                         "`bfloat16` trains bf16 weights and activations with fp32 AdamW moments and fp32 master weights, "
                         "`float32` trains in fp32, `auto` picks bfloat16 on CUDA and float32 on the CPU; remove "
                         "`train.precision` and set `model.dtype`");
  visit(config, reader);
  reader.finish();
  validate(config, reader);
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string text = fs::read_file(path, "config file");
  return parse_config(text, path, overrides);
}

std::string to_yaml(const Config& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  ConfigWriter w(out);
  visit(const_cast<Config&>(config), w);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> config_keys() {
  Config c;
  ConfigKeyLister l;
  visit(c, l);
  return l.keys;
}

std::vector<RewardSpec> parse_reward_specs(const std::string& text, const std::string& source) {
  const YAML::Node root = yaml::load(text, source);
  if (!root.IsMap()) throw UserError("config error in " + source + ": the top level must be a mapping with a `rewards:` list");
  yaml::check_no_duplicate_keys(root, source);
  // A training config may be passed as is: its other sections are ignored here.
  const yaml::Origin origin(source);
  yaml::MapReader top(origin, root, "");
  for (const auto& k : config_keys()) top.take(k.substr(0, k.find('.')));
  const YAML::Node list = top.take("rewards");
  for (const auto& kv : root) {
    const std::string k = kv.first.Scalar();
    if (k == "rewards" || std::find(top.declared().begin(), top.declared().end(), k) != top.declared().end()) continue;
    const std::string hint = nearest(k, {"rewards"});
    origin.fail(kv.first, k, "unknown key `" + shorten(k) + "`" + (hint.empty() ? "" : " — did you mean `" + hint + "`?") +
                                 " (a rewards config has a top-level `rewards:` list)");
  }
  if (!list.IsDefined() || list.IsNull()) {
    throw UserError("config error in " + source + ": no `rewards:` list (e.g. rewards: [{name: math_answer, weight: 1.0}])");
  }
  auto specs = read_reward_list(origin, list);
  if (specs.empty()) throw UserError("config error in " + source + ": `rewards` is empty");
  return specs;
}

std::vector<RewardSpec> load_reward_specs(const std::string& path) {
  return parse_reward_specs(fs::read_file(path, "rewards config"), path);
}

std::shared_ptr<const YamlTree> parse_reward_params(const std::string& text) {
  return std::make_shared<const YamlTree>(YamlTree{yaml::load(text, "reward params")});
}

}  // namespace scorch
