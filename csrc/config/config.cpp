// Config schema and strict YAML binding. One visitor walks the schema for three jobs: reading
// (with type/range/choice checks and unknown-key suggestions), writing the resolved YAML, and
// listing the valid keys.
#include "config/config.h"
#include "config/yaml_checks.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

namespace scorch {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Constraints of one key. Ranges are closed unless the *_open flag says otherwise.
struct Spec {
  double lo = -kInf, hi = kInf;
  bool lo_open = false, hi_open = false;
  std::vector<std::string> choices;
  bool scalar_is_list = false;  // a list key that also takes one bare value (PEFT's target_modules: all-linear)
};
Spec range(double lo, double hi, bool lo_open = false, bool hi_open = false) {
  Spec s;
  s.lo = lo;
  s.hi = hi;
  s.lo_open = lo_open;
  s.hi_open = hi_open;
  return s;
}
Spec at_least(double lo) { return range(lo, kInf); }
Spec scalar_or_list() {
  Spec s;
  s.scalar_is_list = true;
  return s;
}
Spec positive() { return range(0, kInf, true); }
Spec one_of(std::vector<std::string> c) {
  Spec s;
  s.choices = std::move(c);
  return s;
}

std::string range_text(const Spec& s) {
  std::ostringstream o;
  if (s.hi == kInf) {
    o << (s.lo_open ? "> " : ">= ") << s.lo;
  } else if (s.lo == -kInf) {
    o << (s.hi_open ? "< " : "<= ") << s.hi;
  } else {
    o << "in " << (s.lo_open ? '(' : '[') << s.lo << ", " << s.hi << (s.hi_open ? ')' : ']');
  }
  return o.str();
}

bool in_range(double v, const Spec& s) {
  if (s.lo_open ? !(v > s.lo) : !(v >= s.lo)) return false;
  if (s.hi_open ? !(v < s.hi) : !(v <= s.hi)) return false;
  return true;
}

std::string format_double(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, r.ptr);
  // Keep it a float for YAML readers: "1" -> "1.0"; "1e-05" stays.
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

// The schema: every key of every section, in the order the resolved YAML prints them.
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
  });
  v.section("tokenizer", [&] {
    auto& s = c.tokenizer;
    v.field("path", s.path, Spec{});
    v.field("chat_template", s.chat_template, one_of({"auto", "chatml", "llama-2", "plain", "none"}));
    v.field("parse_special", s.parse_special, Spec{});
    v.field("chat_template_kwargs", s.chat_template_kwargs, Spec{});
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
    v.field("decode_steps", s.decode_steps, one_of({"auto", "dynamic", "static", "cuda_graph"}));
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
    v.field("loss_type", s.loss_type, one_of({"grpo", "bnpo", "dr_grpo", "dapo"}));
    v.field("scale_rewards", s.scale_rewards, one_of({"group", "batch", "none"}));
    v.field("advantage", s.advantage, one_of({"grpo", "rloo", "reinforce_pp"}));
    v.field("num_iterations", s.num_iterations, at_least(1));
    v.field("importance_sampling_level", s.importance_sampling_level, one_of({"token", "sequence"}));
    v.field("mask_truncated_completions", s.mask_truncated_completions, Spec{});
    v.field("top_entropy_quantile", s.top_entropy_quantile, range(0, 1, true));
    v.field("entropy_coef", s.entropy_coef, at_least(0));
  });
  v.section("score", [&] {
    auto& s = c.score;
    v.field("stage", s.stage, one_of({"1", "2", "both"}));
    v.field("stage1_steps", s.stage1_steps, at_least(0));
    v.field("stage2_steps", s.stage2_steps, at_least(0));
    v.field("alpha", s.alpha, at_least(0));
    v.field("beta1", s.beta1, at_least(0));
    v.field("beta2", s.beta2, at_least(0));
    v.field("num_attempts", s.num_attempts, range(2, 16));
    v.field("correction_instruction", s.correction_instruction, Spec{});
    v.field("policy_gradient", s.policy_gradient, one_of({"reinforce", "group"}));
    v.field("num_generations", s.num_generations, range(1, 1 << 14));
    v.field("reference_model", s.reference_model, Spec{});
  });
}

// ---------------------------------------------------------------------------------------------
// Reading

