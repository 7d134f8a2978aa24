// Strict YAML binding (yaml_binder.h).
#include "config/yaml_binder.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "common/error.h"
#include "common/strings.h"

namespace scorch::yaml {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Shortest text that reads back as the same double ("0.5", "65536", "1e-05").
std::string number_text(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string range_text(const Spec& s) {
  if (s.hi == kInf) return (s.lo_open ? "> " : ">= ") + number_text(s.lo);
  if (s.lo == -kInf) return (s.hi_open ? "< " : "<= ") + number_text(s.hi);
  return std::string("in ") + (s.lo_open ? '(' : '[') + number_text(s.lo) + ", " + number_text(s.hi) +
         (s.hi_open ? ')' : ']');
}

bool in_range(double v, const Spec& s) {
  if (s.lo_open ? !(v > s.lo) : !(v >= s.lo)) return false;
  if (s.hi_open ? !(v < s.hi) : !(v <= s.hi)) return false;
  return true;
}

std::string kind(const YAML::Node& n) {
  if (n.IsMap()) return "mapping";
  if (n.IsSequence()) return "list";
  if (n.IsNull()) return "null";
  return "scalar";
}

std::string describe(const YAML::Node& n) {
  if (n.IsScalar()) return "'" + shorten(n.Scalar()) + "'";
  return "a " + kind(n);
}

void check_range(const Origin& o, const YAML::Node& n, const std::string& key, double v, const Spec& spec) {
  if (!in_range(v, spec)) o.fail(n, key, "`" + key + "` must be " + range_text(spec) + ", got " + shorten(n.Scalar()));
}

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

// YAML -> the JSON a template sees: true/false, null, integers and numbers keep their types,
// everything else is a string.
nlohmann::ordered_json yaml_to_json(const YAML::Node& n) {
  if (n.IsNull()) return nullptr;
  if (n.IsMap()) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    for (const auto& kv : n) j[kv.first.Scalar()] = yaml_to_json(kv.second);
    return j;
  }
  if (n.IsSequence()) {
    nlohmann::ordered_json j = nlohmann::ordered_json::array();
    for (const auto& item : n) j.push_back(yaml_to_json(item));
    return j;
  }
  const std::string s = n.Scalar();
  if (s == "true" || s == "True") return true;
  if (s == "false" || s == "False") return false;
  if (s == "null" || s == "~") return nullptr;
  try {
    size_t used = 0;
    const long long i = std::stoll(s, &used);
    if (used == s.size()) return i;
    const double d = std::stod(s, &used);
    if (used == s.size()) return d;
  } catch (const std::exception&) {
  }
  return s;
}

YAML::Node json_to_yaml(const nlohmann::ordered_json& j) {
  if (j.is_object()) {
    YAML::Node n(YAML::NodeType::Map);
    for (const auto& [k, v] : j.items()) n[k] = json_to_yaml(v);
    return n;
  }
  if (j.is_array()) {
    YAML::Node n(YAML::NodeType::Sequence);
    for (const auto& v : j) n.push_back(json_to_yaml(v));
    return n;
  }
  if (j.is_null()) return YAML::Node(YAML::NodeType::Null);
  if (j.is_boolean()) return YAML::Node(j.get<bool>() ? "true" : "false");
  if (j.is_number_integer()) return YAML::Node(j.dump());
  if (j.is_number()) return YAML::Node(format_double(j.get<double>()));
  return YAML::Node(j.get<std::string>());
}

}  // namespace

Spec range(double lo, double hi, bool lo_open, bool hi_open) {
  Spec s;
  s.lo = lo;
  s.hi = hi;
  s.lo_open = lo_open;
  s.hi_open = hi_open;
  return s;
}
Spec at_least(double lo) { return range(lo, kInf); }
Spec positive() { return range(0, kInf, true); }
Spec one_of(std::vector<std::string> choices) {
  Spec s;
  s.choices = std::move(choices);
  return s;
}
Spec scalar_or_list() {
  Spec s;
  s.scalar_is_list = true;
  return s;
}

std::string format_double(double v) {
  std::string s = number_text(v);
  // Keep it a float for YAML readers: "1" -> "1.0"; "1e-05" stays.
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

YAML::Node load(const std::string& text, const std::string& source) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw UserError("config error in " + source + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML (" + e.msg + ")");
  }
}

void check_no_duplicate_keys(const YAML::Node& node, const std::string& source) {
  check_duplicates_below(node, source, "");
}

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

// ---------------------------------------------------------------------------------------------
// Origin and typed reads

std::string Origin::where(const YAML::Node& at, const std::string& key) const {
  if (overridden_.count(key)) return source_ + " (from --set " + key + ")";
  if (at.IsDefined() && at.Mark().line >= 0) return source_ + ":" + std::to_string(at.Mark().line + 1);
  return source_;
}

void Origin::fail(const YAML::Node& at, const std::string& key, const std::string& message) const {
  throw UserError("config error in " + where(at, key) + ": " + message);
}

