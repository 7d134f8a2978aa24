// tokenizer.json (HuggingFace `tokenizers` format) with model BPE, reproducing the reference
// library's pipeline:
//   split on added tokens (non-normalized ones on the raw text) -> normalizer -> split on the
//   normalized added tokens -> pre-tokenizer -> BPE per pre-token (rank cache) -> ids
// and decoding through the decoder chain. Components outside the supported set fail the load
// with "not supported: <type>" and the JSON path, never a silently different encoding.
//
// Libraries: PCRE2 runs the pre-tokenizer regexes (bpe_common.h); utf8proc (Debian
// libutf8proc-dev, a small C library, the one Julia uses) does NFC/NFKC/NFD/NFKD. The BPE merge
// loop is our own (bpe_common.h, shared with tiktoken): no packaged C++ implementation exists on
// Debian.
#include <utf8proc.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_map>

#include "common/error.h"
#include "common/fs.h"
#include "tokenizer/bpe_common.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

using json = nlohmann::json;
using namespace bpe;

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return s;
  std::string out;
  size_t i = 0;
  for (size_t j; (j = s.find(from, i)) != std::string::npos; i = j + from.size()) {
    out.append(s, i, j - i);
    out += to;
  }
  out.append(s, i, std::string::npos);
  return out;
}

// ---- Errors ----------------------------------------------------------------------------------

struct Ctx {
  std::string file;
  [[noreturn]] void unsupported(const std::string& what, const std::string& path) const {
    throw UserError("tokenizer file '" + file + "': not supported: " + what + " (at JSON path " + path +
                    "). Fix: use a tokenizer.json whose components scorch supports (README \"Tokenizers\"), or "
                    "the model's SentencePiece tokenizer.model");
  }
  [[noreturn]] void bad(const std::string& what, const std::string& path) const {
    throw UserError("tokenizer file '" + file + "': " + what + " (at JSON path " + path +
                    "). Fix: re-save the tokenizer with transformers' save_pretrained or re-download it");
  }
  const json& at(const json& j, const std::string& key, const std::string& path) const {
    if (!j.is_object() || !j.contains(key)) bad("missing key '" + key + "'", path);
    return j.at(key);
  }
  std::string str(const json& j, const std::string& key, const std::string& path) const {
    const json& v = at(j, key, path);
    if (!v.is_string()) bad("'" + key + "' must be a string", path + "/" + key);
    return v.get<std::string>();
  }
  bool flag(const json& j, const std::string& key, bool fallback, const std::string& path) const {
    if (!j.contains(key) || j.at(key).is_null()) return fallback;
    if (!j.at(key).is_boolean()) bad("'" + key + "' must be true or false", path + "/" + key);
    return j.at(key).get<bool>();
  }
};

// ---- Regex / patterns --------------------------------------------------------------------------

std::unique_ptr<Regex> make_regex(const std::string& pattern, const Ctx& ctx, const std::string& path) {
  try {
    return std::make_unique<Regex>(pattern);
  } catch (const std::invalid_argument& e) {
    ctx.bad(e.what(), path);
  }
}