void check_duplicates_below(const YAML::Node& node, const std::string& source, const std::string& prefix) {
  if (node.IsSequence()) {
    size_t i = 0;
    for (const auto& item : node) check_duplicates_below(item, source, prefix + "[" + std::to_string(i++) + "]");
    return;
  }
  if (!node.IsMap()) return;
  std::map<std::string, int> first_line;
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    const std::string full = prefix.empty() ? key : prefix + "." + key;
    const int line = kv.first.Mark().line + 1;
    auto [it, inserted] = first_line.emplace(key, line);
    if (!inserted) {
      throw UserError("config error in " + source + ":" + std::to_string(line) + ": duplicate key `" + shorten(full) +
                      "` (first at line " + std::to_string(it->second) +
                      "); YAML keeps only one of them, so remove or merge the other");
    }
    check_duplicates_below(kv.second, source, full);
  }
}

}  // namespace

void check_no_duplicate_keys(const YAML::Node& node, const std::string& source) {
  check_duplicates_below(node, source, "");
}

namespace {

class Reader {
 public:
  Reader(YAML::Node root, std::string source, std::set<std::string> overridden)
      : source_(std::move(source)), overridden_(std::move(overridden)) {
    maps_.push_back(root);
  }

  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& msg) const {
    throw UserError("config error in " + where(at, key) + ": " + msg);
  }
  std::string where(const YAML::Node& at, const std::string& key) const {
    if (overridden_.count(key)) return source_ + " (from --set " + key + ")";
    if (at.IsDefined() && at.Mark().line >= 0) return source_ + ":" + std::to_string(at.Mark().line + 1);
    return source_;
  }
  int line_of(const std::string& key) const {
    auto it = lines_.find(key);
    return it == lines_.end() ? 0 : it->second;
  }
  std::string where_key(const std::string& key) const {
    if (overridden_.count(key)) return source_ + " (from --set " + key + ")";
    const int line = line_of(key);
    return line > 0 ? source_ + ":" + std::to_string(line) : source_;
  }

  template <class F>
  void section(const char* name, F body) {
    // yaml-cpp's Node::operator= rebinds shared data, so nodes are only ever copy-constructed here.
    declared_.push_back(name);
    std::vector<std::string> saved_declared;
    saved_declared.swap(declared_);
    const std::string saved_prefix = prefix_;
    const YAML::Node node = map()[name];
    prefix_ = prefix_ + name + ".";
    if (node.IsDefined() && !node.IsNull() && !node.IsMap()) {
      fail(node, path(""), "section `" + std::string(name) + "` must be a mapping of keys to values");
    }
    if (node.IsDefined() && node.IsMap()) maps_.push_back(node);
    else maps_.push_back(YAML::Node(YAML::NodeType::Map));
    body();
    check_unknown();
    prefix_ = saved_prefix;
    maps_.pop_back();
    declared_.swap(saved_declared);
  }

