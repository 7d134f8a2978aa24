// Strict YAML binding, shared by the job config (config.cpp) and reward params (rewards/reward.cpp):
// typed reads whose errors name the key path, the file and line (or the --set that gave the value)
// and, for a long value, a shortened copy of it; keys nobody declared refused with the nearest valid
// one suggested; duplicate keys refused; and the writer of the resolved YAML.
//
// Internal to config/ and rewards/: this header includes yaml-cpp, config.h does not.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "config/options.h"

namespace scorch {

// A YAML subtree kept as written, line numbers included, for a reader that binds it later (a
// reward's params; config.h holds it opaquely).
struct YamlTree {
  YAML::Node node;
};

namespace yaml {

// Constraints of one value. Ranges are closed unless the *_open flag says otherwise.
struct Spec {
  double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
  bool lo_open = false, hi_open = false;
  std::vector<std::string> choices;  // for strings: the valid values (empty = any)
  bool scalar_is_list = false;  // a list key that also takes one bare value (PEFT's target_modules: all-linear)
};
Spec range(double lo, double hi, bool lo_open = false, bool hi_open = false);
Spec at_least(double lo);
Spec positive();
Spec one_of(std::vector<std::string> choices);
Spec scalar_or_list();

// Shortest text that reads back as the same double, kept a float for YAML readers ("1.0", "1e-05").
std::string format_double(double v);

// Parses YAML text; a syntax error is a UserError "config error in SOURCE:LINE: not valid YAML (...)".
YAML::Node load(const std::string& text, const std::string& source);

// Throws UserError "config error in SOURCE:LINE: duplicate key `a.b` (first at line N) ..." for the
// first mapping (at any depth, lists included) that holds a key twice. yaml-cpp keeps both of two
// equal keys and lookups return the first, so `learning_rate` written twice would silently train
// with the first value.
void check_no_duplicate_keys(const YAML::Node& node, const std::string& source);

// Applies "a.b.c=value" (--set) to the tree; the value is parsed as YAML. Returns the key path.
std::string apply_override(YAML::Node& root, const std::string& assignment);

// Where values come from: the file, and the keys a --set gave (messages name those instead of a line).
class Origin {
 public:
  explicit Origin(std::string source, std::set<std::string> overridden = {})
      : source_(std::move(source)), overridden_(std::move(overridden)) {}
  const std::string& source() const { return source_; }
  // "SOURCE:LINE" of `at`, "SOURCE (from --set KEY)" for an overridden key, else "SOURCE".
  std::string where(const YAML::Node& at, const std::string& key) const;
  // UserError "config error in WHERE: MESSAGE".
  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& message) const;

 private:
  std::string source_;
  std::set<std::string> overridden_;
};

// Typed reads of one defined node; `key` is the full path that messages name.
std::string read_string(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec);
int64_t read_int(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec);
double read_double(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec);
bool read_bool(const Origin& o, const YAML::Node& n, const std::string& key);
std::vector<std::string> read_strings(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec);
std::vector<double> read_doubles(const Origin& o, const YAML::Node& n, const std::string& key, const Spec& spec);
template <class E>
E read_option(const Origin& o, const YAML::Node& n, const std::string& key) {
  E value{};
  if (n.IsScalar() && parse_option(n.Scalar(), value)) return value;
  read_string(o, n, key, one_of(option_name_list<E>()));  // throws: not a string, or not a valid name
  return value;
}

// One mapping read strictly: every key a reader takes is declared; check_unknown() refuses the rest.
class MapReader {
 public:
  // `prefix` precedes each key in messages ("grpo." or "rewards[0].params."); a null or undefined
  // `map` reads as empty.
  MapReader(const Origin& origin, YAML::Node map, std::string prefix);
  // The node of `key`, or an undefined node; declares `key` valid either way.
  YAML::Node take(const std::string& key);
  const std::string& prefix() const { return prefix_; }
  std::string path(const std::string& key) const { return prefix_ + key; }
  const std::vector<std::string>& declared() const { return declared_; }
  const YAML::Node& map() const { return map_; }
  // Throws UserError for the first key no take() declared: "unknown key `P.k` — did you mean `P.h`?",
  // else "(VALID_KEYS_LABEL: `a`, `b`)", or NO_KEYS_TEXT when nothing was declared.
  void check_unknown(const std::string& valid_keys_label, const std::string& no_keys_text) const;
  // UserError at `key`'s line when the mapping has it, else at the mapping's.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  const Origin* origin_;
  YAML::Node map_;
  std::string prefix_;
  std::vector<std::string> declared_;
};

// A visitor of a schema (config.cpp's visit()) that reads a whole document: nested sections, typed
// fields, enum options by name; null clears a string or a list. Records each key's line.
class Reader {
 public:
  Reader(YAML::Node root, Origin origin);
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;
  // An unknown `key_path` is refused with `message` instead of a suggestion (a key that looks valid
  // but never was).
  void explain_unknown(const std::string& key_path, const std::string& message) { explained_[key_path] = message; }