// A Split/Replace pattern: {"String": "..."} or {"Regex": "..."}.
struct Pattern {
  std::string literal;
  std::unique_ptr<Regex> regex;
  void parse(const json& j, const Ctx& ctx, const std::string& path) {
    if (j.is_object() && j.contains("String") && j.at("String").is_string()) {
      literal = j.at("String").get<std::string>();
      if (literal.empty()) ctx.bad("empty String pattern", path);
    } else if (j.is_object() && j.contains("Regex") && j.at("Regex").is_string()) {
      regex = make_regex(j.at("Regex").get<std::string>(), ctx, path + "/Regex");
    } else {
      ctx.bad("a pattern must be {\"String\": ...} or {\"Regex\": ...}", path);
    }
  }
  std::vector<std::pair<size_t, size_t>> find_all(const std::string& s) const {
    if (regex) return regex->find_all(s);
    std::vector<std::pair<size_t, size_t>> out;
    for (size_t i = 0; (i = s.find(literal, i)) != std::string::npos; i += literal.size()) {
      out.emplace_back(i, i + literal.size());
    }
    return out;
  }
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// The reference's split semantics: matches and the gaps between them, then `behavior`.
std::vector<std::string> split_by(const std::string& s, const std::vector<std::pair<size_t, size_t>>& matches,
                                  SplitBehavior behavior, bool invert) {
  struct Part {
    size_t b, e;
    bool match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (const auto& [b, e] : matches) {
    if (b > prev) parts.push_back({prev, b, false});
    parts.push_back({b, e, true});
    prev = e;
  }
  if (prev < s.size()) parts.push_back({prev, s.size(), false});
  if (invert) for (Part& p : parts) p.match = !p.match;
  std::vector<Part> out;
  switch (behavior) {
    case SplitBehavior::Removed:
      for (const Part& p : parts) if (!p.match) out.push_back(p);
      break;
    case SplitBehavior::Isolated:
      out = parts;
      break;
    case SplitBehavior::MergedWithPrevious: {
      bool previous_match = false;
      for (const Part& p : parts) {
        if (p.match && !previous_match && !out.empty()) out.back().e = p.e;
        else out.push_back(p);
        previous_match = p.match;
      }
      break;
    }
    case SplitBehavior::MergedWithNext: {
      bool previous_match = false;
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->match && !previous_match && !out.empty()) out.back().b = it->b;
        else out.push_back(*it);
        previous_match = it->match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::Contiguous: {
      bool previous_match = false;
      for (const Part& p : parts) {
        if (p.match == previous_match && !out.empty()) out.back().e = p.e;
        else out.push_back(p);
        previous_match = p.match;
      }
      break;
    }
  }
  std::vector<std::string> pieces;
  for (const Part& p : out) if (p.e > p.b) pieces.push_back(s.substr(p.b, p.e - p.b));
  return pieces;
}

SplitBehavior parse_behavior(const std::string& name, const Ctx& ctx, const std::string& path) {
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  ctx.unsupported("split behavior '" + name + "'", path);
}

// "always" | "first" | "never" from a Metaspace's prepend_scheme (or legacy add_prefix_space).
std::string prepend_scheme(const json& j, const Ctx& ctx, const std::string& path) {
  if (j.contains("prepend_scheme") && j.at("prepend_scheme").is_string()) {
    const std::string s = j.at("prepend_scheme").get<std::string>();
    if (s != "always" && s != "first" && s != "never") ctx.unsupported("Metaspace prepend_scheme '" + s + "'", path);
    return s;
  }
  return ctx.flag(j, "add_prefix_space", true, path) ? "always" : "never";
}

std::string metaspace_replacement(const json& j, const Ctx& ctx, const std::string& path) {
  if (!j.contains("replacement")) return "\xE2\x96\x81";  // ▁
  return ctx.str(j, "replacement", path);
}

// ---- Normalizers -------------------------------------------------------------------------------

class Normalizer {
 public:
  void parse(const json& j, const Ctx& ctx, const std::string& path) {
    if (j.is_null()) return;
    const std::string type = ctx.str(j, "type", path);
    if (type == "Sequence") {
      const json& list = ctx.at(j, "normalizers", path);
      for (size_t i = 0; i < list.size(); ++i) parse(list[i], ctx, path + "/normalizers/" + std::to_string(i));
      return;
    }
    Step step;
    step.type = type;
    if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD") {
    } else if (type == "Prepend") {
      step.a = ctx.str(j, "prepend", path);
    } else if (type == "Replace") {
      step.pattern = std::make_shared<Pattern>();
      step.pattern->parse(ctx.at(j, "pattern", path), ctx, path + "/pattern");
      step.a = ctx.str(j, "content", path);
    } else if (type == "Strip") {
      step.left = ctx.flag(j, "strip_left", false, path);
      step.right = ctx.flag(j, "strip_right", false, path);
    } else {
      ctx.unsupported("normalizer type '" + type + "'", path);
    }
    steps_.push_back(std::move(step));
  }

  bool empty() const { return steps_.empty(); }

  // `continuation`: `s` continues earlier text, so Prepend adds nothing.
  std::string apply(std::string s, bool continuation = false) const {
    for (const Step& st : steps_) {
      if (st.type == "Prepend") {
        if (!s.empty() && !continuation) s = st.a + s;
      } else if (st.type == "Replace") {
        const auto matches = st.pattern->find_all(s);
        std::string out;
        size_t prev = 0;
        for (const auto& [b, e] : matches) {
          out.append(s, prev, b - prev);
          out += st.a;
          prev = e;
        }
        out.append(s, prev, std::string::npos);
        s = std::move(out);
      } else if (st.type == "Strip") {
        size_t b = 0, e = s.size();
        if (st.left) while (b < e && is_unicode_space(utf8_decode_at(s, b))) b += utf8_char_len(s, b);
        if (st.right) {
          while (e > b) {
            size_t k = e - 1;
            while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
            if (!is_unicode_space(utf8_decode_at(s, k))) break;
            e = k;
          }
        }
        s = s.substr(b, e - b);
      } else {
        const utf8proc_option_t opt = static_cast<utf8proc_option_t>(
            UTF8PROC_STABLE | (st.type == "NFC" || st.type == "NFKC" ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
            (st.type == "NFKC" || st.type == "NFKD" ? UTF8PROC_COMPAT : 0));
        utf8proc_uint8_t* out = nullptr;
        const utf8proc_ssize_t n =
            utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                         &out, opt);
        if (n < 0) throw std::runtime_error(std::string("utf8proc normalization failed: ") + utf8proc_errmsg(n));
        s.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
        std::free(out);
      }
    }
    return s;
  }

 private:
  struct Step {
    std::string type, a;
    std::shared_ptr<Pattern> pattern;
    bool left = false, right = false;
  };
  std::vector<Step> steps_;
};

// ---- Pre-tokenizers ----------------------------------------------------------------------------

const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class PreTokenizer {
 public:
  void parse(const json& j, const Ctx& ctx, const std::string& path) {
    if (j.is_null()) return;
    const std::string type = ctx.str(j, "type", path);
    if (type == "Sequence") {
      const json& list = ctx.at(j, "pretokenizers", path);
      for (size_t i = 0; i < list.size(); ++i) parse(list[i], ctx, path + "/pretokenizers/" + std::to_string(i));
      return;
    }
    auto step = std::make_shared<Step>();
    step->type = type;
    if (type == "Split") {
      step->pattern.parse(ctx.at(j, "pattern", path), ctx, path + "/pattern");
      step->behavior = parse_behavior(ctx.str(j, "behavior", path), ctx, path + "/behavior");
      step->invert = ctx.flag(j, "invert", false, path);
    } else if (type == "ByteLevel") {
      step->add_prefix_space = ctx.flag(j, "add_prefix_space", false, path);
      if (ctx.flag(j, "use_regex", true, path)) {
        step->pattern.regex = make_regex(kGpt2Pattern, ctx, path);
      }
      byte_level_ = true;
    } else if (type == "Digits") {
      step->invert = ctx.flag(j, "individual_digits", false, path);  // reused as "individual"
      step->pattern.regex = make_regex(step->invert ? "\\p{N}" : "\\p{N}+", ctx, path);
    } else if (type == "Metaspace") {
      step->replacement = metaspace_replacement(j, ctx, path);
      step->scheme = prepend_scheme(j, ctx, path);
      step->split = ctx.flag(j, "split", true, path);
    } else {
      ctx.unsupported("pre_tokenizer type '" + type + "'", path);
    }
    steps_.push_back(step);
  }

  bool byte_level() const { return byte_level_; }

  // `first`: this text starts the input (Metaspace's prepend_scheme "first"); `continuation`: it
  // continues earlier text, so Metaspace prepends nothing to its first piece.
  void apply(const std::string& s, bool first, bool continuation, std::vector<std::string>& out) const {
    std::vector<std::string> pieces{s}, next;
    for (const auto& st : steps_) {
      next.clear();
      for (size_t i = 0; i < pieces.size(); ++i) {
        const std::string& p = pieces[i];
        if (st->type == "Split") {
          auto parts = split_by(p, st->pattern.find_all(p), st->behavior, st->invert);
          next.insert(next.end(), parts.begin(), parts.end());
        } else if (st->type == "Digits") {
          auto parts = split_by(p, st->pattern.find_all(p), SplitBehavior::Isolated, false);
          next.insert(next.end(), parts.begin(), parts.end());
        } else if (st->type == "ByteLevel") {
          std::string q = (st->add_prefix_space && (p.empty() || p[0] != ' ')) ? " " + p : p;
          std::vector<std::string> parts =
              st->pattern.regex ? split_by(q, st->pattern.find_all(q), SplitBehavior::Isolated, false)
                                : std::vector<std::string>{q};
          const ByteLevelTable& t = byte_level_table();
          for (const std::string& part : parts) {
            std::string mapped;
            mapped.reserve(part.size() * 2);
            for (unsigned char c : part) mapped += t.byte_to_char[c];
            next.push_back(std::move(mapped));
          }
        } else {  // Metaspace
          std::string q = replace_all(p, " ", st->replacement);
          const bool prepend = !(continuation && i == 0) &&
                               (st->scheme == "always" || (st->scheme == "first" && first && i == 0));
          if (prepend && q.compare(0, st->replacement.size(), st->replacement) != 0) q = st->replacement + q;
          if (st->split) {
            std::vector<std::pair<size_t, size_t>> m;
            for (size_t k = 0; (k = q.find(st->replacement, k)) != std::string::npos; k += st->replacement.size()) {
              m.emplace_back(k, k + st->replacement.size());
            }
            auto parts = split_by(q, m, SplitBehavior::MergedWithNext, false);
            next.insert(next.end(), parts.begin(), parts.end());
          } else if (!q.empty()) {
            next.push_back(std::move(q));
          }
        }
      }
      pieces.swap(next);
    }
    for (std::string& p : pieces) if (!p.empty()) out.push_back(std::move(p));
  }

 private:
  struct Step {
    std::string type, replacement, scheme;
    Pattern pattern;
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool invert = false, add_prefix_space = false, split = true;
  };
  std::vector<std::shared_ptr<Step>> steps_;
  bool byte_level_ = false;
};

// ---- Decoders ----------------------------------------------------------------------------------

class Decoder {
 public:
  void parse(const json& j, const Ctx& ctx, const std::string& path) {
    if (j.is_null()) return;
    const std::string type = ctx.str(j, "type", path);
    if (type == "Sequence") {
      const json& list = ctx.at(j, "decoders", path);
      for (size_t i = 0; i < list.size(); ++i) parse(list[i], ctx, path + "/decoders/" + std::to_string(i));
      return;
    }
    Step st;
    st.type = type;
    if (type == "ByteLevel" || type == "ByteFallback" || type == "Fuse") {
    } else if (type == "Metaspace") {
      st.a = metaspace_replacement(j, ctx, path);
      st.b = prepend_scheme(j, ctx, path);
    } else if (type == "Replace") {
      const json& p = ctx.at(j, "pattern", path);
      if (!p.is_object() || !p.contains("String")) ctx.unsupported("Replace decoder with a Regex pattern", path);
      st.a = p.at("String").get<std::string>();
      st.b = ctx.str(j, "content", path);
    } else if (type == "Strip") {
      st.a = ctx.str(j, "content", path);
      st.start = ctx.at(j, "start", path).get<int>();
      st.stop = ctx.at(j, "stop", path).get<int>();
    } else {
      ctx.unsupported("decoder type '" + type + "'", path);
    }
    steps_.push_back(st);
  }

