// Rule-based rewards on the completion's form (ALGORITHMS.md §8, DAPO):
//
// `format`: pass (1.0) if every configured check holds, else fail (0.0). Checks:
//   patterns ([])        ECMAScript regexes that must each match somewhere in the completion
//   boxed_count (-1)     exact number of \boxed{}/\fbox{} required (-1 = no check; 1 = "exactly one")
//   tags ([])            each <tag>...</tag> appears exactly once, opening before closing,
//   tag_order (true)     and the tags appear in the listed order (e.g. [think, answer])
//   regex_max_chars (16384)  longer completions are not regex-checked: NaN, counted as `too_long`
//   Diagnostics: pass_rate, fail_patterns, fail_boxed, fail_tags (counts).
// `overlong`: DAPO's soft overlong punishment, in completion tokens:
//   0 if L <= max_length − cache; (max_length − cache − L) / cache if within the last `cache`
//   tokens (a linear ramp from 0 to −1); −1 beyond max_length. Params: max_length (required),
//   cache (default max_length / 4), unit (tokens | chars). Offline samples without token ids
//   are NaN (counted as `no_token_ids`) unless unit is chars.
// `exact_match`: 1 if the completion equals the gold `answer` after `normalize`
//   (none | whitespace (default: trim and collapse runs of whitespace) | math (normalize_answer)),
//   else 0; NaN without a gold answer.
#include <cmath>
#include <limits>
#include <regex>

#include "common/error.h"
#include "common/strings.h"
#include "rewards/builtin.h"

namespace scorch::rewards {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

size_t count_boxes(const std::string& s) {
  size_t count = 0;
  for (const char* cmd : {"\\boxed", "\\fbox"}) {
    const std::string c = cmd;
    for (size_t p = s.find(c); p != std::string::npos; p = s.find(c, p + c.size())) {
      const size_t end = p + c.size();
      if (end < s.size() && std::isalpha(static_cast<unsigned char>(s[end]))) continue;
      ++count;
    }
  }
  return count;
}

size_t count_occurrences(const std::string& s, const std::string& needle) {
  size_t count = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + needle.size())) ++count;
  return count;
}

class Format : public Reward {
 public:
  explicit Format(Params& p) {
    const auto patterns = p.texts("patterns", {}, "regexes (ECMAScript) that must each match");
    boxed_count_ = p.integer("boxed_count", -1, -1, 1000, "required number of \\boxed{} (-1 = any)");
    tags_ = p.texts("tags", {}, "each <tag>...</tag> exactly once");
    tag_order_ = p.flag("tag_order", true, "tags appear in the listed order");
    pass_ = p.number("pass", 1.0, -1e6, 1e6, "reward when every check holds");
    fail_ = p.number("fail", 0.0, -1e6, 1e6, "reward otherwise");
    regex_max_chars_ = static_cast<size_t>(p.integer("regex_max_chars", 16384, 1, 1 << 24,
                                                     "longer completions are not regex-checked (NaN)"));
    for (const auto& pat : patterns) {
      try {
        regexes_.emplace_back(pat, std::regex::ECMAScript | std::regex::optimize);
      } catch (const std::regex_error& e) {
        p.fail("patterns", "`patterns` item '" + pat + "' is not a valid regex: " + e.what());
      }
    }
    if (regexes_.empty() && boxed_count_ < 0 && tags_.empty()) {
      p.fail("", "reward `format` needs at least one check: `patterns`, `boxed_count` or `tags`");
    }
  }

