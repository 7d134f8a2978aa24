// Final-answer extraction (math_answer.h): linear scans, no regex, so 100k completions a second
// per core is realistic and a pathological completion cannot blow up.
#include <algorithm>
#include <cctype>

#include "rewards/math_answer.h"

namespace scorch::rewards::math {
namespace {

constexpr size_t kMaxPhraseChars = 200;  // an "answer is X" tail longer than this is not an answer

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string_view trim_view(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Position of the last case-insensitive occurrence of `needle` (lowercase) in `text`, or npos.
size_t rfind_icase(std::string_view text, std::string_view needle) {
  if (needle.size() > text.size()) return std::string_view::npos;
  const auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
  for (size_t i = text.size() - needle.size() + 1; i-- > 0;) {
    if (lower(text[i]) != needle[0]) continue;
    size_t k = 1;
    while (k < needle.size() && lower(text[i + k]) == needle[k]) ++k;
    if (k == needle.size()) return i;
  }
  return std::string_view::npos;
}

// Last occurrence of `needle` at or before `from` (string_view::rfind calls memcmp at every
// position; checking the first byte inline is several times faster on long completions).
size_t rfind_exact(std::string_view text, std::string_view needle, size_t from = std::string_view::npos) {
  if (needle.empty() || needle.size() > text.size()) return std::string_view::npos;
  size_t i = std::min(from, text.size() - needle.size());
  for (++i; i-- > 0;) {
    if (text[i] == needle[0] && text.compare(i, needle.size(), needle) == 0) return i;
  }
  return std::string_view::npos;
}

// The last \boxed / \fbox command start, and the length of its name.
size_t rfind_box(std::string_view text, size_t* name_len) {
  size_t best = std::string_view::npos;
  for (std::string_view cmd : {std::string_view("\\boxed"), std::string_view("\\fbox")}) {
    size_t p = rfind_exact(text, cmd);
    // "\boxedx" is another command: keep looking left.
    while (p != std::string_view::npos && p + cmd.size() < text.size() && is_alpha(text[p + cmd.size()])) {
      p = p == 0 ? std::string_view::npos : rfind_exact(text, cmd, p - 1);
    }
    if (p != std::string_view::npos && (best == std::string_view::npos || p > best)) {
      best = p;
      *name_len = cmd.size();
    }
  }
  return best;
}

// Cleans an answer taken from running text: first line, first sentence, no trailing period,
// no trailing unit words after a leading number ("42 apples." -> "42").
std::string clean_phrase(std::string_view tail) {
  while (!tail.empty() && (is_space(tail.front()) || tail.front() == ':')) tail.remove_prefix(1);
  size_t end = tail.find('\n');
  if (end != std::string_view::npos) tail = tail.substr(0, end);
  // End of sentence: ". " (a decimal point is never followed by a space).
  end = tail.find(". ");
  if (end != std::string_view::npos) tail = tail.substr(0, end);
  tail = trim_view(tail);
  while (!tail.empty() && (tail.back() == '.' || tail.back() == '!')) tail.remove_suffix(1);
  tail = trim_view(tail);
  if (tail.size() > kMaxPhraseChars) return "";
  // "42 apples" / "$18 dollars": a number followed only by words.
  size_t i = 0;
  if (i < tail.size() && (tail[i] == '-' || tail[i] == '$')) ++i;
  const size_t digits_start = i;
  while (i < tail.size() && (is_digit(tail[i]) || tail[i] == ',' || tail[i] == '.' || tail[i] == '/')) ++i;
  if (i < tail.size() && tail[i] == '%') ++i;
  if (i > digits_start && i < tail.size() && is_space(tail[i])) {
    bool words_only = true;
    for (size_t k = i; k < tail.size(); ++k) {
      const char c = tail[k];
      if (!(is_alpha(c) || is_space(c) || c == '\'' || c == '-')) {
        words_only = false;
        break;
      }
    }
    if (words_only) return std::string(tail.substr(0, i));
  }
  return std::string(tail);
}

// The last number token: -?\d+(,\d{3})*(\.\d+)?(/\d+)?%?  (a '-' counts only when it is not a
// binary minus, i.e. not right after a digit, letter or closing bracket).
std::optional<std::string> last_number(std::string_view text) {
  std::optional<std::string> last;
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    if (!is_digit(text[i]) || (i > 0 && (is_digit(text[i - 1]) || text[i - 1] == '.'))) {
      ++i;
      continue;
    }
    size_t start = i;
    if (i > 0 && text[i - 1] == '-') {
      const char before = i > 1 ? text[i - 2] : ' ';
      if (!(is_digit(before) || is_alpha(before) || before == ')' || before == ']')) start = i - 1;
    }
    size_t j = i;
    while (j < n && is_digit(text[j])) ++j;
    // Thousands groups only when the lead group has at most 3 digits.
    if (j - i <= 3) {
      while (j + 3 < n && text[j] == ',' && is_digit(text[j + 1]) && is_digit(text[j + 2]) && is_digit(text[j + 3]) &&
             (j + 4 >= n || !is_digit(text[j + 4]))) {
        j += 4;
      }
    }
    if (j + 1 < n && text[j] == '.' && is_digit(text[j + 1])) {
      j += 1;
      while (j < n && is_digit(text[j])) ++j;
    }
    if (j + 1 < n && text[j] == '/' && is_digit(text[j + 1])) {
      j += 1;
      while (j < n && is_digit(text[j])) ++j;
    }
    if (j < n && text[j] == '%') ++j;
    last = std::string(text.substr(start, j - start));
    i = j;
  }
  return last;
}

}  // namespace

std::optional<std::string> last_boxed(std::string_view text, bool* unclosed) {
  if (unclosed) *unclosed = false;
  size_t name_len = 0;
  const size_t p = rfind_box(text, &name_len);
  if (p == std::string_view::npos) return std::nullopt;
  size_t i = p + name_len;
  while (i < text.size() && is_space(text[i])) ++i;
  if (i < text.size() && text[i] == '{') {
    int depth = 0;
    for (size_t j = i; j < text.size(); ++j) {
      if (text[j] == '\\' && j + 1 < text.size()) {  // \{ and \} are literal braces
        ++j;
        continue;
      }
      if (text[j] == '{') ++depth;
      if (text[j] == '}' && --depth == 0) return std::string(trim_view(text.substr(i + 1, j - i - 1)));
    }
    if (unclosed) *unclosed = true;
    return std::nullopt;
  }
  // "\boxed 5": the next whitespace- or $-delimited token.
  if (i == p + name_len) return std::nullopt;  // "\boxed" at the very end, nothing follows
  size_t j = i;
  while (j < text.size() && !is_space(text[j]) && text[j] != '$') ++j;
  if (j == i) return std::nullopt;
  return std::string(text.substr(i, j - i));
}

Extraction extract_answer(std::string_view text, const ExtractOptions& options) {
  Extraction out;
  if (options.boxed) {
    bool unclosed = false;
    auto boxed = last_boxed(text, &unclosed);
    if (unclosed) {
      // The last box was cut off (truncated generation): no answer, whatever came earlier.
      out.unclosed_box = true;
      return out;
    }
    if (boxed && !boxed->empty()) {
      out.answer = *boxed;
      out.by = ExtractedBy::Boxed;
      return out;
    }
  }
  if (options.answer_phrase) {
    const size_t p = rfind_icase(text, "answer is");
    if (p != std::string_view::npos) {
      std::string a = clean_phrase(text.substr(p + 9));
      if (!a.empty()) {
        out.answer = std::move(a);
        out.by = ExtractedBy::AnswerPhrase;
        return out;
      }
    }
  }
  if (options.gsm8k) {
    const size_t p = rfind_exact(text, "####");
    if (p != std::string_view::npos) {
      std::string a = clean_phrase(text.substr(p + 4));
      if (!a.empty()) {
        out.answer = std::move(a);
        out.by = ExtractedBy::Gsm8k;
        return out;
      }
    }
  }
  if (options.last_number) {
    auto num = last_number(text);
    if (num) {
      out.answer = *num;
      out.by = ExtractedBy::LastNumber;
    }
  }
  return out;
}

std::string gold_answer(std::string_view gold) {
  const size_t p = rfind_exact(gold, "####");
  if (p != std::string_view::npos) return clean_phrase(gold.substr(p + 4));
  if (gold.find("\\boxed") != std::string_view::npos || gold.find("\\fbox") != std::string_view::npos) {
    auto b = last_boxed(gold);
    if (b) return *b;
  }
  return std::string(trim_view(gold));
}

}  // namespace scorch::rewards::math
