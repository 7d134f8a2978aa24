// The shared BPE pieces declared in bpe_common.h.
#include "tokenizer/bpe_common.h"

#include <utf8proc.h>

#include <algorithm>
#include <stdexcept>

#include "common/error.h"
#include "common/fs.h"

namespace scorch::bpe {

using json = nlohmann::json;

// ---- UTF-8 ---------------------------------------------------------------------------------

size_t utf8_valid_len(const std::string& s, size_t i, size_t* maximal_invalid) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) { need = 2; lo = 0xA0; }
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
  else if (c == 0xED) { need = 2; hi = 0x9F; }
  else if (c == 0xF0) { need = 3; lo = 0x90; }
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else if (c == 0xF4) { need = 3; hi = 0x8F; }
  size_t k = 1;
  if (need > 0) {
    for (; k <= need; ++k) {
      if (i + k >= s.size()) break;
      const unsigned char x = b(i + k);
      const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (x < l || x > h) break;
    }
    if (k == need + 1) return need + 1;
  }
  if (maximal_invalid) *maximal_invalid = k;  // lead byte + the valid continuation bytes seen
  return 0;
}

// Invalid UTF-8 -> U+FFFD per maximal invalid subpart (Python's errors="replace", Rust's
// from_utf8_lossy).
std::string utf8_lossy(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 1;
    const size_t n = utf8_valid_len(s, i, &bad);
    if (n > 0) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += bad;
    }
  }
  return out;
}

bool is_valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_valid_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

uint32_t utf8_decode_at(const std::string& s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  const size_t n = utf8_char_len(s, i);
  if (n == 1) return c;
  uint32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return cp;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

ByteLevelTable::ByteLevelTable() {
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + n++);
    utf8_append(byte_to_char[b], cp);
    char_to_byte[cp] = static_cast<unsigned char>(b);
  }
}

const ByteLevelTable& byte_level_table() {
  static const ByteLevelTable table;
  return table;
}

bool is_unicode_space(uint32_t cp) {
  return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// ---- Pre-tokenizer regex -----------------------------------------------------------------------

Regex::Regex(const std::string& pattern, bool dollar_end_only) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = PCRE2_UTF | PCRE2_UCP | (dollar_end_only ? PCRE2_DOLLAR_ENDONLY : 0);
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &err, &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    throw std::invalid_argument("regex /" + pattern + "/ does not compile at offset " + std::to_string(offset) + ": " +
                                reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  match_ = pcre2_match_data_create_from_pattern(code_, nullptr);
}

Regex::~Regex() {
  pcre2_match_data_free(match_);
  pcre2_code_free(code_);
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(const std::string& s) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<size_t, size_t>> out;
  size_t start = 0;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  while (start <= s.size()) {
    const int rc = pcre2_match(code_, subject, s.size(), start, PCRE2_NO_UTF_CHECK, match_, nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_);
    if (ov[1] > ov[0]) {
      out.emplace_back(ov[0], ov[1]);
      start = ov[1];
    } else {
      if (ov[0] >= s.size()) break;
      start = ov[0] + utf8_char_len(s, ov[0]);
    }
  }
  return out;
}

// ---- The merge loop's cache --------------------------------------------------------------------

bool BpeCache::lookup(const std::string& word, std::vector<int64_t>& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = cache_.find(word);
  if (it == cache_.end()) return false;
  out.insert(out.end(), it->second.begin(), it->second.end());
  return true;
}

void BpeCache::store(const std::string& word, std::vector<int64_t> ids) const {
  if (word.size() > kMaxWordBytes) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (cache_.size() >= kCapacity) cache_.clear();
  cache_.emplace(word, std::move(ids));
}

// ---- Added and special tokens ------------------------------------------------------------------

namespace {

bool is_word_char(uint32_t cp) {
  return cp == '_' || utf8proc_category(static_cast<utf8proc_int32_t>(cp)) <= UTF8PROC_CATEGORY_NO;
}

}  // namespace

void AddedMatcher::add(const AddedToken* t) {
  if (t->content.empty()) return;
  by_first_[static_cast<unsigned char>(t->content[0])].push_back(t);
}

void AddedMatcher::finish() {
  for (auto& list : by_first_) {
    std::sort(list.begin(), list.end(),
              [](const AddedToken* a, const AddedToken* b) { return a->content.size() > b->content.size(); });
  }
}

bool AddedMatcher::empty() const {
  return std::all_of(std::begin(by_first_), std::end(by_first_), [](const auto& l) { return l.empty(); });
}

std::vector<AddedMatcher::Segment> AddedMatcher::split(const std::string& s,
                                                      const std::vector<std::pair<size_t, size_t>>* data) const {
  std::vector<Segment> out;
  size_t text_begin = 0, i = 0;
  while (i < s.size()) {
    const AddedToken* hit = nullptr;
    for (const AddedToken* t : by_first_[static_cast<unsigned char>(s[i])]) {
      if (s.compare(i, t->content.size(), t->content) != 0) continue;
      if (t->special && data && std::any_of(data->begin(), data->end(), [&](const auto& r) {
            return i < r.second && i + t->content.size() > r.first;
          })) {
        continue;
      }
      if (t->single_word) {
        const size_t e = i + t->content.size();
        bool bad = false;
        if (i > 0) {
          size_t k = i - 1;
          while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
          bad = is_word_char(utf8_decode_at(s, k));
        }
        if (!bad && e < s.size()) bad = is_word_char(utf8_decode_at(s, e));
        if (bad) continue;
      }
      hit = t;
      break;
    }
    if (!hit) {
      i += utf8_char_len(s, i);
      continue;
    }
    size_t b = i, e = i + hit->content.size();
    if (hit->lstrip) {
      while (b > text_begin) {
        size_t k = b - 1;
        while (k > text_begin && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
        if (!is_unicode_space(utf8_decode_at(s, k))) break;
        b = k;
      }
    }
    if (hit->rstrip) {
      while (e < s.size() && is_unicode_space(utf8_decode_at(s, e))) e += utf8_char_len(s, e);
    }
    if (b > text_begin) out.push_back({text_begin, b, nullptr});
    out.push_back({b, e, hit});
    text_begin = i = e;
  }
  if (text_begin < s.size()) out.push_back({text_begin, s.size(), nullptr});
  return out;
}


// ---- HF side files -----------------------------------------------------------------------------

std::string token_field(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j.at("content").is_string()) return j.at("content").get<std::string>();
  return "";
}

json read_json_if_exists(const std::string& path) {
  if (!fs::exists(path)) return json();
  const std::string text = fs::read_file(path, "tokenizer side file");
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw UserError("'" + path + "' is not valid JSON: " + e.what() +
                    ". Fix: re-save the tokenizer with transformers' save_pretrained or re-download it");
  }
}

}  // namespace scorch::bpe