  template <class F>
  void section(const char* name, F body) {
    enter(name);
    body();
    leave();
  }
  void field(const char* key, std::string& out, const Spec& spec);
  void field(const char* key, int64_t& out, const Spec& spec);
  void field(const char* key, uint64_t& out, const Spec& spec);
  void field(const char* key, double& out, const Spec& spec);
  void field(const char* key, bool& out, const Spec& spec);
  void field(const char* key, std::vector<std::string>& out, const Spec& spec);
  void field(const char* key, std::vector<double>& out, const Spec& spec);
  // A mapping kept as JSON text (tokenizer.chat_template_kwargs): true/false, null, integers and
  // numbers keep their types, everything else is a string; its user checks the values.
  void field_json_object(const char* key, std::string& out);
  template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
  void field(const char* key, E& out, const Spec&) {
    const YAML::Node n = take(key);
    if (n.IsDefined()) out = read_option<E>(origin_, n, current().path(key));
  }

  // The node of `key` in the current section (declared valid, its line recorded), or undefined.
  YAML::Node take(const std::string& key);
  // Refuses the top level's undeclared keys (sections check theirs when they end).
  void finish() const;
  const Origin& origin() const { return origin_; }
  // Where a key's value was written ("SOURCE:LINE", "SOURCE (from --set KEY)" or "SOURCE").
  std::string where_key(const std::string& key) const;

 private:
  void enter(const char* name);
  void leave();
  void check_unknown(const MapReader& m) const;
  MapReader& current() { return readers_.back(); }

  Origin origin_;
  std::vector<MapReader> readers_;
  std::map<std::string, int> lines_;
  std::map<std::string, std::string> explained_;
};

// The matching writer: each field as YAML, strings double-quoted, lists in flow style.
class Writer {
 public:
  explicit Writer(YAML::Emitter& out) : out_(out) {}
  template <class F>
  void section(const char* name, F body) {
    out_ << YAML::Key << name << YAML::Value << YAML::BeginMap;
    body();
    out_ << YAML::EndMap;
  }
  void field(const char* key, const std::string& v, const Spec&);
  void field(const char* key, int64_t v, const Spec&);
  void field(const char* key, uint64_t v, const Spec&);
  void field(const char* key, double v, const Spec&);
  void field(const char* key, bool v, const Spec&);
  void field(const char* key, const std::vector<std::string>& v, const Spec&);
  void field(const char* key, const std::vector<double>& v, const Spec&);
  void field_json_object(const char* key, const std::string& json_text);
  template <class E, std::enable_if_t<std::is_enum_v<E>, int> = 0>
  void field(const char* key, E v, const Spec& spec) {
    field(key, std::string(option_name(v)), spec);
  }
  YAML::Emitter& emitter() { return out_; }

 private:
  YAML::Emitter& out_;
};

// The matching lister of dotted key paths.
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
  void field_json_object(const char* key, std::string&) { keys.push_back(prefix_ + key); }

 private:
  std::string prefix_;
};

}  // namespace yaml
}  // namespace scorch