  void field(const char* key, std::string& out, const Spec& spec) {
    YAML::Node n = take(key);
    if (!n) return;
    if (n.IsNull()) {
      out.clear();
    } else if (!n.IsScalar()) {
      fail(n, path(key), "`" + path(key) + "` must be a string, got a " + kind(n));
    } else {
      out = n.Scalar();
    }
    if (!spec.choices.empty() && std::find(spec.choices.begin(), spec.choices.end(), out) == spec.choices.end()) {
      std::string hint = nearest(out, spec.choices);
      fail(n, path(key), "`" + path(key) + "` must be one of " + join_quoted(spec.choices) + ", got '" + shorten(out) + "'" +
                             (hint.empty() ? "" : " (did you mean `" + hint + "`?)"));
    }
  }
  void field(const char* key, int64_t& out, const Spec& spec) {
    YAML::Node n = take(key);
    if (!n) return;
    out = parse_int(n, path(key));
    check_range(n, key, static_cast<double>(out), spec);
  }
  void field(const char* key, uint64_t& out, const Spec& spec) {
    int64_t v = 0;
    const YAML::Node n = map()[key];
    field(key, v, spec);
    if (n.IsDefined()) out = static_cast<uint64_t>(v);
  }
  void field(const char* key, double& out, const Spec& spec) {
    YAML::Node n = take(key);
    if (!n) return;
    out = parse_double(n, path(key));
    check_range(n, key, out, spec);
  }
  void field(const char* key, bool& out, const Spec&) {
    YAML::Node n = take(key);
    if (!n) return;
    const std::string s = n.IsScalar() ? n.Scalar() : "";
    if (s == "true" || s == "True" || s == "yes") out = true;
    else if (s == "false" || s == "False" || s == "no") out = false;
    else fail(n, path(key), "`" + path(key) + "` must be true or false, got " + describe(n));
  }
  void field(const char* key, std::vector<std::string>& out, const Spec& spec) {
    YAML::Node n = take(key);
    if (!n) return;
    out.clear();
    if (n.IsNull()) return;
    if (n.IsScalar() && spec.scalar_is_list) {
      out.push_back(n.Scalar());
      return;
    }
    if (n.IsScalar()) {
      fail(n, path(key), "`" + path(key) + "` must be a list of strings, got the single value " + describe(n) +
                             "; write it as a list: [" + shorten(n.Scalar()) + "]");
    }
    if (!n.IsSequence()) fail(n, path(key), "`" + path(key) + "` must be a list of strings, got a " + kind(n));
    for (const auto& item : n) {
      if (!item.IsScalar()) fail(item, path(key), "`" + path(key) + "` must be a list of strings; an item is a " + kind(item));
      out.push_back(item.Scalar());
    }
  }
  // A mapping kept as YAML (tokenizer.chat_template_kwargs); its values are checked by its user.
  void field(const char* key, YAML::Node& out, const Spec&) {
    YAML::Node n = take(key);
    if (!n) return;
    if (!n.IsNull() && !n.IsMap()) fail(n, path(key), "`" + path(key) + "` must be a mapping, got " + describe(n));
    out = YAML::Clone(n);
  }
  void field(const char* key, std::vector<double>& out, const Spec& spec) {
    YAML::Node n = take(key);
    if (!n) return;
    out.clear();
    if (n.IsNull()) return;
    if (!n.IsSequence()) fail(n, path(key), "`" + path(key) + "` must be a list of numbers, got " + describe(n));
    for (const auto& item : n) {
      const double d = parse_double(item, path(key));
      if (!in_range(d, spec)) fail(item, path(key), "every item of `" + path(key) + "` must be " + range_text(spec) + ", got " + shorten(item.Scalar()));
      out.push_back(d);
    }
  }

  void rewards(std::vector<RewardSpec>& out) {
    declared_.push_back("rewards");
    const YAML::Node n = map()["rewards"];
    if (!n.IsDefined() || n.IsNull()) return;
    record("rewards", n);
    if (!n.IsSequence()) fail(n, "rewards", "`rewards` must be a list of {name, weight, params} entries, got a " + kind(n));
    out.clear();
    size_t index = 0;
    for (const auto& item : n) {
      const std::string p = "rewards[" + std::to_string(index++) + "]";
      if (!item.IsMap()) fail(item, p, "`" + p + "` must be a mapping with keys `name`, `weight`, `params`");
      RewardSpec spec;
      spec.line = item.Mark().line + 1;
      spec.source = source_;
      for (const auto& kv : item) {
        const std::string k = kv.first.Scalar();
        if (k == "name") {
          if (!kv.second.IsScalar()) fail(kv.second, p + ".name", "`" + p + ".name` must be a string");
          spec.name = kv.second.Scalar();
        } else if (k == "weight") {
          spec.weight = parse_double(kv.second, p + ".weight");
          if (!std::isfinite(spec.weight)) fail(kv.second, p + ".weight", "`" + p + ".weight` must be finite");
        } else if (k == "params") {
          if (!kv.second.IsNull() && !kv.second.IsMap()) fail(kv.second, p + ".params", "`" + p + ".params` must be a mapping");
          spec.params = kv.second;
        } else {
          std::string hint = nearest(k, {"name", "weight", "params"});
          fail(kv.first, p + "." + k, "unknown key `" + p + "." + k + "`" + (hint.empty() ? "" : " — did you mean `" + hint + "`?") +
                                          " (a reward entry has `name`, `weight`, `params`)");
        }
      }
      if (spec.name.empty()) fail(item, p, "`" + p + "` has no `name` (the reward to use, e.g. math_answer)");
      out.push_back(std::move(spec));
    }
  }

