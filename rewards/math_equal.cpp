// Answer normalisation and equivalence (math_answer.h). The numeric side is a tiny recursive-
// descent evaluator over the LaTeX that final answers actually use (\frac, \sqrt, \pi, + - * / ^);
// anything else is "not a number" and falls back to string equality. Caps on length (max_chars,
// 128 for the evaluator) and nesting (32) bound the work instead of a timeout.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "rewards/math_answer.h"

namespace scorch::rewards::math {
namespace {

constexpr size_t kMaxNormalizeChars = 1024;
constexpr size_t kMaxEvalChars = 128;
constexpr int kMaxDepth = 32;
constexpr double kPi = 3.14159265358979323846;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  size_t p = 0;
  while ((p = s.find(from, p)) != std::string::npos) {
    s.replace(p, from.size(), to);
    p += to.size();
  }
}

// Removes "\name" where it is the whole command (not a prefix of a longer one: \right vs \rightarrow).
void remove_command(std::string& s, std::string_view name) {
  size_t p = 0;
  while ((p = s.find(name, p)) != std::string::npos) {
    const size_t end = p + name.size();
    if (end < s.size() && is_alpha(s[end])) {
      p = end;
      continue;
    }
    s.erase(p, name.size());
  }
}

// Index of the brace closing the one at `open`, or npos.
size_t matching_brace(const std::string& s, size_t open) {
  int depth = 0;
  for (size_t j = open; j < s.size(); ++j) {
    if (s[j] == '{') ++depth;
    if (s[j] == '}' && --depth == 0) return j;
  }
  return std::string::npos;
}

// \text{...}-like wrappers: a unit after a value is dropped ("5\text{ cm}^2" -> "5"), anything
// else is unwrapped ("\text{Monday}" -> "Monday").
void strip_text_commands(std::string& s) {
  for (std::string_view cmd : {"\\text", "\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\mbox"}) {
    size_t p = 0;
    while ((p = s.find(cmd, p)) != std::string::npos) {
      size_t open = p + cmd.size();
      if (open >= s.size() || s[open] != '{') {
        p = open;
        continue;
      }
      const size_t close = matching_brace(s, open);
      if (close == std::string::npos) return;
      const std::string content = s.substr(open + 1, close - open - 1);
      size_t b = p;
      while (b > 0 && is_space(s[b - 1])) --b;
      const bool after_value = b > 0 && (is_digit(s[b - 1]) || s[b - 1] == '}' || s[b - 1] == ')');
      bool content_is_word = !content.empty();
      for (char c : content) content_is_word = content_is_word && (is_alpha(c) || is_space(c) || c == '.');
      if (after_value && content_is_word) {
        size_t end = close + 1;
        // Area / volume units: "cm}^2", "m}^{3}".
        if (end < s.size() && s[end] == '^') {
          if (end + 1 < s.size() && is_digit(s[end + 1])) end += 2;
          else if (s.compare(end + 1, 1, "{") == 0) {
            const size_t c2 = matching_brace(s, end + 1);
            if (c2 != std::string::npos) end = c2 + 1;
          }
        }
        s.erase(p, end - p);
      } else {
        s.replace(p, close + 1 - p, content);
      }
    }
  }
}

// "1,234,567" -> "1234567" where the commas are thousands separators (a lead group of 1-3 digits,
// then groups of exactly 3); "[1,2]" and "1,23" are left alone.
void strip_thousands(std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (!is_digit(s[i]) || (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.'))) {
      out += s[i++];
      continue;
    }
    size_t j = i;
    while (j < s.size() && is_digit(s[j])) ++j;
    std::string token = s.substr(i, j - i);
    if (j - i <= 3) {
      size_t k = j;
      std::string grouped = token;
      while (k + 3 < s.size() + 0 && s[k] == ',' && is_digit(s[k + 1]) && is_digit(s[k + 2]) && is_digit(s[k + 3]) &&
             (k + 4 >= s.size() || !is_digit(s[k + 4]))) {
        grouped += s.substr(k + 1, 3);
        k += 4;
      }
      if (k != j) {
        out += grouped;
        i = k;
        continue;
      }
    }
    out += token;
    i = j;
  }
  s.swap(out);
}

// "5.00" -> "5", "2.50" stays (the numeric comparison handles it).
void strip_trailing_zero_decimals(std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.' && i > 0 && is_digit(s[i - 1]) && i + 1 < s.size() && s[i + 1] == '0') {
      size_t j = i + 1;
      while (j < s.size() && s[j] == '0') ++j;
      if (j >= s.size() || !is_digit(s[j])) {
        i = j - 1;
        continue;
      }
    }
    out += s[i];
  }
  s.swap(out);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

// Recursive descent over a normalised (whitespace-free) answer.
class Evaluator {
 public:
  explicit Evaluator(std::string_view s) : s_(s) {}
  std::optional<double> run() {
    double v = expr();
    if (!ok_ || pos_ != s_.size() || !std::isfinite(v)) return std::nullopt;
    return v;
  }

