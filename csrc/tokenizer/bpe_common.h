// What the two BPE tokenizers (tokenizer.json in hf_tokenizer.cpp, tiktoken rank files in
// tiktoken_tokenizer.cpp) share: UTF-8 helpers, the PCRE2 pre-tokenizer regex, the merge loop and
// its cache, added/special-token matching, and reading tokenizer_config.json. Internal to
// csrc/tokenizer.
//
// PCRE2 (Debian libpcre2-dev; UTF + UCP, JIT) runs the pre-tokenizer regexes, which use Unicode
// properties (\p{L}, \p{N}), look-ahead and possessive quantifiers that std::regex lacks.
#pragma once
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace scorch::bpe {

// ---- UTF-8 ---------------------------------------------------------------------------------

// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one; then
// *maximal_invalid is the length of the maximal invalid subpart starting there.
size_t utf8_valid_len(const std::string& s, size_t i, size_t* maximal_invalid = nullptr);
// Invalid UTF-8 -> U+FFFD per maximal invalid subpart (Python's errors="replace", Rust's
// from_utf8_lossy).
std::string utf8_lossy(const std::string& s);
bool is_valid_utf8(const std::string& s);
inline size_t utf8_char_len(const std::string& s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  const size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  return n < s.size() - i ? n : s.size() - i;
}
uint32_t utf8_decode_at(const std::string& s, size_t i);
void utf8_append(std::string& out, uint32_t cp);
bool is_unicode_space(uint32_t cp);

// GPT-2's byte <-> printable-character table used by ByteLevel (tokenizer.json's byte-level
// vocabularies; a tiktoken rank file's bytes written as tokenizer.json).
struct ByteLevelTable {
  std::string byte_to_char[256];
  std::unordered_map<uint32_t, unsigned char> char_to_byte;
  ByteLevelTable();
};
const ByteLevelTable& byte_level_table();

// ---- Pre-tokenizer regex -----------------------------------------------------------------------

class Regex {
 public:
  // Throws std::invalid_argument("regex /P/ does not compile at offset N: why") on a bad pattern.
  // `dollar_end_only`: `$` matches only at the very end (Rust regex semantics, tiktoken's patterns),
  // not also before a final newline (PCRE's default).
  explicit Regex(const std::string& pattern, bool dollar_end_only = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-empty matches [begin, end) of the regex in `s` (valid UTF-8), left to right.
  std::vector<std::pair<size_t, size_t>> find_all(const std::string& s) const;

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_data* match_ = nullptr;
  mutable std::mutex mu_;
};

// ---- The merge loop ----------------------------------------------------------------------------

// One symbol of a word being merged: a token id and the bytes [begin, end) of the word it covers.
struct BpeSymbol {
  int64_t id;
  uint32_t begin, end;
};

// What merging two adjacent symbols gives: the merge's rank (lower merges first; < 0: the pair
// does not merge) and the merged token's id.
struct BpeMerge {
  int64_t rank = -1;
  int64_t id = -1;
};

// Merges adjacent symbols, the lowest-ranked pair first and the leftmost among equal ranks, until
// no adjacent pair merges; returns the ids left. `pair_merge(left, right)` -> BpeMerge. Both the
// tokenizer.json merges (rank = merge line, by token-id pair) and tiktoken (rank = the rank of the
// merged bytes) are this loop with a different pair_merge.
template <class PairMerge>
std::vector<int64_t> bpe_merge(const std::vector<BpeSymbol>& symbols, const PairMerge& pair_merge) {
  struct Sym {
    BpeSymbol s;
    int prev, next;
    bool alive;
  };
  const int n = static_cast<int>(symbols.size());
  std::vector<Sym> syms(symbols.size());
  for (int i = 0; i < n; ++i) syms[i] = {symbols[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  // Lowest rank first, leftmost on ties; entries made stale by an earlier merge are skipped when
  // popped (a merged symbol's id differs from both of its parts').
  struct Cand {
    int64_t rank;
    int pos;
    int64_t left, right, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  const auto push = [&](int i) {
    if (i < 0 || syms[i].next < 0) return;
    const BpeSymbol& l = syms[i].s;
    const BpeSymbol& r = syms[syms[i].next].s;
    const BpeMerge m = pair_merge(l, r);
    if (m.rank >= 0) heap.push({m.rank, i, l.id, r.id, m.id});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& s = syms[c.pos];
    if (!s.alive || s.next < 0 || s.s.id != c.left || syms[s.next].s.id != c.right) continue;
    Sym& r = syms[s.next];
    s.s.id = c.merged;
    s.s.end = r.s.end;
    r.alive = false;
    s.next = r.next;
    if (r.next >= 0) syms[r.next].prev = c.pos;
    push(s.prev);
    push(c.pos);
  }
  std::vector<int64_t> ids;
  for (int i = n > 0 ? 0 : -1; i >= 0; i = syms[i].next) ids.push_back(syms[i].s.id);
  return ids;
}

// Pre-token -> ids, shared by all threads; cleared whole when full (real text repeats its words).
class BpeCache {
 public:
  bool lookup(const std::string& word, std::vector<int64_t>& out) const;
  void store(const std::string& word, std::vector<int64_t> ids) const;

 private:
  static constexpr size_t kCapacity = 1 << 18;
  static constexpr size_t kMaxWordBytes = 256;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

// ---- Added and special tokens ------------------------------------------------------------------

struct AddedToken {
  int64_t id = -1;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Leftmost-longest matching of a set of added tokens, as the reference's Aho-Corasick split.
class AddedMatcher {
 public:
  void add(const AddedToken* t);
  void finish();  // after the last add()
  bool empty() const;

  struct Segment {
    size_t b, e;
    const AddedToken* token;  // null = text
  };
  // `data`: byte ranges where special tokens are not matched (message text in a rendered template).
  std::vector<Segment> split(const std::string& s, const std::vector<std::pair<size_t, size_t>>* data = nullptr) const;

 private:
  std::vector<const AddedToken*> by_first_[256];
};

// ---- HF side files -----------------------------------------------------------------------------

// A token written as "text" or {"content": "text", ...}; "" for anything else.
std::string token_field(const nlohmann::json& j);
// The parsed JSON file, or null if it does not exist; invalid JSON is a UserError naming it.
nlohmann::json read_json_if_exists(const std::string& path);

}  // namespace scorch::bpe
