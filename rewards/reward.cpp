// Reward plumbing: strict params reading (on the config's binder), the name registry and the
// weighted RewardSet. The rewards themselves live in their own files.
#include "rewards/reward.h"

#include <charconv>
#include <cmath>
#include <mutex>

#include "common/error.h"
#include "common/strings.h"
#include "config/yaml_binder.h"
#include "rewards/builtin.h"

namespace scorch::rewards {
namespace {

// Shortest text that reads back as the same double ("0.5", "1234567", "1e-05").
std::string number_text(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// RewardBatch

void RewardBatch::index_groups() {
  int64_t max_group = -1;
  for (const auto& s : samples) {
    if (s.group < 0) throw std::invalid_argument("RewardSample::group must be >= 0");
    max_group = std::max(max_group, s.group);
  }
  groups.assign(static_cast<size_t>(max_group + 1), {});
  for (size_t i = 0; i < samples.size(); ++i) groups[static_cast<size_t>(samples[i].group)].push_back(i);
}

std::string RewardBatch::gold(size_t i) const {
  const auto& f = samples[i].fields;
  if (!f.is_object()) return "";
  auto it = f.find("answer");
  if (it == f.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  if (it->is_number()) return number_text(it->get<double>());
  return it->dump();
}

// ---------------------------------------------------------------------------------------------
// Params

struct Params::Binding {
  Binding(std::shared_ptr<const YamlTree> tree, std::string prefix, std::string source)
      : tree(std::move(tree)), origin(std::move(source)),
        reader(origin, this->tree ? this->tree->node : YAML::Node(), std::move(prefix)) {}
  // The value of `key`, or an undefined node when absent or null (null = the default).
  YAML::Node take(const std::string& key) {
    const YAML::Node n = reader.take(key);
    return n.IsDefined() && !n.IsNull() ? n : YAML::Node(YAML::NodeType::Undefined);
  }
  std::shared_ptr<const YamlTree> tree;
  yaml::Origin origin;
  yaml::MapReader reader;
};

Params::Params(std::shared_ptr<const YamlTree> params, std::string key_prefix, std::string source)
    : binding_(std::make_unique<Binding>(std::move(params), std::move(key_prefix) + ".", std::move(source))) {}

Params::~Params() = default;

void Params::fail(const std::string& key, const std::string& message) const { binding_->reader.fail(key, message); }

double Params::number(const std::string& key, double def, double lo, double hi, const std::string& help) {
  schema_.push_back(key + " (number, default " + number_text(def) + ")" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = binding_->take(key);
  if (!n.IsDefined()) return def;
  return yaml::read_double(binding_->origin, n, binding_->reader.path(key), yaml::range(lo, hi));
}

int64_t Params::integer(const std::string& key, int64_t def, int64_t lo, int64_t hi, const std::string& help) {
  schema_.push_back(key + " (integer, default " + std::to_string(def) + ")" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = binding_->take(key);
  if (!n.IsDefined()) return def;
  return yaml::read_int(binding_->origin, n, binding_->reader.path(key),
                        yaml::range(static_cast<double>(lo), static_cast<double>(hi)));
}

bool Params::flag(const std::string& key, bool def, const std::string& help) {
  schema_.push_back(key + " (bool, default " + (def ? "true" : "false") + ")" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = binding_->take(key);
  if (!n.IsDefined()) return def;
  return yaml::read_bool(binding_->origin, n, binding_->reader.path(key));
}

std::string Params::text(const std::string& key, const std::string& def, const std::vector<std::string>& choices,
                         const std::string& help) {
  schema_.push_back(key + " (string, default '" + def + "'" + (choices.empty() ? "" : ", one of " + join_quoted(choices)) +
                    ")" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = binding_->take(key);
  if (!n.IsDefined()) return def;
  return yaml::read_string(binding_->origin, n, binding_->reader.path(key),
                           choices.empty() ? yaml::Spec{} : yaml::one_of(choices));
}

std::vector<std::string> Params::texts(const std::string& key, const std::vector<std::string>& def,
                                       const std::string& help) {
  schema_.push_back(key + " (list of strings)" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = binding_->take(key);
  if (!n.IsDefined()) return def;
  return yaml::read_strings(binding_->origin, n, binding_->reader.path(key), yaml::Spec{});
}

void Params::finish() const { binding_->reader.check_unknown("valid keys", " (this reward takes no params)"); }

// ---------------------------------------------------------------------------------------------
// Registry

namespace {
std::map<std::string, RewardInfo>& mutable_registry() {
  static std::map<std::string, RewardInfo> registry;
  return registry;
}
std::recursive_mutex& registry_mutex() {
  static std::recursive_mutex m;
  return m;
}
}  // namespace

void register_reward(const std::string& name, RewardInfo info) {
  std::lock_guard<std::recursive_mutex> lock(registry_mutex());
  mutable_registry()[name] = std::move(info);
}

const std::map<std::string, RewardInfo>& reward_registry() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_math_rewards();
    register_format_rewards();
    register_consistency_rewards();
    register_judge_rewards();
  });
  return mutable_registry();
}

std::vector<std::string> reward_params_schema(const std::string& name) {
  const auto& reg = reward_registry();
  auto it = reg.find(name);
  if (it == reg.end()) throw UserError("unknown reward '" + name + "'");
  Params p(nullptr, "params", "schema");
  try {
    it->second.make(p, RewardContext{});
  } catch (const UserError&) {
    // Null params: a reward that needs a judge or a required param refuses after reading them all.
  }
  return p.schema();
}

// ---------------------------------------------------------------------------------------------
// RewardSet

namespace {
// The file a spec was declared in, else the caller's name for its source.
const std::string& origin(const RewardSpec& spec, const std::string& fallback) {
  return spec.source.empty() ? fallback : spec.source;
}

// The registry entry of specs[i], or a UserError naming `rewards[i].name` with a suggestion.
const RewardInfo& lookup(const RewardSpec& spec, size_t i, const std::string& fallback_source) {
  const std::string& source = origin(spec, fallback_source);
  const auto& reg = reward_registry();
  auto it = reg.find(spec.name);
  if (it != reg.end()) return it->second;
  std::vector<std::string> known;
  for (const auto& kv : reg) known.push_back(kv.first);
  const std::string hint = nearest(spec.name, known);
  const std::string at = source + (spec.line > 0 ? ":" + std::to_string(spec.line) : "");
  throw UserError("config error in " + at + ": unknown reward `" + spec.name + "` in `rewards[" + std::to_string(i) +
                  "].name`" + (hint.empty() ? "" : " — did you mean `" + hint + "`?") + " (available: " + join_quoted(known) + ")");
}
}  // namespace

void validate_reward_specs(const std::vector<RewardSpec>& specs, const std::string& source) {
  for (size_t i = 0; i < specs.size(); ++i) {
    const RewardInfo& info = lookup(specs[i], i, source);
    Params params(specs[i].params, "rewards[" + std::to_string(i) + "].params", origin(specs[i], source));
    try {
      info.make(params, RewardContext{});
    } catch (const JudgeMissing&) {
      // Self-judging rewards read all their params before asking for the judge.
    }
    params.finish();
  }
}

RewardSet::RewardSet(const std::vector<RewardSpec>& specs, const RewardContext& context, const std::string& source) {
  std::map<std::string, int> seen;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    const std::string key = "rewards[" + std::to_string(i) + "]";
    const std::string at = origin(spec, source) + (spec.line > 0 ? ":" + std::to_string(spec.line) : "");
    const RewardInfo& info = lookup(spec, i, source);
    if (info.needs_judge && !context.judge) {
      throw UserError("config error in " + at + ": reward `" + spec.name + "` (`" + key +
                      "`) judges completions with a model, and none is available: " + spec.name +
                      " needs --model DIR (scorch reward) or a trainer that provides the policy as judge");
    }
    Params params(spec.params, key + ".params", origin(spec, source));
    auto reward = info.make(params, context);
    params.finish();
    const int n = seen[spec.name]++;
    names_.push_back(n == 0 ? spec.name : spec.name + "_" + std::to_string(n + 1));
    weights_.push_back(spec.weight);
    rewards_.push_back(std::move(reward));
  }
}

RewardSetOutput RewardSet::score(const RewardBatch& batch) {
  const size_t n = batch.samples.size();
  RewardSetOutput out;
  out.names = names_;
  out.total.assign(n, 0.0);
  out.advantage_offsets.assign(n, 0.0);
  for (size_t k = 0; k < rewards_.size(); ++k) {
    RewardOutput r = rewards_[k]->score(batch);
    if (r.values.size() != n) {
      throw std::logic_error("reward " + names_[k] + " returned " + std::to_string(r.values.size()) +
                             " values for " + std::to_string(n) + " samples");
    }
    if (weights_[k] != 0.0) {
      for (size_t i = 0; i < n; ++i) out.total[i] += weights_[k] * r.values[i];  // NaN propagates
    }
    if (weights_[k] != 0.0 && !r.advantage_offsets.empty()) {
      if (r.advantage_offsets.size() != n) throw std::logic_error("reward " + names_[k] + " returned bad offsets");
      for (size_t i = 0; i < n; ++i) out.advantage_offsets[i] += r.advantage_offsets[i];
    }
    const FiniteStats s = finite_stats(r.values);
    const std::string p = "rewards/" + names_[k] + "/";
    out.metrics[p + "mean"] = s.mean;
    out.metrics[p + "std"] = s.std;
    out.metrics[p + "nan_count"] = static_cast<double>(s.nan_count);
    for (const auto& d : r.diagnostics) out.metrics[p + d.first] = d.second;
    out.components.push_back(std::move(r.values));
  }
  const FiniteStats t = finite_stats(out.total);
  out.metrics["reward"] = t.mean;
  out.metrics["reward_nan_count"] = static_cast<double>(t.nan_count);
  return out;
}

FiniteStats finite_stats(const std::vector<double>& values) {
  FiniteStats s;
  double sum = 0, sum2 = 0;
  for (double v : values) {
    if (std::isnan(v)) {
      ++s.nan_count;
      continue;
    }
    ++s.count;
    sum += v;
  }
  if (s.count == 0) return s;
  s.mean = sum / static_cast<double>(s.count);
  for (double v : values)
    if (!std::isnan(v)) sum2 += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sum2 / static_cast<double>(s.count));
  return s;
}

}  // namespace scorch::rewards