  std::string apply(std::vector<std::string> tokens) const {
    for (const Step& st : steps_) {
      if (st.type == "ByteLevel") {
        const ByteLevelTable& t = byte_level_table();
        std::string bytes;
        for (const std::string& tok : tokens) {
          std::string mapped;
          bool ok = true;
          for (size_t i = 0; i < tok.size() && ok; i += utf8_char_len(tok, i)) {
            const auto it = t.char_to_byte.find(utf8_decode_at(tok, i));
            if (it == t.char_to_byte.end()) ok = false;
            else mapped += static_cast<char>(it->second);
          }
          bytes += ok ? mapped : tok;
        }
        tokens = {utf8_lossy(bytes)};
      } else if (st.type == "ByteFallback") {
        std::vector<std::string> out;
        std::string pending;
        size_t pending_n = 0;
        const auto flush = [&] {
          if (pending_n == 0) return;
          if (is_valid_utf8(pending)) out.push_back(pending);
          else for (size_t k = 0; k < pending_n; ++k) out.push_back("\xEF\xBF\xBD");
          pending.clear();
          pending_n = 0;
        };
        for (const std::string& tok : tokens) {
          if (tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' && std::isxdigit(tok[3]) &&
              std::isxdigit(tok[4])) {
            pending += static_cast<char>(std::stoi(tok.substr(3, 2), nullptr, 16));
            ++pending_n;
          } else {
            flush();
            out.push_back(tok);
          }
        }
        flush();
        tokens.swap(out);
      } else if (st.type == "Metaspace") {
        for (size_t i = 0; i < tokens.size(); ++i) {
          std::string t = replace_all(tokens[i], st.a, " ");
          if (i == 0 && st.b != "never" && !t.empty() && t[0] == ' ') t.erase(0, 1);
          tokens[i] = std::move(t);
        }
      } else if (st.type == "Fuse") {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens = {all};
      } else if (st.type == "Replace") {
        for (std::string& t : tokens) t = replace_all(t, st.a, st.b);
      } else if (st.type == "Strip") {
        for (std::string& t : tokens) {
          for (int k = 0; k < st.start && t.compare(0, st.a.size(), st.a) == 0; ++k) t.erase(0, st.a.size());
          for (int k = 0; k < st.stop && t.size() >= st.a.size() &&
                          t.compare(t.size() - st.a.size(), st.a.size(), st.a) == 0;
               ++k) {
            t.erase(t.size() - st.a.size());
          }
        }
      }
    }
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
  }

