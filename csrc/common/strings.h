// Small string helpers shared across layers (no torch).
#pragma once
#include <string>
#include <vector>

namespace scorch {

std::string trim(const std::string& s);
std::vector<std::string> split(const std::string& s, char sep);
bool starts_with(const std::string& s, const std::string& prefix);
bool ends_with(const std::string& s, const std::string& suffix);
// Levenshtein distance over bytes; used for "did you mean" suggestions and the SCoRe edit distance.
size_t edit_distance(const std::string& a, const std::string& b);
// Edit distance over token sequences.
size_t edit_distance(const std::vector<long>& a, const std::vector<long>& b);
// The candidate closest to `key` if it is close enough to be a plausible typo, else "".
std::string nearest(const std::string& key, const std::vector<std::string>& candidates);
// A value quoted in a message: at most `max` bytes (cut on a UTF-8 boundary), a longer one ends
// with "... (N bytes)" so that a huge bad value never floods the terminal.
std::string shorten(const std::string& value, size_t max = 80);
// ", "-joined list, each item quoted with backticks.
std::string join_quoted(const std::vector<std::string>& items);
// How deeply arrays and objects nest in the JSON `text` (brackets inside strings do not count).
// Lines of user data are refused above kMaxJsonNesting: nlohmann::json copies and dumps values
// recursively, so a line of 200k brackets parses fine and then overflows the stack.
size_t json_nesting_depth(const std::string& text);
inline constexpr size_t kMaxJsonNesting = 1000;

}  // namespace scorch