  RewardOutput score(const RewardBatch& batch) override {
    RewardOutput out;
    out.values.assign(batch.samples.size(), kNaN);
    size_t passed = 0, scored = 0, fail_patterns = 0, fail_boxed = 0, fail_tags = 0, too_long = 0;
    for (size_t i = 0; i < batch.samples.size(); ++i) {
      const std::string& c = batch.samples[i].completion;
      if (!regexes_.empty() && c.size() > regex_max_chars_) {
        ++too_long;
        continue;
      }
      bool ok = true;
      for (const auto& re : regexes_) {
        if (!std::regex_search(c, re)) {
          ok = false;
          ++fail_patterns;
          break;
        }
      }
      if (boxed_count_ >= 0 && count_boxes(c) != static_cast<size_t>(boxed_count_)) {
        ok = false;
        ++fail_boxed;
      }
      if (!tags_.empty() && !tags_ok(c)) {
        ok = false;
        ++fail_tags;
      }
      out.values[i] = ok ? pass_ : fail_;
      ++scored;
      passed += ok;
    }
    out.diagnostics["pass_rate"] = scored ? static_cast<double>(passed) / static_cast<double>(scored) : kNaN;
    out.diagnostics["fail_patterns"] = static_cast<double>(fail_patterns);
    out.diagnostics["fail_boxed"] = static_cast<double>(fail_boxed);
    out.diagnostics["fail_tags"] = static_cast<double>(fail_tags);
    out.diagnostics["too_long"] = static_cast<double>(too_long);
    return out;
  }

 private:
  bool tags_ok(const std::string& c) const {
    size_t previous_close = 0;
    for (const auto& tag : tags_) {
      const std::string open = "<" + tag + ">", close = "</" + tag + ">";
      if (count_occurrences(c, open) != 1 || count_occurrences(c, close) != 1) return false;
      const size_t po = c.find(open), pc = c.find(close);
      if (pc < po + open.size()) return false;
      if (tag_order_ && po < previous_close) return false;
      previous_close = pc + close.size();
    }
    return true;
  }

  std::vector<std::regex> regexes_;
  int64_t boxed_count_ = -1;
  std::vector<std::string> tags_;
  bool tag_order_ = true;
  double pass_ = 1, fail_ = 0;
  size_t regex_max_chars_ = 16384;
};

class Overlong : public Reward {
 public:
  explicit Overlong(Params& p) {
    max_length_ = p.integer("max_length", 0, 0, int64_t{1} << 30, "length limit (usually max_completion_length); required");
    cache_ = p.integer("cache", -1, -1, int64_t{1} << 30, "soft-penalty window before max_length (-1 = max_length / 4)");
    chars_ = p.text("unit", "tokens", {"tokens", "chars"}, "count completion tokens or characters") == "chars";
    if (max_length_ <= 0) p.fail("max_length", "reward `overlong` needs `max_length` > 0 (e.g. the generation max_completion_length)");
    if (cache_ < 0) cache_ = max_length_ / 4;
    if (cache_ > max_length_) p.fail("cache", "`cache` (" + std::to_string(cache_) + ") must be <= max_length (" + std::to_string(max_length_) + ")");
  }

  // DAPO eq. (13): the soft overlong punishment of a completion of `length` units.
  double penalty(int64_t length) const {
    if (length > max_length_) return -1.0;
    const int64_t free = max_length_ - cache_;
    if (length <= free) return 0.0;
    return static_cast<double>(free - length) / static_cast<double>(cache_);
  }

  RewardOutput score(const RewardBatch& batch) override {
    RewardOutput out;
    out.values.assign(batch.samples.size(), kNaN);
    size_t penalized = 0, over = 0, no_ids = 0;
    for (size_t i = 0; i < batch.samples.size(); ++i) {
      const auto& s = batch.samples[i];
      int64_t length = 0;
      if (chars_) {
        length = static_cast<int64_t>(s.completion.size());
      } else {
        if (s.completion_ids.empty() && !s.completion.empty()) {
          ++no_ids;
          continue;
        }
        length = static_cast<int64_t>(s.completion_ids.size());
      }
      out.values[i] = penalty(length);
      penalized += out.values[i] < 0;
      over += length > max_length_;
    }
    out.diagnostics["penalized"] = static_cast<double>(penalized);
    out.diagnostics["over_max"] = static_cast<double>(over);
    out.diagnostics["no_token_ids"] = static_cast<double>(no_ids);
    return out;
  }

 private:
  int64_t max_length_ = 0, cache_ = 0;
  bool chars_ = false;
};

std::string collapse_whitespace(const std::string& s) {
  std::string out;
  bool pending = false;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      pending = !out.empty();
      continue;
    }
    if (pending) out += ' ';
    pending = false;
    out += c;
  }
  return out;
}