 private:
  bool eat(std::string_view tok) {
    if (s_.compare(pos_, tok.size(), tok) != 0) return false;
    // A command must not continue with letters (\pi vs \pir).
    if (tok[0] == '\\' && pos_ + tok.size() < s_.size() && is_alpha(s_[pos_ + tok.size()])) return false;
    pos_ += tok.size();
    return true;
  }
  bool at_end() const { return pos_ >= s_.size(); }
  double fail() {
    ok_ = false;
    return 0;
  }

  double expr() {
    double v = term();
    while (ok_ && !at_end()) {
      if (eat("+")) v += term();
      else if (eat("-")) v -= term();
      else break;
    }
    return v;
  }
  bool starts_primary() const {
    if (at_end()) return false;
    const char c = s_[pos_];
    return c == '(' || c == '{' || s_.compare(pos_, 5, "\\frac") == 0 || s_.compare(pos_, 5, "\\sqrt") == 0 ||
           s_.compare(pos_, 3, "\\pi") == 0;
  }
  double term() {
    double v = unary();
    while (ok_ && !at_end()) {
      if (eat("*") || eat("\\cdot") || eat("\\times")) {
        v *= unary();
      } else if (eat("/") || eat("\\div")) {
        const double d = unary();
        if (d == 0) return fail();
        v /= d;
      } else if (starts_primary()) {
        v *= power();  // implicit product: 2\sqrt{3}, 3\pi, 2(5)
      } else {
        break;
      }
    }
    return v;
  }
  double unary() {
    if (eat("-")) return -unary();
    if (eat("+")) return unary();
    return power();
  }
  double power() {
    double base = primary();
    if (ok_ && eat("^")) {
      double e = 0;
      if (!at_end() && is_digit(s_[pos_])) e = number();  // plain-text 2^10
      else e = argument();
      base = std::pow(base, e);
    }
    return base;
  }
  // A LaTeX argument: {expr} or a single digit (\frac12).
  double argument() {
    if (at_end()) return fail();
    if (s_[pos_] == '{') return group('{', '}');
    if (is_digit(s_[pos_])) return s_[pos_++] - '0';
    if (eat("\\pi")) return kPi;
    return fail();
  }
  double group(char open, char close) {
    if (++depth_ > kMaxDepth) return fail();
    if (at_end() || s_[pos_] != open) return fail();
    ++pos_;
    const double v = expr();
    if (at_end() || s_[pos_] != close) return fail();
    ++pos_;
    --depth_;
    return v;
  }
  double number() {
    const size_t start = pos_;
    while (!at_end() && is_digit(s_[pos_])) ++pos_;
    if (!at_end() && s_[pos_] == '.') {
      ++pos_;
      while (!at_end() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ == start || (pos_ == start + 1 && s_[start] == '.')) return fail();
    // Scientific notation only when an exponent really follows: "1e-3", not "2e".
    if (!at_end() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      size_t k = pos_ + 1;
      if (k < s_.size() && (s_[k] == '-' || s_[k] == '+')) ++k;
      if (k < s_.size() && is_digit(s_[k])) {
        pos_ = k;
        while (!at_end() && is_digit(s_[pos_])) ++pos_;
      }
    }
    return std::strtod(std::string(s_.substr(start, pos_ - start)).c_str(), nullptr);
  }
  double primary() {
    if (!ok_ || at_end()) return fail();
    const char c = s_[pos_];
    if (is_digit(c) || c == '.') return number();
    if (c == '(') return group('(', ')');
    if (c == '{') return group('{', '}');
    if (eat("\\pi")) return kPi;
    if (eat("\\frac")) {
      const double a = argument();
      const double b = argument();
      if (!ok_ || b == 0) return fail();
      return a / b;
    }
    if (eat("\\sqrt")) {
      double index = 2;
      if (!at_end() && s_[pos_] == '[') index = group('[', ']');
      const double a = argument();
      if (!ok_ || a < 0 || index == 0) return fail();
      return std::pow(a, 1.0 / index);
    }
    return fail();
  }

  std::string_view s_;
  size_t pos_ = 0;
  int depth_ = 0;
  bool ok_ = true;
};

bool close_enough(double a, double b, double rel_tol) {
  if (a == b) return true;
  return std::fabs(a - b) <= rel_tol * std::max(std::fabs(a), std::fabs(b));
}

// Splits "a,b,c" at top-level commas (not inside brackets or braces).
std::vector<std::string> split_top_level(std::string_view s) {
  std::vector<std::string> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '(' || c == '[' || c == '{') ++depth;
    else if (c == ')' || c == ']' || c == '}') --depth;
    else if (c == ',' && depth == 0) {
      parts.emplace_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.emplace_back(s.substr(start));
  return parts;
}

// "x=5", "a_1=5", "\theta=5" -> "5"; unchanged otherwise.
std::string drop_variable_prefix(const std::string& p) {
  const size_t eq = p.find('=');
  if (eq == std::string::npos || eq == 0 || p.find('=', eq + 1) != std::string::npos) return p;
  for (size_t i = 0; i < eq; ++i) {
    const char c = p[i];
    if (!(is_alpha(c) || is_digit(c) || c == '_' || c == '\\' || c == '{' || c == '}')) return p;
  }
  if (is_digit(p[0])) return p;
  return p.substr(eq + 1);
}

bool equal_normalized(const std::string& g, std::string p, const CompareOptions& o, int depth) {
  if (g.empty() || p.empty()) return false;
  if (iequals(g, p)) return true;
  if (g.size() > o.max_chars || p.size() > o.max_chars || depth > 4) return false;
  if (g.find('=') == std::string::npos) {
    p = drop_variable_prefix(p);
    if (iequals(g, p)) return true;
  }
  bool g_percent = false, p_percent = false;
  const auto gv = evaluate_number(g, &g_percent);
  const auto pv = evaluate_number(p, &p_percent);
  if (gv && pv) {
    if (close_enough(*gv, *pv, o.rel_tol)) return true;
    // Gold "50%": a bare fraction 0.5 means the same thing. Never the other way round.
    return g_percent && !p_percent && close_enough(*gv, *pv * 100.0, o.rel_tol);
  }
  if (gv || pv) return false;
  // Tuples and intervals: identical brackets, same arity, elementwise equal.
  const auto open = [](char c) { return c == '(' || c == '[' || c == '{'; };
  const auto shut = [](char c) { return c == ')' || c == ']' || c == '}'; };
  if (g.size() >= 2 && p.size() >= 2 && open(g.front()) && shut(g.back()) && open(p.front()) && shut(p.back())) {
    if (g.front() != p.front() || g.back() != p.back()) return false;
    const auto ge = split_top_level(std::string_view(g).substr(1, g.size() - 2));
    const auto pe = split_top_level(std::string_view(p).substr(1, p.size() - 2));
    if (ge.size() != pe.size() || ge.size() < 2) return false;
    for (size_t i = 0; i < ge.size(); ++i)
      if (!equal_normalized(ge[i], pe[i], o, depth + 1)) return false;
    return true;
  }
  return false;
}

}  // namespace