 private:
  struct Step {
    std::string type, a, b;
    int start = 0, stop = 0;
  };
  std::vector<Step> steps_;
};

// ---- The tokenizer -----------------------------------------------------------------------------

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(const std::string& text, const std::string& file, const TokenizerOptions& options) : options_(options) {
    ctx_.file = file;
    json j;
    try {
      j = json::parse(text);
    } catch (const json::exception& e) {
      throw UserError("tokenizer file '" + file + "' is not valid JSON (truncated or damaged?): " + e.what() +
                      ". Fix: re-download it, or re-save the tokenizer with transformers' save_pretrained");
    }
    if (!j.is_object()) ctx_.bad("the top level must be a JSON object", "/");
    if (j.contains("truncation") && !j["truncation"].is_null()) ctx_.unsupported("truncation settings", "/truncation");
    if (j.contains("padding") && !j["padding"].is_null()) ctx_.unsupported("padding settings", "/padding");
    // The parsers below check what they read; a value of another JSON type that slips past them
    // (a string where a number belongs, an object for a list) is the same damaged-file error.
    try {
      parse_model(ctx_.at(j, "model", "/"), "/model");
      normalizer_.parse(j.value("normalizer", json()), ctx_, "/normalizer");
      pre_tokenizer_.parse(j.value("pre_tokenizer", json()), ctx_, "/pre_tokenizer");
      decoder_.parse(j.value("decoder", json()), ctx_, "/decoder");
      parse_added(j.value("added_tokens", json::array()), "/added_tokens");
      parse_post_processor(j.value("post_processor", json()), "/post_processor");
    } catch (const json::exception& e) {
      ctx_.bad(std::string("a field has the wrong type (") + e.what() + ")", "/");
    }
    resolve_special_tokens(std::filesystem::path(file).parent_path().string());
  }