  void check_unknown() const {
    for (const auto& kv : map()) {
      const std::string k = kv.first.Scalar();
      if (std::find(declared_.begin(), declared_.end(), k) != declared_.end()) continue;
      if (prefix_ + k == "train.precision") {
        fail(kv.first, "train.precision",
             "`train.precision` is not a setting (it was never read): the training precision is `model.dtype` — "
             "`bfloat16` trains bf16 weights and activations with fp32 AdamW moments and fp32 master weights, "
             "`float32` trains in fp32, `auto` picks bfloat16 on CUDA and float32 on the CPU; remove "
             "`train.precision` and set `model.dtype`");
      }
      const std::string hint = nearest(k, declared_);
      std::string msg = "unknown key `" + prefix_ + shorten(k) + "`";
      if (!hint.empty()) msg += " — did you mean `" + prefix_ + hint + "`?";
      else msg += " (valid keys" + (prefix_.empty() ? std::string(" at the top level") : " in `" + prefix_.substr(0, prefix_.size() - 1) + "`") + ": " + join_quoted(declared_) + ")";
      fail(kv.first, prefix_ + k, msg);
    }
  }

  const std::map<std::string, int>& lines() const { return lines_; }

 private:
  std::string path(const char* key) const { return prefix_ + key; }

  // The node for `key` in the current section, or an undefined node; records the key as valid.
  YAML::Node take(const char* key) {
    declared_.push_back(key);
    const YAML::Node n = map()[key];
    if (!n.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    record(path(key), n);
    return n;
  }
  void record(const std::string& key, const YAML::Node& n) {
    if (n.Mark().line >= 0) lines_[key] = n.Mark().line + 1;
  }

  static std::string kind(const YAML::Node& n) {
    if (n.IsMap()) return "mapping";
    if (n.IsSequence()) return "list";
    if (n.IsNull()) return "null";
    return "scalar";
  }
  static std::string describe(const YAML::Node& n) {
    if (n.IsScalar()) return "'" + shorten(n.Scalar()) + "'";
    return "a " + kind(n);
  }

  int64_t parse_int(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, key, "`" + key + "` must be an integer, got " + describe(n));
    const std::string s = trim(n.Scalar());
    int64_t v = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), v);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty()) {
      // Allow integral floats written as 1e3 / 100.0.
      double d = 0;
      auto rd = std::from_chars(s.data(), s.data() + s.size(), d);
      if (rd.ec == std::errc() && rd.ptr == s.data() + s.size() && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) {
        return static_cast<int64_t>(d);
      }
      fail(n, key, "`" + key + "` must be an integer, got '" + shorten(n.Scalar()) + "'");
    }
    return v;
  }
  double parse_double(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(n, key, "`" + key + "` must be a number, got " + describe(n));
    const std::string s = trim(n.Scalar());
    double d = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), d);
    if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty() || !std::isfinite(d)) {
      fail(n, key, "`" + key + "` must be a finite number, got '" + shorten(n.Scalar()) + "'");
    }
    return d;
  }
  void check_range(const YAML::Node& n, const char* key, double v, const Spec& spec) const {
    if (!in_range(v, spec)) {
      std::ostringstream o;
      o << "`" << path(key) << "` must be " << range_text(spec) << ", got " << shorten(n.Scalar());
      fail(n, path(key), o.str());
    }
  }

  std::string source_;
  std::set<std::string> overridden_;
  const YAML::Node& map() const { return maps_.back(); }
  std::vector<YAML::Node> maps_;
  std::string prefix_;
  std::vector<std::string> declared_;
  std::map<std::string, int> lines_;
};

// ---------------------------------------------------------------------------------------------
// Writing