std::string normalize_answer(std::string_view answer) {
  std::string s(answer);
  if (s.size() > kMaxNormalizeChars) return s;
  replace_all(s, "\xE2\x88\x92", "-");  // unicode minus
  replace_all(s, "\xCF\x80", "\\pi");   // π
  replace_all(s, "\\left.", "");
  replace_all(s, "\\right.", "");
  remove_command(s, "\\left");
  remove_command(s, "\\right");
  remove_command(s, "\\displaystyle");
  replace_all(s, "\\dfrac", "\\frac");
  replace_all(s, "\\tfrac", "\\frac");
  for (std::string_view sp : {"\\!", "\\,", "\\;", "\\:", "\\ "}) replace_all(s, sp, "");
  replace_all(s, "~", " ");
  replace_all(s, "^{\\circ}", "");
  replace_all(s, "^\\circ", "");
  remove_command(s, "\\circ");
  remove_command(s, "\\degree");
  replace_all(s, "\\%", "%");
  replace_all(s, "\\$", "");
  replace_all(s, "$", "");
  strip_text_commands(s);
  // Whitespace carries no meaning in a final answer.
  std::string compact;
  compact.reserve(s.size());
  for (char c : s)
    if (!is_space(c)) compact += c;
  s.swap(compact);
  replace_all(s, "{,}", ",");
  strip_thousands(s);
  // Unwrap a whole-answer brace group: "{5}" -> "5".
  while (s.size() >= 2 && s.front() == '{' && matching_brace(s, 0) == s.size() - 1) s = s.substr(1, s.size() - 2);
  while (!s.empty() && s.back() == '.') s.pop_back();
  if (s.size() >= 2 && s[0] == '+' && is_digit(s[1])) s.erase(0, 1);
  strip_trailing_zero_decimals(s);
  return s;
}

std::optional<double> evaluate_number(std::string_view s, bool* percent) {
  if (percent) *percent = false;
  if (s.empty() || s.size() > kMaxEvalChars) return std::nullopt;
  if (s.back() == '%') {
    if (percent) *percent = true;
    s.remove_suffix(1);
  }
  // Mixed number "2\frac{1}{2}" = 2 + 1/2 (not 2 * 1/2).
  {
    size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
    const size_t digits = i;
    while (i < s.size() && is_digit(s[i])) ++i;
    if (i > digits && s.compare(i, 5, "\\frac") == 0) {
      auto whole = Evaluator(s.substr(digits, i - digits)).run();
      auto frac = Evaluator(s.substr(i)).run();
      if (whole && frac && *frac >= 0 && *frac < 1) {
        const double v = *whole + *frac;
        return digits == 1 ? -v : v;
      }
    }
  }
  return Evaluator(s).run();
}

bool answers_equal(std::string_view gold, std::string_view predicted, const CompareOptions& options) {
  // Gold first: the gold defines the form (percent, tuple, variable) that the prediction must meet.
  const std::string g = normalize_answer(gold);
  const std::string p = normalize_answer(predicted);
  return equal_normalized(g, p, options, 0);
}

}  // namespace scorch::rewards::math
