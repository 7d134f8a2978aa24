// `math_answer`: 1 when the completion's final answer equals the gold answer (ALGORITHMS.md §8).
//
// Params (defaults):
//   boxed, answer_phrase, gsm8k, last_number (true)  extraction steps, in priority order
//   correct (1.0), incorrect (0.0)                   reward values
//   no_answer ("incorrect")   "incorrect": a completion with no extractable answer scores
//                             `incorrect` (the model did answer wrongly: it gave nothing);
//                             "nan": it is not scored (excluded). Counted as `no_answer` either way.
//   reject_prompt_echo (true) a completion that is only (a part of) the prompt has no answer
//   extract_gold (true)       take the gold after "####" or inside \boxed{} (GSM8K / MATH solutions)
//   rel_tol (1e-4), max_answer_chars (256)   see math_answer.h
// A sample without a gold answer is NaN (counted as `no_gold`).
// Diagnostics: accuracy (correct / scored with gold), no_answer, no_gold, echo (counts).
#include <cmath>
#include <limits>

#include "common/strings.h"
#include "rewards/builtin.h"

namespace scorch::rewards {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string collapse_spaces(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    const bool is_space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (is_space) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// The completion repeats (a long enough part of) the prompt and nothing else.
bool echoes_prompt(const RewardSample& s) {
  // Cheap exit first: a completion with more visible characters than the prompt cannot be part of it.
  size_t visible = 0;
  for (char ch : s.completion) visible += !(ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r');
  if (visible == 0 || visible > s.prompt.size()) return false;
  const std::string c = collapse_spaces(s.completion);
  if (c.empty()) return false;
  const std::string p = collapse_spaces(s.prompt);
  if (c == p) return true;
  return c.size() >= std::min<size_t>(p.size(), 20) && p.find(c) != std::string::npos;
}

class MathAnswer : public Reward {
 public:
  explicit MathAnswer(Params& p) {
    extract_ = read_extract_options(p);
    compare_ = read_compare_options(p);
    correct_ = p.number("correct", 1.0, -1e6, 1e6, "reward of a correct answer");
    incorrect_ = p.number("incorrect", 0.0, -1e6, 1e6, "reward of a wrong answer");
    no_answer_nan_ = p.text("no_answer", "incorrect", {"incorrect", "nan"},
                            "a completion without an extractable answer scores `incorrect` or is not scored (nan)") == "nan";
    reject_echo_ = p.flag("reject_prompt_echo", true, "a completion that only repeats the prompt has no answer");
    extract_gold_ = p.flag("extract_gold", true, "gold after '####' or inside \\boxed{} (GSM8K / MATH solutions)");
  }

  RewardOutput score(const RewardBatch& batch) override {
    const size_t n = batch.samples.size();
    RewardOutput out;
    out.values.assign(n, kNaN);
    const ExtractedAnswers ex = extract_all(batch, extract_, reject_echo_);
    size_t no_gold = 0, scored = 0, right = 0;
    for (size_t i = 0; i < n; ++i) {
      const std::string raw_gold = batch.gold(i);
      if (trim(raw_gold).empty()) {
        ++no_gold;
        continue;
      }
      if (ex.answers[i].empty()) {
        if (!no_answer_nan_) {
          out.values[i] = incorrect_;
          ++scored;
        }
        continue;
      }
      const std::string gold = extract_gold_ ? math::gold_answer(raw_gold) : raw_gold;
      const bool ok = math::answers_equal(gold, ex.answers[i], compare_);
      out.values[i] = ok ? correct_ : incorrect_;
      ++scored;
      right += ok;
    }
    out.diagnostics["accuracy"] = scored ? static_cast<double>(right) / static_cast<double>(scored) : kNaN;
    out.diagnostics["no_answer"] = static_cast<double>(ex.no_answer);
    out.diagnostics["no_gold"] = static_cast<double>(no_gold);
    out.diagnostics["echo"] = static_cast<double>(ex.echo);
    return out;
  }

 private:
  math::ExtractOptions extract_;
  math::CompareOptions compare_;
  double correct_ = 1, incorrect_ = 0;
  bool no_answer_nan_ = false, reject_echo_ = true, extract_gold_ = true;
};

}  // namespace

math::ExtractOptions read_extract_options(Params& p) {
  math::ExtractOptions o;
  o.boxed = p.flag("boxed", true, "extract the last \\boxed{...} / \\fbox{...}");
  o.answer_phrase = p.flag("answer_phrase", true, "then 'The (final) answer is X'");
  o.gsm8k = p.flag("gsm8k", true, "then '#### X'");
  o.last_number = p.flag("last_number", true, "then the last number");
  return o;
}

math::CompareOptions read_compare_options(Params& p) {
  math::CompareOptions o;
  o.rel_tol = p.number("rel_tol", 1e-4, 0.0, 1.0, "relative tolerance of numeric equality");
  o.max_chars = static_cast<size_t>(
      p.integer("max_answer_chars", 256, 1, 100000, "longer answers are only compared as strings"));
  return o;
}

ExtractedAnswers extract_all(const RewardBatch& batch, const math::ExtractOptions& options, bool reject_prompt_echo) {
  ExtractedAnswers out;
  out.answers.resize(batch.samples.size());
  for (size_t i = 0; i < batch.samples.size(); ++i) {
    const auto& s = batch.samples[i];
    if (reject_prompt_echo && echoes_prompt(s)) {
      ++out.echo;
      ++out.no_answer;
      continue;
    }
    math::Extraction e = math::extract_answer(s.completion, options);
    if (!e.ok() || math::normalize_answer(e.answer).empty()) {
      ++out.no_answer;
      continue;
    }
    out.answers[i] = std::move(e.answer);
  }
  return out;
}

void register_math_rewards() {
  register_reward("math_answer",
                  {"1 if the completion's final answer equals the gold `answer` (boxed / 'answer is' / #### / last number)",
                   false, [](Params& p, const RewardContext&) { return std::make_unique<MathAnswer>(p); }});
}

}  // namespace scorch::rewards