  std::vector<int64_t> encode(const std::string& text, bool add_bos) const override {
    std::vector<int64_t> out;
    if (add_bos) out = prefix_ids_;
    encode_into(text, options_.parse_special, out);
    if (add_bos) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
    return out;
  }

  std::vector<int64_t> encode_special(const std::string& text) const override {
    std::vector<int64_t> out;
    encode_into(text, true, out);
    return out;
  }

  std::vector<int64_t> encode_template(const std::string& text, const std::vector<std::pair<size_t, size_t>>& data,
                                       bool continuation) const override {
    std::vector<int64_t> out;
    encode_into(text, true, out, options_.parse_special ? nullptr : &data, continuation);
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int64_t id : ids) {
      checked(id);
      const auto it = added_by_id_.find(id);
      if (it != added_by_id_.end()) {
        if (it->second->special) continue;
        tokens.push_back(it->second->content);
      } else {
        tokens.push_back(id_to_token_[static_cast<size_t>(id)]);
      }
    }
    return decoder_.apply(std::move(tokens));
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(id_to_token_.size()); }
  int64_t bos_id() const override { return bos_; }
  int64_t eos_id() const override { return eos_; }
  int64_t pad_id() const override { return pad_; }
  int64_t unk_id() const override { return unk_; }
  std::vector<int64_t> eos_ids() const override { return eos_ids_; }
  std::string source() const override { return ctx_.file; }

  int64_t piece_to_id(const std::string& piece) const override {
    for (const AddedToken& t : added_) if (t.content == piece) return t.id;
    const auto it = vocab_.find(piece);
    return it == vocab_.end() ? -1 : it->second;
  }

  std::string id_to_piece(int64_t id) const override {
    checked(id);
    const auto it = added_by_id_.find(id);
    return it != added_by_id_.end() ? it->second->content : id_to_token_[static_cast<size_t>(id)];
  }

 private:
  void checked(int64_t id) const {
    if (id < 0 || id >= vocab_size() || (!has_id_[static_cast<size_t>(id)])) {
      throw std::out_of_range("token id " + std::to_string(id) + " is not in the tokenizer's vocabulary [0, " +
                              std::to_string(vocab_size()) + ")");
    }
  }

  // An id indexes id_to_token_ here and an embedding row in the model: one far beyond any real
  // vocabulary (the largest in use has 262,144 tokens) is a damaged file, not gigabytes to allocate.
  static constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

  int64_t token_id(const json& v, const std::string& what, const std::string& path) const {
    const bool ok = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(kMaxTokenId)
                                           : v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= kMaxTokenId;
    if (!ok) ctx_.bad(what + " has no valid id (an integer from 0 to " + std::to_string(kMaxTokenId) + ")", path);
    return v.get<int64_t>();
  }

  void set_token(int64_t id, const std::string& token) {
    if (static_cast<size_t>(id) >= id_to_token_.size()) {
      id_to_token_.resize(static_cast<size_t>(id) + 1);
      has_id_.resize(static_cast<size_t>(id) + 1, false);
    }
    id_to_token_[static_cast<size_t>(id)] = token;
    has_id_[static_cast<size_t>(id)] = true;
  }

  void parse_model(const json& m, const std::string& path) {
    const std::string type = m.value("type", std::string("BPE"));
    if (type != "BPE") ctx_.unsupported("model type '" + type + "' (only BPE)", path + "/type");
    if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"].get<double>() != 0.0) {
      ctx_.unsupported("BPE dropout", path + "/dropout");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (m.contains(key) && m[key].is_string() && !m[key].get<std::string>().empty()) {
        ctx_.unsupported(std::string("BPE ") + key, path + "/" + key);
      }
    }
    byte_fallback_ = ctx_.flag(m, "byte_fallback", false, path);
    fuse_unk_ = ctx_.flag(m, "fuse_unk", false, path);
    ignore_merges_ = ctx_.flag(m, "ignore_merges", false, path);
    const json& vocab = ctx_.at(m, "vocab", path);
    if (!vocab.is_object()) ctx_.bad("the BPE vocab must be an object {token: id}", path + "/vocab");
    vocab_.reserve(vocab.size());
    for (const auto& [token, id] : vocab.items()) {
      vocab_[token] = token_id(id, "token '" + token + "'", path + "/vocab");
      set_token(vocab_[token], token);
    }
    const json& merges = ctx_.at(m, "merges", path);
    merges_.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
      const json& mj = merges[r];
      std::string a, b;
      if (mj.is_string()) {
        const std::string s = mj.get<std::string>();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos) ctx_.bad("merge '" + s + "' is not two tokens", path + "/merges/" + std::to_string(r));
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
        a = mj[0].get<std::string>();
        b = mj[1].get<std::string>();
      } else {
        ctx_.bad("a merge must be \"a b\" or [\"a\", \"b\"]", path + "/merges/" + std::to_string(r));
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b), ic = vocab_.find(a + b);
      for (const auto& [it, name] : {std::pair{ia, a}, std::pair{ib, b}, std::pair{ic, a + b}}) {
        if (it == vocab_.end()) {
          ctx_.bad("merge #" + std::to_string(r) + " (\"" + a + "\", \"" + b + "\") names token '" + name +
                       "', which is not in the vocab",
                   path + "/merges/" + std::to_string(r));
        }
      }
      merges_.emplace(pair_key(ia->second, ib->second), std::pair<int32_t, int32_t>{static_cast<int32_t>(r),
                                                                                    static_cast<int32_t>(ic->second)});
    }
    if (m.contains("unk_token") && m["unk_token"].is_string()) {
      const auto it = vocab_.find(m["unk_token"].get<std::string>());
      if (it != vocab_.end()) unk_ = it->second;
    }
    if (byte_fallback_) {
      for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        const auto it = vocab_.find(name);
        byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
      }
    }
  }

  void parse_added(const json& list, const std::string& path) {
    added_.reserve(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string p = path + "/" + std::to_string(i);
      const json& t = list[i];
      AddedToken a;
      a.id = token_id(ctx_.at(t, "id", p), "added token", p);
      a.content = ctx_.str(t, "content", p);
      a.single_word = ctx_.flag(t, "single_word", false, p);
      a.lstrip = ctx_.flag(t, "lstrip", false, p);
      a.rstrip = ctx_.flag(t, "rstrip", false, p);
      a.special = ctx_.flag(t, "special", false, p);
      a.normalized = ctx_.flag(t, "normalized", !a.special, p);
      set_token(a.id, a.content);
      added_.push_back(a);
    }
    for (const AddedToken& a : added_) added_by_id_[a.id] = &a;
    for (int parse_special = 0; parse_special < 2; ++parse_special) {
      for (const AddedToken& a : added_) {
        if (a.special && !parse_special) continue;
        (a.normalized && !normalizer_.empty() ? normalized_[parse_special] : raw_[parse_special]).add(&a);
      }
      raw_[parse_special].finish();
      normalized_[parse_special].finish();
    }
  }

  int64_t special_id(const std::string& content, const std::string& path) const {
    const int64_t id = piece_to_id(content);
    if (id < 0) ctx_.bad("special token '" + content + "' is not in the vocabulary", path);
    return id;
  }

  void parse_post_processor(const json& j, const std::string& path) {
    if (j.is_null()) return;
    const std::string type = ctx_.str(j, "type", path);
    if (type == "Sequence") {
      const json& list = ctx_.at(j, "processors", path);
      for (size_t i = 0; i < list.size(); ++i) parse_post_processor(list[i], path + "/processors/" + std::to_string(i));
    } else if (type == "ByteLevel") {
      // Only adjusts offsets; ids are unchanged.
    } else if (type == "TemplateProcessing") {
      const json& single = ctx_.at(j, "single", path);
      bool seen_a = false;
      for (size_t i = 0; i < single.size(); ++i) {
        const json& piece = single[i];
        if (piece.contains("Sequence")) {
          if (seen_a) ctx_.unsupported("a single-sequence template with two sequences", path + "/single");
          seen_a = true;
        } else if (piece.contains("SpecialToken")) {
          const std::string name = ctx_.str(piece["SpecialToken"], "id", path + "/single/" + std::to_string(i));
          const json& specials = ctx_.at(j, "special_tokens", path);
          std::vector<int64_t> ids;
          if (specials.contains(name) && specials[name].contains("ids")) ids = specials[name]["ids"].get<std::vector<int64_t>>();
          else ids = {special_id(name, path + "/single/" + std::to_string(i))};
          for (int64_t id : ids) {
            if (id < 0 || id >= vocab_size() || !has_id_[static_cast<size_t>(id)]) {
              ctx_.bad("special token '" + name + "' has id " + std::to_string(id) + ", which is not in the vocabulary",
                       path + "/special_tokens");
            }
          }
          auto& target = seen_a ? suffix_ids_ : prefix_ids_;
          target.insert(target.end(), ids.begin(), ids.end());
        } else {
          ctx_.bad("a template piece must be a Sequence or a SpecialToken", path + "/single/" + std::to_string(i));
        }
      }
    } else {
      ctx_.unsupported("post_processor type '" + type + "'", path);
    }
  }

  // BOS/EOS/PAD from tokenizer_config.json, else special_tokens_map.json, else
  // generation_config.json; every eos_token_id of generation_config.json is a stop id.
  void resolve_special_tokens(const std::string& dir) {
    const std::string cfg_path = (std::filesystem::path(dir) / "tokenizer_config.json").string();
    const std::string map_path = (std::filesystem::path(dir) / "special_tokens_map.json").string();
    const std::string gen_path = (std::filesystem::path(dir) / "generation_config.json").string();
    const json cfg = read_json_if_exists(cfg_path), map = read_json_if_exists(map_path),
               gen = read_json_if_exists(gen_path);
    const auto lookup = [&](const std::string& key, const std::string& gen_key) -> int64_t {
      for (const auto* src : {&cfg, &map}) {
        if (src->is_object() && src->contains(key)) {
          const std::string content = token_field((*src)[key]);
          if (content.empty()) continue;
          const int64_t id = piece_to_id(content);
          if (id < 0) {
            throw UserError("'" + (src == &cfg ? cfg_path : map_path) + "': " + key + " '" + content +
                            "' is not a token of '" + ctx_.file + "'. Fix: use the tokenizer files that came with the model");
          }
          return id;
        }
      }
      if (gen.is_object() && gen.contains(gen_key)) {
        const json& v = gen[gen_key];
        if (v.is_number_integer()) return v.get<int64_t>();
        if (v.is_array() && !v.empty() && v[0].is_number_integer()) return v[0].get<int64_t>();
      }
      return -1;
    };
    bos_ = lookup("bos_token", "bos_token_id");
    eos_ = lookup("eos_token", "eos_token_id");
    pad_ = lookup("pad_token", "pad_token_id");
    if (unk_ < 0) unk_ = lookup("unk_token", "unk_token_id");
    if (eos_ >= 0) eos_ids_.push_back(eos_);
    for (int64_t id : generation_config_eos_ids(ctx_.file, vocab_size())) {
      if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
    }
    // A tokenizer_config.json asking for BOS without a post-processor that adds it.
    if (prefix_ids_.empty() && bos_ >= 0 && cfg.is_object() && cfg.value("add_bos_token", false)) prefix_ids_ = {bos_};
  }

  static uint64_t pair_key(int64_t a, int64_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint64_t>(b); }

  // `continuation`: text at offset 0 continues earlier text (no Prepend / Metaspace prefix there).
  void encode_into(const std::string& input, bool parse_special, std::vector<int64_t>& out,
                   const std::vector<std::pair<size_t, size_t>>* data = nullptr, bool continuation = false) const {
    const bool valid = is_valid_utf8(input);
    const std::string text = valid ? input : utf8_lossy(input);
    if (!valid) data = nullptr;  // offsets moved; template text from scorch is always valid UTF-8
    const int k = parse_special ? 1 : 0;
    bool first = true;
    for (const auto& seg : raw_[k].split(text, data)) {
      if (seg.token) {
        out.push_back(seg.token->id);
        first = false;
        continue;
      }
      const bool continues = continuation && seg.b == 0;
      const std::string normalized = normalizer_.apply(text.substr(seg.b, seg.e - seg.b), continues);
      for (const auto& inner : normalized_[k].split(normalized)) {
        if (inner.token) {
          out.push_back(inner.token->id);
        } else {
          std::vector<std::string> pieces;
          pre_tokenizer_.apply(normalized.substr(inner.b, inner.e - inner.b), first && seg.b == 0 && inner.b == 0,
                               continues && inner.b == 0, pieces);
          for (const std::string& p : pieces) bpe(p, out);
        }
        first = false;
      }
    }
  }

  // One pre-token through the BPE model, cached.
  void bpe(const std::string& word, std::vector<int64_t>& out) const {
    if (ignore_merges_) {
      const auto it = vocab_.find(word);
      if (it != vocab_.end()) {
        out.push_back(it->second);
        return;
      }
    }
    if (cache_.lookup(word, out)) return;
    std::vector<int64_t> ids = bpe_uncached(word);
    out.insert(out.end(), ids.begin(), ids.end());
    cache_.store(word, std::move(ids));
  }

  // Symbols = the word's characters (or their byte-fallback bytes, or unk), merged by the merges'
  // line order.
  std::vector<int64_t> bpe_uncached(const std::string& word) const {
    std::vector<BpeSymbol> syms;
    syms.reserve(word.size());
    bool last_unk = false;
    for (size_t i = 0; i < word.size();) {
      const size_t n = utf8_char_len(word, i);
      const auto b = static_cast<uint32_t>(i), e = static_cast<uint32_t>(i + n);
      const auto it = vocab_.find(word.substr(i, n));
      if (it != vocab_.end()) {
        syms.push_back({it->second, b, e});
        last_unk = false;
      } else if (byte_fallback_ && std::all_of(word.begin() + i, word.begin() + i + n, [&](char c) {
                   return byte_ids_[static_cast<unsigned char>(c)] >= 0;
                 })) {
        for (size_t k = 0; k < n; ++k) {
          syms.push_back({byte_ids_[static_cast<unsigned char>(word[i + k])], static_cast<uint32_t>(i + k),
                          static_cast<uint32_t>(i + k + 1)});
        }
        last_unk = false;
      } else if (unk_ >= 0) {
        if (!(fuse_unk_ && last_unk)) syms.push_back({unk_, b, e});
        last_unk = true;
      }
      i += n;
    }
    return bpe_merge(syms, [&](const BpeSymbol& l, const BpeSymbol& r) {
      const auto it = merges_.find(pair_key(l.id, r.id));
      return it == merges_.end() ? BpeMerge{} : BpeMerge{it->second.first, it->second.second};
    });
  }


  TokenizerOptions options_;
  Ctx ctx_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  int64_t byte_ids_[256] = {};
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  Decoder decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<int64_t, const AddedToken*> added_by_id_;
  AddedMatcher raw_[2], normalized_[2];  // [parse_special]
  std::vector<int64_t> prefix_ids_, suffix_ids_, eos_ids_;
  int64_t bos_ = -1, eos_ = -1, pad_ = -1, unk_ = -1;
  BpeCache cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& file, const TokenizerOptions& options) {
  return std::make_unique<HfTokenizer>(fs::read_file(file, "tokenizer file"), file, options);
}

std::unique_ptr<Tokenizer> parse_hf_tokenizer(const std::string& json_text, const std::string& file,
                                              const TokenizerOptions& options) {
  return std::make_unique<HfTokenizer>(json_text, file, options);
}

}  // namespace scorch
