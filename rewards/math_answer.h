// Final-answer extraction and equivalence for math rewards (ALGORITHMS.md §8). Pure string code,
// no torch, no regex engine: every step is a linear scan, and every expensive comparison is
// bounded by length and nesting caps instead of a wall-clock timeout (so it is deterministic and
// thread-safe; the benchmark in tools/bench/rewards measures it).
//
// Extraction priority (each step switchable): the last \boxed{...} / \fbox{...} (brace matching;
// an unclosed last box means the output was cut off: no answer) -> the last "The final answer is X"
// / "The answer is X" -> the last GSM8K "#### X" -> the last number.
//
// Equivalence, always answers_equal(gold, predicted) — gold first, so the prediction is judged
// against the gold and never the other way round:
//   1. strings equal after normalize_answer() (case-insensitive);
//   2. a leading "x =" on the prediction is dropped when the gold has no '=';
//   3. both evaluate to numbers (integers, decimals, a/b, \frac{a}{b}, \dfrac, \tfrac, \sqrt, \pi,
//      + - * / ^, mixed numbers 2\frac{1}{2}) and agree within rel_tol (default 1e-4);
//      percentages: when the gold has a '%', "50%", "50" and "0.5" all match gold "50%"; when the
//      gold has none, a '%' on the prediction is only a unit ("50%" matches "50", not "0.5");
//   4. tuples and intervals: same brackets, same arity, elementwise equal ("[1,2]" != "(1,2)").
#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace scorch::rewards::math {

struct ExtractOptions {
  bool boxed = true;          // last \boxed{...} / \fbox{...}
  bool answer_phrase = true;  // "The final answer is X" / "The answer is X" (case-insensitive)
  bool gsm8k = true;          // "#### X"
  bool last_number = true;    // the last number in the text (e.g. "-1,234.5", "3/4", "50%")
};

enum class ExtractedBy { None, Boxed, AnswerPhrase, Gsm8k, LastNumber };

struct Extraction {
  std::string answer;                    // raw answer text (not normalised)
  ExtractedBy by = ExtractedBy::None;
  bool unclosed_box = false;             // the last \boxed had no closing brace
  bool ok() const { return by != ExtractedBy::None; }
};

Extraction extract_answer(std::string_view text, const ExtractOptions& options = {});

// The content of the last \boxed{...} / \fbox{...}; nullopt if none or unclosed (then *unclosed is set).
std::optional<std::string> last_boxed(std::string_view text, bool* unclosed = nullptr);

// A dataset's gold answer as an answer: the part after the last "####" (GSM8K solutions), else the
// last \boxed{} content (MATH solutions), else the whole string.
std::string gold_answer(std::string_view gold);

struct CompareOptions {
  double rel_tol = 1e-4;          // |a - b| <= rel_tol * max(|a|, |b|)
  size_t max_chars = 256;         // longer answers are only compared as normalised strings
};

// Canonical string form: drops $, \left/\right, spacing commands, \text{unit} after a value,
// degrees, whitespace, thousands separators, trailing ".0" and a final period; \dfrac/\tfrac ->
// \frac; unicode minus -> '-'; unwraps a whole-answer \text{...} / {...}.
std::string normalize_answer(std::string_view answer);

// The value of a normalised answer if it is a number or simple closed-form expression.
// `percent` is set when it ended with '%' (the value is then the number before the '%').
std::optional<double> evaluate_number(std::string_view normalized, bool* percent = nullptr);

bool answers_equal(std::string_view gold, std::string_view predicted, const CompareOptions& options = {});

}  // namespace scorch::rewards::math