std::string read_string(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec) {
  std::string out;
  if (!n.IsNull()) {
    if (!n.IsScalar()) o.fail(n, key, "`" + key + "` must be a string, got a " + kind(n));
    out = n.Scalar();
  }
  if (!spec.choices.empty() && std::find(spec.choices.begin(), spec.choices.end(), out) == spec.choices.end()) {
    const std::string hint = nearest(out, spec.choices);
    o.fail(n, key, "`" + key + "` must be one of " + join_quoted(spec.choices) + ", got '" + shorten(out) + "'" +
                       (hint.empty() ? "" : " (did you mean `" + hint + "`?)"));
  }
  return out;
}

int64_t read_int(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec) {
  if (!n.IsScalar()) o.fail(n, key, "`" + key + "` must be an integer, got " + describe(n));
  const std::string s = trim(n.Scalar());
  int64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty()) {
    // Integral floats written as 1e3 / 100.0 are integers too.
    double d = 0;
    auto rd = std::from_chars(s.data(), s.data() + s.size(), d);
    if (!(rd.ec == std::errc() && rd.ptr == s.data() + s.size() && !s.empty() && std::isfinite(d) &&
          d == std::floor(d) && std::fabs(d) < 9e15)) {
      o.fail(n, key, "`" + key + "` must be an integer, got '" + shorten(n.Scalar()) + "'");
    }
    v = static_cast<int64_t>(d);
  }
  check_range(o, n, key, static_cast<double>(v), spec);
  return v;
}

double read_double(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec) {
  if (!n.IsScalar()) o.fail(n, key, "`" + key + "` must be a number, got " + describe(n));
  const std::string s = trim(n.Scalar());
  double d = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), d);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty() || !std::isfinite(d)) {
    o.fail(n, key, "`" + key + "` must be a finite number, got '" + shorten(n.Scalar()) + "'");
  }
  check_range(o, n, key, d, spec);
  return d;
}

bool read_bool(const Origin& o, const YAML::Node& n, const std::string& key) {
  const std::string s = n.IsScalar() ? n.Scalar() : "";
  if (s == "true" || s == "True" || s == "yes") return true;
  if (s == "false" || s == "False" || s == "no") return false;
  o.fail(n, key, "`" + key + "` must be true or false, got " + describe(n));
}

std::vector<std::string> read_strings(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec) {
  std::vector<std::string> out;
  if (n.IsNull()) return out;
  if (n.IsScalar() && spec.scalar_is_list) return {n.Scalar()};
  if (n.IsScalar()) {
    o.fail(n, key, "`" + key + "` must be a list of strings, got the single value " + describe(n) +
                       "; write it as a list: [" + shorten(n.Scalar()) + "]");
  }
  if (!n.IsSequence()) o.fail(n, key, "`" + key + "` must be a list of strings, got a " + kind(n));
  for (const auto& item : n) {
    if (!item.IsScalar()) o.fail(item, key, "`" + key + "` must be a list of strings; an item is a " + kind(item));
    out.push_back(item.Scalar());
  }
  return out;
}