class Writer {
 public:
  explicit Writer(YAML::Emitter& out) : out_(out) {}
  template <class F>
  void section(const char* name, F body) {
    out_ << YAML::Key << name << YAML::Value << YAML::BeginMap;
    body();
    out_ << YAML::EndMap;
  }
  void field(const char* key, const std::string& v, const Spec&) {
    out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << v;
  }
  void field(const char* key, int64_t v, const Spec&) { out_ << YAML::Key << key << YAML::Value << v; }
  void field(const char* key, uint64_t v, const Spec&) { out_ << YAML::Key << key << YAML::Value << v; }
  void field(const char* key, double v, const Spec&) { out_ << YAML::Key << key << YAML::Value << format_double(v); }
  void field(const char* key, bool v, const Spec&) { out_ << YAML::Key << key << YAML::Value << (v ? "true" : "false"); }
  void field(const char* key, const std::vector<std::string>& v, const Spec&) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& s : v) out_ << YAML::DoubleQuoted << s;
    out_ << YAML::EndSeq;
  }
  void field(const char* key, const YAML::Node& v, const Spec&) {
    out_ << YAML::Key << key << YAML::Value;
    if (v.IsDefined() && v.IsMap() && v.size() > 0) out_ << v;
    else out_ << YAML::Flow << YAML::BeginMap << YAML::EndMap;
  }
  void field(const char* key, const std::vector<double>& v, const Spec&) {
    out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (double d : v) out_ << format_double(d);
    out_ << YAML::EndSeq;
  }
  void rewards(const std::vector<RewardSpec>& r) {
    out_ << YAML::Key << "rewards" << YAML::Value << YAML::BeginSeq;
    for (const auto& spec : r) {
      out_ << YAML::BeginMap << YAML::Key << "name" << YAML::Value << spec.name << YAML::Key << "weight"
           << YAML::Value << format_double(spec.weight);
      if (spec.params.IsDefined() && spec.params.IsMap() && spec.params.size() > 0) {
        out_ << YAML::Key << "params" << YAML::Value << spec.params;
      }
      out_ << YAML::EndMap;
    }
    out_ << YAML::EndSeq;
  }

 private:
  YAML::Emitter& out_;
};

class KeyLister {
 public:
  std::vector<std::string> keys;
  template <class F>
  void section(const char* name, F body) {
    const std::string saved = prefix_;
    prefix_ += std::string(name) + ".";
    body();
    prefix_ = saved;
  }
  template <class T>
  void field(const char* key, T&, const Spec&) { keys.push_back(prefix_ + key); }
  void rewards(std::vector<RewardSpec>&) { keys.push_back("rewards"); }

 private:
  std::string prefix_;
};

// Applies "a.b.c=value" to the YAML tree; the value is parsed as YAML (numbers, lists, strings).
std::string apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw UserError("bad --set '" + assignment + "': expected key.path=value, e.g. --set optim.learning_rate=1e-5");
  }
  const std::string key = trim(assignment.substr(0, eq));
  const std::string value = assignment.substr(eq + 1);
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw UserError("bad --set '" + assignment + "': the value is not valid YAML (" + e.msg + ")");
  }
  const auto parts = split(key, '.');
  // Copy-construct only: yaml-cpp's Node::operator= would rebind shared data.
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const YAML::Node existing = chain.back()[parts[i]];
    if (!existing.IsDefined() || existing.IsNull()) {
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
    } else if (!existing.IsMap()) {
      throw UserError("bad --set '" + assignment + "': `" + parts[i] + "` is not a section");
    }
    chain.push_back(chain.back()[parts[i]]);
  }
  chain.back()[parts.back()] = parsed;
  return key;
}

void fail_at(const Reader& r, const std::string& key, const std::string& msg) {
  throw UserError("config error in " + r.where_key(key) + ": " + msg);
}

// Cross-key rules that a single key's range cannot express.
void validate(const Config& c, const Reader& r) {
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
  if (c.train.eval_samples == 1) {
    fail_at(r, "train.eval_samples", "`train.eval_samples` 1 is greedy evaluation already: use 0, or K >= 2 samples");
  }
  if (c.train.eval_samples > 1 && c.generation.temperature <= 0) {
    fail_at(r, "train.eval_samples", "sampled evaluation needs `generation.temperature` > 0 (it samples at that temperature)");
  }
}

}  // namespace

Config parse_config(const std::string& text, const std::string& source, const std::vector<std::string>& overrides) {
  YAML::Node loaded;
  try {
    loaded = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw UserError("config error in " + source + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML (" + e.msg + ")");
  }
  YAML::Node root = (loaded.IsNull() || !loaded.IsDefined()) ? YAML::Node(YAML::NodeType::Map) : loaded;
  if (!root.IsMap()) throw UserError("config error in " + source + ": the top level must be a mapping of sections (model:, data:, ...)");
  check_no_duplicate_keys(root, source);
  std::set<std::string> overridden;
  for (const auto& o : overrides) overridden.insert(apply_override(root, o));
  Config config;
  Reader reader(root, source, overridden);
  visit(config, reader);
  reader.check_unknown();
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
  Writer w(out);
  visit(const_cast<Config&>(config), w);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> config_keys() {
  Config c;
  KeyLister l;
  visit(c, l);
  return l.keys;
}

}  // namespace scorch
