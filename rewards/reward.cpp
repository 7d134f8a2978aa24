// Reward plumbing: strict params reading, the name registry, the weighted RewardSet and the
// `rewards:` list parser shared with `scorch reward`. The rewards themselves live in their own files.
#include "rewards/reward.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <mutex>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "config/yaml_checks.h"
#include "rewards/builtin.h"

namespace scorch::rewards {
namespace {

std::string where(const std::string& source, const YAML::Node& at) {
  if (at.IsDefined() && at.Mark().line >= 0) return source + ":" + std::to_string(at.Mark().line + 1);
  return source;
}

// Shortest text that reads back as the same double ("0.5", "1234567", "1e-05").
std::string number_text(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

bool parse_number(const std::string& text, double& out) {
  const std::string s = trim(text);
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(out);
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

Params::Params(const YAML::Node& params, std::string key_prefix, std::string source)
    : node_(params), prefix_(std::move(key_prefix)), source_(std::move(source)) {}

void Params::fail(const std::string& key, const std::string& message) const {
  YAML::Node at = node_;
  if (node_.IsMap() && !key.empty() && node_[key].IsDefined()) at = node_[key];
  throw UserError("config error in " + where(source_, at) + ": " + message);
}

YAML::Node Params::find(const std::string& key) {
  declared_.push_back(key);
  if (!node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node n = node_[key];
  if (!n.IsDefined() || n.IsNull()) return YAML::Node(YAML::NodeType::Undefined);
  return n;
}

double Params::number(const std::string& key, double def, double lo, double hi, const std::string& help) {
  schema_.push_back(key + " (number, default " + number_text(def) + ")" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return def;
  double v = 0;
  if (!n.IsScalar() || !parse_number(n.Scalar(), v)) fail(key, "`" + path(key) + "` must be a finite number");
  if (v < lo || v > hi) {
    fail(key, "`" + path(key) + "` must be in [" + number_text(lo) + ", " + number_text(hi) + "], got " + shorten(n.Scalar()));
  }
  return v;
}

int64_t Params::integer(const std::string& key, int64_t def, int64_t lo, int64_t hi, const std::string& help) {
  schema_.push_back(key + " (integer, default " + std::to_string(def) + ")" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return def;
  double v = 0;
  if (!n.IsScalar() || !parse_number(n.Scalar(), v) || v != std::floor(v) || std::fabs(v) > 9e15) {
    fail(key, "`" + path(key) + "` must be an integer, got '" + (n.IsScalar() ? shorten(n.Scalar()) : "a non-scalar") + "'");
  }
  const auto i = static_cast<int64_t>(v);
  if (i < lo || i > hi) {
    fail(key, "`" + path(key) + "` must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + shorten(n.Scalar()));
  }
  return i;
}

bool Params::flag(const std::string& key, bool def, const std::string& help) {
  schema_.push_back(key + " (bool, default " + (def ? "true" : "false") + ")" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return def;
  const std::string s = n.IsScalar() ? n.Scalar() : "";
  if (s == "true" || s == "True" || s == "yes") return true;
  if (s == "false" || s == "False" || s == "no") return false;
  fail(key, "`" + path(key) + "` must be true or false, got '" + shorten(s) + "'");
}

std::string Params::text(const std::string& key, const std::string& def, const std::vector<std::string>& choices,
                         const std::string& help) {
  schema_.push_back(key + " (string, default '" + def + "'" + (choices.empty() ? "" : ", one of " + join_quoted(choices)) +
                    ")" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return def;
  if (!n.IsScalar()) fail(key, "`" + path(key) + "` must be a string");
  const std::string v = n.Scalar();
  if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end()) {
    const std::string hint = nearest(v, choices);
    fail(key, "`" + path(key) + "` must be one of " + join_quoted(choices) + ", got '" + shorten(v) + "'" +
                  (hint.empty() ? "" : " (did you mean `" + hint + "`?)"));
  }
  return v;
}

std::vector<std::string> Params::texts(const std::string& key, const std::vector<std::string>& def,
                                       const std::string& help) {
  schema_.push_back(key + " (list of strings)" + (help.empty() ? "" : ": " + help));
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return def;
  if (n.IsScalar()) {
    fail(key, "`" + path(key) + "` must be a list of strings, got the single value '" + shorten(n.Scalar()) +
                  "'; write it as a list: [" + shorten(n.Scalar()) + "]");
  }
  if (!n.IsSequence()) fail(key, "`" + path(key) + "` must be a list of strings");
  std::vector<std::string> out;
  for (const auto& item : n) {
    if (!item.IsScalar()) fail(key, "every item of `" + path(key) + "` must be a string");
    out.push_back(item.Scalar());
  }
  return out;
}

void Params::finish() const {
  if (!node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string k = kv.first.Scalar();
    if (std::find(declared_.begin(), declared_.end(), k) != declared_.end()) continue;
    const std::string hint = nearest(k, declared_);
    std::string msg = "unknown key `" + path(k) + "`";
    if (!hint.empty()) msg += " — did you mean `" + path(hint) + "`?";
    else msg += declared_.empty() ? " (this reward takes no params)" : " (valid keys: " + join_quoted(declared_) + ")";
    throw UserError("config error in " + where(source_, kv.first) + ": " + msg);
  }
}

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
  Params p(YAML::Node(), "params", "schema");
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

// ---------------------------------------------------------------------------------------------
// `rewards:` lists

std::vector<RewardSpec> parse_reward_specs(const YAML::Node& list, const std::string& source) {
  auto fail = [&](const YAML::Node& at, const std::string& msg) -> void {
    throw UserError("config error in " + where(source, at) + ": " + msg);
  };
  std::vector<RewardSpec> out;
  if (!list.IsDefined() || list.IsNull()) return out;
  if (!list.IsSequence()) fail(list, "`rewards` must be a list of {name, weight, params} entries");
  size_t index = 0;
  for (const auto& item : list) {
    const std::string p = "rewards[" + std::to_string(index++) + "]";
    if (!item.IsMap()) fail(item, "`" + p + "` must be a mapping with keys `name`, `weight`, `params`");
    RewardSpec spec;
    spec.line = item.Mark().line + 1;
    spec.source = source;
    for (const auto& kv : item) {
      const std::string k = kv.first.Scalar();
      if (k == "name") {
        if (!kv.second.IsScalar()) fail(kv.second, "`" + p + ".name` must be a string");
        spec.name = kv.second.Scalar();
      } else if (k == "weight") {
        if (!kv.second.IsScalar() || !parse_number(kv.second.Scalar(), spec.weight)) {
          fail(kv.second, "`" + p + ".weight` must be a finite number");
        }
      } else if (k == "params") {
        if (!kv.second.IsNull() && !kv.second.IsMap()) fail(kv.second, "`" + p + ".params` must be a mapping");
        spec.params = kv.second;
      } else {
        const std::string hint = nearest(k, {"name", "weight", "params"});
        fail(kv.first, "unknown key `" + p + "." + k + "`" + (hint.empty() ? "" : " — did you mean `" + p + "." + hint + "`?") +
                           " (a reward entry has `name`, `weight`, `params`)");
      }
    }
    if (spec.name.empty()) fail(item, "`" + p + "` has no `name` (the reward to use, e.g. math_answer)");
    out.push_back(std::move(spec));
  }
  return out;
}

std::vector<RewardSpec> load_reward_specs(const std::string& path) {
  const std::string text = fs::read_file(path, "rewards config");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw UserError("config error in " + path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  }
  if (!root.IsMap()) throw UserError("config error in " + path + ": the top level must be a mapping with a `rewards:` list");
  check_no_duplicate_keys(root, path);
  // A training config may be passed as is: its other sections are ignored here.
  std::vector<std::string> allowed = {"rewards"};
  for (const auto& k : config_keys()) allowed.push_back(k.substr(0, k.find('.')));
  for (const auto& kv : root) {
    const std::string k = kv.first.Scalar();
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    const std::string hint = nearest(k, {"rewards"});
    throw UserError("config error in " + where(path, kv.first) + ": unknown key `" + k + "`" +
                    (hint.empty() ? "" : " — did you mean `" + hint + "`?") +
                    " (a rewards config has a top-level `rewards:` list)");
  }
  if (!root["rewards"].IsDefined() || root["rewards"].IsNull()) {
    throw UserError("config error in " + path + ": no `rewards:` list (e.g. rewards: [{name: math_answer, weight: 1.0}])");
  }
  auto specs = parse_reward_specs(root["rewards"], path);
  if (specs.empty()) throw UserError("config error in " + path + ": `rewards` is empty");
  return specs;
}

}  // namespace scorch::rewards