std::vector<double> read_doubles(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec) {
  std::vector<double> out;
  if (n.IsNull()) return out;
  if (!n.IsSequence()) o.fail(n, key, "`" + key + "` must be a list of numbers, got " + describe(n));
  for (const auto& item : n) {
    const double d = read_double(o, item, key, Spec{});
    if (!in_range(d, spec)) o.fail(item, key, "every item of `" + key + "` must be " + range_text(spec) + ", got " + shorten(item.Scalar()));
    out.push_back(d);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// MapReader

MapReader::MapReader(const Origin& origin, YAML::Node map, std::string prefix)
    : origin_(&origin), map_(map), prefix_(std::move(prefix)) {}

YAML::Node MapReader::take(const std::string& key) {
  declared_.push_back(key);
  const YAML::Node& map = map_;  // const lookups: the non-const operator[] may add the key
  if (!map.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node n = map[key];
  if (!n.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
  return n;
}

void MapReader::check_unknown(const std::string& valid_keys_label, const std::string& no_keys_text) const {
  if (!map_.IsMap()) return;
  for (const auto& kv : map_) {
    const std::string k = kv.first.Scalar();
    if (std::find(declared_.begin(), declared_.end(), k) != declared_.end()) continue;
    const std::string hint = nearest(k, declared_);
    std::string msg = "unknown key `" + prefix_ + shorten(k) + "`";
    if (!hint.empty()) msg += " — did you mean `" + prefix_ + hint + "`?";
    else msg += declared_.empty() ? no_keys_text : " (" + valid_keys_label + ": " + join_quoted(declared_) + ")";
    origin_->fail(kv.first, prefix_ + k, msg);
  }
}

void MapReader::fail(const std::string& key, const std::string& message) const {
  YAML::Node at = map_;
  if (map_.IsMap() && !key.empty() && map_[key].IsDefined()) at = map_[key];
  origin_->fail(at, path(key), message);
}

// ---------------------------------------------------------------------------------------------
// Reader

Reader::Reader(YAML::Node root, Origin origin) : origin_(std::move(origin)) {
  readers_.emplace_back(origin_, root, "");
}

YAML::Node Reader::take(const std::string& key) {
  const YAML::Node n = current().take(key);
  if (n.IsDefined() && n.Mark().line >= 0) lines_[current().path(key)] = n.Mark().line + 1;
  return n;
}

void Reader::enter(const char* name) {
  // yaml-cpp's Node::operator= rebinds shared data, so nodes are only ever copy-constructed here.
  const YAML::Node node = take(name);
  const std::string prefix = current().path(name) + ".";
  if (node.IsDefined() && !node.IsNull() && !node.IsMap()) {
    origin_.fail(node, current().path(name), "section `" + std::string(name) + "` must be a mapping of keys to values");
  }
  readers_.emplace_back(origin_, node.IsDefined() && node.IsMap() ? node : YAML::Node(YAML::NodeType::Map), prefix);
}

void Reader::leave() {
  check_unknown(current());
  readers_.pop_back();
}

void Reader::finish() const { check_unknown(readers_.front()); }

void Reader::check_unknown(const MapReader& m) const {
  for (const auto& kv : m.map()) {
    const auto it = explained_.find(m.path(kv.first.Scalar()));
    const auto& declared = m.declared();
    if (it != explained_.end() && std::find(declared.begin(), declared.end(), kv.first.Scalar()) == declared.end()) {
      origin_.fail(kv.first, it->first, it->second);
    }
  }
  const std::string& p = m.prefix();
  m.check_unknown(p.empty() ? "valid keys at the top level" : "valid keys in `" + p.substr(0, p.size() - 1) + "`", "");
}

std::string Reader::where_key(const std::string& key) const {
  auto it = lines_.find(key);
  YAML::Node at(YAML::NodeType::Undefined);
  const std::string where = origin_.where(at, key);
  if (where != origin_.source() || it == lines_.end()) return where;
  return origin_.source() + ":" + std::to_string(it->second);
}

void Reader::field(const char* key, std::string& out, const Spec& spec) {
  const YAML::Node n = take(key);
  if (n.IsDefined()) out = read_string(origin_, n, current().path(key), spec);
}
void Reader::field(const char* key, int64_t& out, const Spec& spec) {
  const YAML::Node n = take(key);
  if (n.IsDefined()) out = read_int(origin_, n, current().path(key), spec);
}
void Reader::field(const char* key, uint64_t& out, const Spec& spec) {
  const YAML::Node n = take(key);
  if (n.IsDefined()) out = static_cast<uint64_t>(read_int(origin_, n, current().path(key), spec));
}
void Reader::field(const char* key, double& out, const Spec& spec) {
  const YAML::Node n = take(key);
  if (n.IsDefined()) out = read_double(origin_, n, current().path(key), spec);
}
void Reader::field(const char* key, bool& out, const Spec&) {
  const YAML::Node n = take(key);
  if (n.IsDefined()) out = read_bool(origin_, n, current().path(key));
}
void Reader::field(const char* key, std::vector<std::string>& out, const Spec& spec) {
  const YAML::Node n = take(key);
  if (n.IsDefined()) out = read_strings(origin_, n, current().path(key), spec);
}
void Reader::field(const char* key, std::vector<double>& out, const Spec& spec) {
  const YAML::Node n = take(key);
  if (n.IsDefined()) out = read_doubles(origin_, n, current().path(key), spec);
}
void Reader::field_json_object(const char* key, std::string& out) {
  const YAML::Node n = take(key);
  if (!n.IsDefined()) return;
  const std::string path = current().path(key);
  if (!n.IsNull() && !n.IsMap()) origin_.fail(n, path, "`" + path + "` must be a mapping, got " + describe(n));
  out = n.IsNull() ? "{}" : yaml_to_json(n).dump();
}

// ---------------------------------------------------------------------------------------------
// Writer

void Writer::field(const char* key, const std::string& v, const Spec&) {
  out_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << v;
}
void Writer::field(const char* key, int64_t v, const Spec&) { out_ << YAML::Key << key << YAML::Value << v; }
void Writer::field(const char* key, uint64_t v, const Spec&) { out_ << YAML::Key << key << YAML::Value << v; }
void Writer::field(const char* key, double v, const Spec&) { out_ << YAML::Key << key << YAML::Value << format_double(v); }
void Writer::field(const char* key, bool v, const Spec&) { out_ << YAML::Key << key << YAML::Value << (v ? "true" : "false"); }
void Writer::field(const char* key, const std::vector<std::string>& v, const Spec&) {
  out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& s : v) out_ << YAML::DoubleQuoted << s;
  out_ << YAML::EndSeq;
}
void Writer::field(const char* key, const std::vector<double>& v, const Spec&) {
  out_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (double d : v) out_ << format_double(d);
  out_ << YAML::EndSeq;
}
void Writer::field_json_object(const char* key, const std::string& json_text) {
  const auto j = nlohmann::ordered_json::parse(json_text.empty() ? "{}" : json_text);
  out_ << YAML::Key << key << YAML::Value;
  if (j.is_object() && !j.empty()) out_ << json_to_yaml(j);
  else out_ << YAML::Flow << YAML::BeginMap << YAML::EndMap;
}

}  // namespace scorch::yaml