class ExactMatch : public Reward {
 public:
  explicit ExactMatch(Params& p) {
    mode_ = p.text("normalize", "whitespace", {"none", "whitespace", "math"}, "how both sides are normalised");
  }
  std::string norm(const std::string& s) const {
    if (mode_ == "none") return s;
    if (mode_ == "math") return math::normalize_answer(s);
    return collapse_whitespace(s);
  }
  RewardOutput score(const RewardBatch& batch) override {
    RewardOutput out;
    out.values.assign(batch.samples.size(), kNaN);
    size_t no_gold = 0;
    for (size_t i = 0; i < batch.samples.size(); ++i) {
      const std::string gold = batch.gold(i);
      if (gold.empty()) {
        ++no_gold;
        continue;
      }
      out.values[i] = norm(batch.samples[i].completion) == norm(gold) ? 1.0 : 0.0;
    }
    out.diagnostics["no_gold"] = static_cast<double>(no_gold);
    return out;
  }

 private:
  std::string mode_;
};

// arith_steps: a process reward for worked arithmetic. Every integer equation "a op b = c"
// (op + - *, spaces allowed) in the completion is checked; the value is the fraction that are
// right (all_or_nothing: 1 only if every one is). A completion with no equation gets `no_steps`
// (default 0). Outcome rewards alone pay a right final answer reached through wrong steps
// ("6+6=10. 10+1=15. The answer is 13"); this one pays the steps.
class ArithSteps : public Reward {
 public:
  explicit ArithSteps(Params& p)
      : all_or_nothing_(p.flag("all_or_nothing", false, "1 only if every equation is right, else 0")),
        no_steps_(p.number("no_steps", 0.0, -1e9, 1e9, "value of a completion without any equation")) {}

  RewardOutput score(const RewardBatch& batch) override {
    static const std::regex eq(R"((-?\d{1,9})\s*([-+*])\s*(\d{1,9})\s*=\s*(-?\d{1,12}))");
    RewardOutput out;
    double checked = 0, right = 0, without = 0;
    for (const auto& s : batch.samples) {
      int64_t n = 0, ok = 0;
      for (auto it = std::sregex_iterator(s.completion.begin(), s.completion.end(), eq); it != std::sregex_iterator(); ++it) {
        const long long a = std::stoll((*it)[1].str()), b = std::stoll((*it)[3].str()), c = std::stoll((*it)[4].str());
        const std::string op = (*it)[2].str();
        const long long want = op == "+" ? a + b : op == "-" ? a - b : a * b;
        ++n;
        ok += want == c ? 1 : 0;
      }
      checked += static_cast<double>(n), right += static_cast<double>(ok);
      if (n == 0) {
        ++without;
        out.values.push_back(no_steps_);
      } else {
        out.values.push_back(all_or_nothing_ ? (ok == n ? 1.0 : 0.0) : static_cast<double>(ok) / static_cast<double>(n));
      }
    }
    out.diagnostics["step_accuracy"] = checked > 0 ? right / checked : 0.0;
    out.diagnostics["no_steps"] = without;
    return out;
  }

 private:
  bool all_or_nothing_;
  double no_steps_;
};

}  // namespace

void register_format_rewards() {
  register_reward("format", {"regex / required-tag / \\boxed-count checks on the completion", false,
                             [](Params& p, const RewardContext&) { return std::make_unique<Format>(p); }});
  register_reward("overlong", {"DAPO soft overlong punishment: 0, then a ramp to -1 over the last `cache` tokens", false,
                               [](Params& p, const RewardContext&) { return std::make_unique<Overlong>(p); }});
  register_reward("exact_match", {"1 if the completion equals the gold `answer` (after normalisation)", false,
                                  [](Params& p, const RewardContext&) { return std::make_unique<ExactMatch>(p); }});
  register_reward("arith_steps", {"fraction of the completion's integer equations `a op b = c` that are right", false,
                                  [](Params& p, const RewardContext&) { return std::make_unique<ArithSteps>(p); }});
}

}  // namespace scorch::rewards
