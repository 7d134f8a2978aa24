// tiktoken rank files (Llama-3's original/tokenizer.model, qwen.tiktoken, gpt2.tiktoken, ...),
// reproducing the `tiktoken` library's encoding:
//   split on special tokens (only where allowed) -> the pattern's matches, left to right (text it
//   does not match is dropped, as tiktoken drops it) -> each match: its rank if the whole match is a
//   token, else byte-level BPE: start from single bytes and merge the adjacent pair whose joined
//   bytes have the lowest rank (leftmost on ties) until no joined pair is a token.
// The file has no pattern and no special tokens: they come from the known-vocabulary table
// (tiktoken_vocabularies.h, by rank count + sha256), tokenizer.tiktoken_pattern, and a
// tokenizer_config.json / generation_config.json beside the file.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "common/error.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "tokenizer/bpe_common.h"
#include "tokenizer/tiktoken_vocabularies.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

using json = nlohmann::json;
using namespace bpe;

// Ids index the model's embedding: one far beyond any real vocabulary is a damaged file.
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

std::string shorten(std::string_view s) {
  return s.size() <= 40 ? std::string(s) : std::string(s.substr(0, 37)) + "...";
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with padding; false on anything else (bad characters, length, padding).
bool base64_decode(std::string_view in, std::string& out) {
  if (in.empty() || in.size() % 4 != 0) return false;
  size_t pad = 0;
  while (pad < 2 && in[in.size() - 1 - pad] == '=') ++pad;
  for (size_t i = 0; i + pad < in.size(); i += 4) {
    uint32_t v = 0;
    int n = 0;
    for (size_t k = i; k < i + 4 && k < in.size() - pad; ++k, ++n) {
      const int d = base64_value(in[k]);
      if (d < 0) return false;
      v |= static_cast<uint32_t>(d) << (18 - 6 * n);
    }
    out += static_cast<char>(v >> 16);
    if (n >= 3) out += static_cast<char>((v >> 8) & 0xFF);
    if (n == 4) out += static_cast<char>(v & 0xFF);
    if (n < 2) return false;
  }
  return true;
}

class TiktokenTokenizer final : public Tokenizer {
 public:
  TiktokenTokenizer(const std::string& file, const TokenizerOptions& options) : file_(file), options_(options) {
    const std::string text = fs::read_file(file, "tiktoken rank file");
    parse_ranks(text);
    const TiktokenVocabulary* known = find_tiktoken_vocabulary(n_ranks_, sha256_hex(text));
    regex_ = compile_pattern(known);
    if (known) {
      for (const auto& [content, id] : known->special_tokens) {
        AddedToken t;
        t.id = id;
        t.content = content;
        t.special = true;
        added_[id] = t;
      }
    }
    resolve_side_files(known);
  }

  std::vector<int64_t> encode(const std::string& text, bool add_bos) const override {
    std::vector<int64_t> out;
    if (add_bos && add_bos_ && bos_ >= 0) out.push_back(bos_);
    encode_into(text, options_.parse_special, out);
    return out;
  }

  std::vector<int64_t> encode_special(const std::string& text) const override {
    std::vector<int64_t> out;
    encode_into(text, true, out);
    return out;
  }

  std::vector<int64_t> encode_template(const std::string& text, const std::vector<std::pair<size_t, size_t>>& data,
                                       bool continuation) const override {
    (void)continuation;  // no dummy prefix in tiktoken
    std::vector<int64_t> out;
    encode_into(text, true, out, options_.parse_special ? nullptr : &data);
    return out;
  }

  // The rank file as a byte-level BPE tokenizer.json, as transformers' TikTokenConverter writes one:
  // vocab = each rank's bytes through GPT-2's byte-to-character table, id = rank; merges = every
  // split of each token into two tokens, in the order of the rank they make; ignore_merges (a piece
  // that is a whole token is that token, tiktoken's rule); the pattern as a Split pre-tokenizer; the
  // special and added tokens as added_tokens; BOS added as the tokenizer adds it. scorch and
  // `tokenizers` load it to the same ids as this tokenizer (tested).
  std::map<std::string, std::string> hf_export_files() const override {
    std::map<std::string, std::string> files;
    files["tokenizer.json"] = hf_tokenizer_json();
    const std::string config = (std::filesystem::path(file_).parent_path() / "tokenizer_config.json").string();
    if (!fs::exists(config)) {
      // PreTrainedTokenizerFast uses tokenizer.json as it is (a model-specific class such as
      // LlamaTokenizerFast would rewrite its BOS handling).
      nlohmann::json c = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"clean_up_tokenization_spaces", false}};
      const auto piece = [&](int64_t id) { return added_.count(id) ? added_.at(id).content : std::string(); };
      if (bos_ >= 0) c["bos_token"] = piece(bos_);
      if (eos_ >= 0) c["eos_token"] = piece(eos_);
      if (pad_ >= 0) c["pad_token"] = piece(pad_);
      files["tokenizer_config.json"] = c.dump(2) + "\n";
    }
    return files;
  }

  std::string hf_tokenizer_json() const {
    const ByteLevelTable& table = byte_level_table();
    const auto chars = [&](std::string_view bytes) {
      std::string out;
      for (char c : bytes) out += table.byte_to_char[static_cast<unsigned char>(c)];
      return out;
    };
    nlohmann::json vocab = nlohmann::json::object();
    nlohmann::json merges = nlohmann::json::array();
    for (int64_t r = 0; r < n_ranks_; ++r) {
      const std::string_view token = rank_bytes(r);
      vocab[chars(token)] = r;
      // Every split of the token into two tokens, by their ranks: tiktoken merges any adjacent pair
      // whose concatenation is a token, lowest rank first, so each such pair needs a merge, ordered
      // by the rank it makes.
      std::vector<std::pair<int64_t, int64_t>> splits;  // (left rank, right rank)
      for (size_t i = 1; i < token.size(); ++i) {
        const auto left = rank_of_.find(token.substr(0, i));
        const auto right = rank_of_.find(token.substr(i));
        if (left != rank_of_.end() && right != rank_of_.end()) splits.emplace_back(left->second, right->second);
      }
      std::sort(splits.begin(), splits.end());
      for (const auto& [left, right] : splits) merges.push_back(chars(rank_bytes(left)) + " " + chars(rank_bytes(right)));
    }
    nlohmann::json added = nlohmann::json::array();
    for (const auto& [id, t] : added_) {
      added.push_back({{"id", id}, {"content", t.content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", t.special}});
    }
    nlohmann::json post = nullptr;
    if (add_bos_ && bos_ >= 0) {
      const std::string bos = added_.count(bos_) ? added_.at(bos_).content : chars(rank_bytes(bos_));
      const auto special = [&](int type_id) {
        nlohmann::json o = nlohmann::json::object();
        o["SpecialToken"] = {{"id", bos}, {"type_id", type_id}};
        return o;
      };
      const auto sequence = [](const char* id, int type_id) {
        nlohmann::json o = nlohmann::json::object();
        o["Sequence"] = {{"id", id}, {"type_id", type_id}};
        return o;
      };
      post = nlohmann::json::object();
      post["type"] = "TemplateProcessing";
      post["single"] = nlohmann::json::array({special(0), sequence("A", 0)});
      post["pair"] = nlohmann::json::array({special(0), sequence("A", 0), special(1), sequence("B", 1)});
      nlohmann::json entry = nlohmann::json::object();
      entry["id"] = bos;
      entry["ids"] = nlohmann::json::array({bos_});
      entry["tokens"] = nlohmann::json::array({bos});
      post["special_tokens"] = nlohmann::json::object();
      post["special_tokens"][bos] = entry;
    }
    nlohmann::ordered_json j;
    j["version"] = "1.0";
    j["truncation"] = nullptr;
    j["padding"] = nullptr;
    j["added_tokens"] = added;
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Split"}, {"pattern", {{"Regex", pattern_}}}, {"behavior", "Isolated"}, {"invert", false}},
                            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
    j["post_processor"] = post;
    j["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    j["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", true},
                  {"vocab", vocab}, {"merges", merges}};
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

  // Bytes of the tokens, invalid UTF-8 replaced as tiktoken's decode(errors="replace") does; special
  // tokens, ids without a token (holes below a special id) and ids past the vocabulary give nothing.
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string bytes;
    for (int64_t id : ids) {
      if (id < 0) throw std::out_of_range("token id " + std::to_string(id) + " is negative");
      if (id < n_ranks_) {
        bytes.append(rank_bytes(id));
        continue;
      }
      const auto it = added_.find(id);
      if (it != added_.end() && !it->second.special) bytes += it->second.content;
    }
    return utf8_lossy(bytes);
  }

  int64_t vocab_size() const override { return vocab_size_; }
  int64_t bos_id() const override { return bos_; }
  int64_t eos_id() const override { return eos_; }
  int64_t pad_id() const override { return pad_; }
  int64_t unk_id() const override { return -1; }
  std::vector<int64_t> eos_ids() const override { return eos_ids_; }
  std::string source() const override { return file_; }

  int64_t piece_to_id(const std::string& piece) const override {
    for (const auto& [id, t] : added_) if (t.content == piece) return id;
    const auto it = rank_of_.find(piece);
    return it == rank_of_.end() ? -1 : it->second;
  }

  // A rank's raw bytes (not necessarily UTF-8) or a special token's text.
  std::string id_to_piece(int64_t id) const override {
    if (id >= 0 && id < n_ranks_) return std::string(rank_bytes(id));
    const auto it = added_.find(id);
    if (it == added_.end()) {
      throw std::out_of_range("token id " + std::to_string(id) + " is not in the tokenizer's vocabulary [0, " +
                              std::to_string(vocab_size_) + ")");
    }
    return it->second.content;
  }

 private:
  [[noreturn]] void bad_line(size_t line, const std::string& what) const {
    throw UserError("tiktoken rank file '" + file_ + "' line " + std::to_string(line) + ": " + what +
                    ". Fix: re-download the file; a rank file is lines '<base64 token> <rank>' with ranks 0, 1, 2, ... "
                    "in order, each line ending in \\n");
  }

  std::string_view rank_bytes(int64_t rank) const {
    return std::string_view(bytes_).substr(offsets_[static_cast<size_t>(rank)],
                                           offsets_[static_cast<size_t>(rank) + 1] - offsets_[static_cast<size_t>(rank)]);
  }

  // Strict: tiktoken's own loader skips blank lines and lets a later duplicate win; a file that
  // needs either is damaged, and would encode differently from the model's.
  void parse_ranks(const std::string& text) {
    if (text.empty()) throw UserError("tiktoken rank file '" + file_ + "' is empty. Fix: re-download it");
    offsets_.push_back(0);
    size_t pos = 0, line = 0;
    while (pos < text.size()) {
      ++line;
      const size_t nl = text.find('\n', pos);
      if (nl == std::string::npos) bad_line(line, "the last line has no newline: the file is truncated");
      const std::string_view l(text.data() + pos, nl - pos);
      pos = nl + 1;
      if (!l.empty() && l.back() == '\r') bad_line(line, "ends with \\r\\n (Windows line ends; convert with dos2unix)");
      const size_t sp = l.find(' ');
      if (l.empty() || sp == std::string_view::npos || sp == 0 || l.find(' ', sp + 1) != std::string_view::npos) {
        bad_line(line, "'" + shorten(l) + "' is not '<base64 token> <rank>'");
      }
      const std::string_view token = l.substr(0, sp), rank_text = l.substr(sp + 1);
      if (!base64_decode(token, bytes_)) bad_line(line, "token '" + shorten(token) + "' is not valid base64");
      int64_t rank = 0;
      if (rank_text.empty() || rank_text.size() > 8) rank = -1;
      for (char c : rank_text) {
        if (c < '0' || c > '9') rank = -1;
        if (rank >= 0) rank = rank * 10 + (c - '0');
      }
      if (rank < 0 || rank > kMaxTokenId) {
        bad_line(line, "rank '" + shorten(rank_text) + "' is not a number from 0 to " + std::to_string(kMaxTokenId));
      }
      const int64_t expected = static_cast<int64_t>(line) - 1;
      if (rank < expected) bad_line(line, "rank " + std::to_string(rank) + " repeats line " + std::to_string(rank + 1) + "'s rank");
      if (rank > expected) {
        bad_line(line, "rank " + std::to_string(rank) + " skips rank" + (rank == expected + 1 ? " " : "s ") +
                           std::to_string(expected) + (rank == expected + 1 ? "" : "-" + std::to_string(rank - 1)) +
                           " (ranks must be contiguous)");
      }
      offsets_.push_back(bytes_.size());
    }
    n_ranks_ = static_cast<int64_t>(offsets_.size()) - 1;
    rank_of_.reserve(static_cast<size_t>(n_ranks_));
    for (int64_t r = 0; r < n_ranks_; ++r) {
      const auto [it, inserted] = rank_of_.emplace(rank_bytes(r), r);
      if (!inserted) {
        bad_line(static_cast<size_t>(r) + 1,
                 "its token repeats line " + std::to_string(it->second + 1) + "'s token (each token has one rank)");
      }
    }
    for (int b = 0; b < 256; ++b) {
      const char byte = static_cast<char>(b);
      const auto it = rank_of_.find(std::string_view(&byte, 1));
      if (it != rank_of_.end()) {
        byte_rank_[b] = it->second;
      } else {
        char hex[8];
        std::snprintf(hex, sizeof(hex), "0x%02X", b);
        throw UserError("tiktoken rank file '" + file_ + "' has no token for the byte " + hex +
                        ", so text containing it cannot be encoded (every byte needs a rank of its own). Fix: "
                        "re-download the file, or use the model's tokenizer.json");
      }
    }
  }

  std::unique_ptr<Regex> compile_pattern(const TiktokenVocabulary* known) {
    const std::string& setting = options_.tiktoken_pattern;
    std::string pattern;
    if (!setting.empty()) {
      const TiktokenVocabulary* named = tiktoken_vocabulary_named(setting);
      pattern = named ? named->pattern : setting;
    } else if (known) {
      pattern = known->pattern;
    } else {
      std::string names;
      for (const TiktokenVocabulary& v : known_tiktoken_vocabularies()) names += (names.empty() ? "" : ", ") + v.name;
      throw UserError(
          "'" + file_ + "' is a tiktoken rank file (" + std::to_string(n_ranks_) +
          " ranks) that scorch does not recognise, and a rank file carries no pre-tokenizer pattern: its encoding "
          "cannot be known. Fix: point tokenizer.path at the model's tokenizer.json, or set tokenizer.tiktoken_pattern "
          "to the pattern the model was trained with (a regex, or one of " + names +
          "); its special tokens then come from a tokenizer_config.json (added_tokens_decoder) beside the file");
    }
    pattern_ = pattern;
    try {
      return std::make_unique<Regex>(pattern, /*dollar_end_only=*/true);
    } catch (const std::invalid_argument& e) {
      throw UserError(std::string("tokenizer.tiktoken_pattern: ") + e.what() + " (for tiktoken rank file '" + file_ +
                      "'). Fix: write a PCRE2/tiktoken regex, or one of the names in README \"Tokenizers\"");
    }
  }

  // Special and added tokens, BOS/EOS/PAD and stop ids: the known vocabulary's, then
  // tokenizer_config.json (added_tokens_decoder, bos/eos/pad_token, add_bos_token) and
  // generation_config.json (eos_token_id) beside the file, which win.
  void resolve_side_files(const TiktokenVocabulary* known) {
    const std::filesystem::path dir = std::filesystem::path(file_).parent_path();
    const std::string cfg_path = (dir / "tokenizer_config.json").string();
    const json cfg = read_json_if_exists(cfg_path);
    const auto bad = [&](const std::string& path, const std::string& what) {
      throw UserError("'" + path + "': " + what + " (for tiktoken rank file '" + file_ +
                      "'). Fix: use the tokenizer files that came with the model");
    };
    if (cfg.is_object() && cfg.contains("added_tokens_decoder")) {
      const json& list = cfg["added_tokens_decoder"];
      if (!list.is_object()) bad(cfg_path, "added_tokens_decoder is not an object {\"id\": {\"content\": ...}}");
      for (const auto& item : list.items()) {
        const std::string& key = item.key();
        const json& t = item.value();  // named, not a structured binding: lambdas capture it below
        int64_t id = -1;
        try {
          size_t used = 0;
          id = std::stoll(key, &used);
          if (used != key.size()) id = -1;
        } catch (const std::exception&) {
        }
        if (id < 0 || id > kMaxTokenId) bad(cfg_path, "added_tokens_decoder key '" + shorten(key) + "' is not a token id");
        const std::string content = token_field(t);
        if (content.empty()) bad(cfg_path, "added_tokens_decoder[" + key + "] has no \"content\" text");
        if (id < n_ranks_) {
          if (rank_bytes(id) == content) continue;  // the rank's own bytes: already a token
          bad(cfg_path, "added_tokens_decoder[" + key + "] '" + shorten(content) + "' takes the id of rank " + key +
                            " of the rank file, which is another token");
        }
        AddedToken a;
        a.id = id;
        a.content = content;
        const auto flag = [&](const char* name, bool fallback) {
          return t.is_object() && t.contains(name) && t[name].is_boolean() ? t[name].get<bool>() : fallback;
        };
        a.special = flag("special", false);
        a.single_word = flag("single_word", false);
        a.lstrip = flag("lstrip", false);
        a.rstrip = flag("rstrip", false);
        added_[id] = a;
      }
    }
    std::unordered_map<std::string, int64_t> seen;
    for (const auto& [id, t] : added_) {
      const auto [it, inserted] = seen.emplace(t.content, id);
      if (!inserted) bad(cfg_path, "token '" + shorten(t.content) + "' has two ids, " + std::to_string(it->second) + " and " + std::to_string(id));
      if (rank_of_.count(t.content)) {
        bad(cfg_path, "added token '" + shorten(t.content) + "' (id " + std::to_string(id) + ") is also rank " +
                          std::to_string(rank_of_.at(t.content)) + " of the rank file");
      }
    }
    vocab_size_ = n_ranks_;
    for (const auto& [id, t] : added_) vocab_size_ = std::max(vocab_size_, id + 1);
    for (int parse_special = 0; parse_special < 2; ++parse_special) {
      for (const auto& [id, t] : added_) if (parse_special || !t.special) matcher_[parse_special].add(&t);
      matcher_[parse_special].finish();
    }

    const auto id_of = [&](const std::string& content, const std::string& where) {
      const int64_t id = piece_to_id(content);
      if (id < 0) bad(where, "'" + shorten(content) + "' is not a token of this vocabulary");
      return id;
    };
    if (known) {
      if (!known->bos.empty()) bos_ = id_of(known->bos, file_);
      if (!known->eos.empty()) eos_ = id_of(known->eos, file_);
      if (!known->pad.empty()) pad_ = id_of(known->pad, file_);
      add_bos_ = known->add_bos;
    }
    if (cfg.is_object()) {
      const std::pair<const char*, int64_t*> fields[] = {{"bos_token", &bos_}, {"eos_token", &eos_}, {"pad_token", &pad_}};
      for (const auto& [key, target] : fields) {
        if (!cfg.contains(key) || cfg[key].is_null()) continue;
        const std::string content = token_field(cfg[key]);
        if (content.empty()) bad(cfg_path, std::string(key) + " is not a token text");
        *target = id_of(content, cfg_path);
      }
      if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) add_bos_ = cfg["add_bos_token"].get<bool>();
    }
    if (eos_ >= 0) eos_ids_.push_back(eos_);
    if (known) for (const std::string& s : known->stop) eos_ids_.push_back(id_of(s, file_));
    for (int64_t id : generation_config_eos_ids(file_, vocab_size_)) {
      if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
    }
  }

  void encode_into(const std::string& input, bool parse_special, std::vector<int64_t>& out,
                   const std::vector<std::pair<size_t, size_t>>* data = nullptr) const {
    const bool valid = is_valid_utf8(input);
    const std::string text = valid ? input : utf8_lossy(input);  // what tiktoken receives from Python
    if (!valid) data = nullptr;
    for (const auto& seg : matcher_[parse_special ? 1 : 0].split(text, data)) {
      if (seg.token) {
        out.push_back(seg.token->id);
        continue;
      }
      const std::string part = text.substr(seg.b, seg.e - seg.b);
      for (const auto& [b, e] : regex_->find_all(part)) encode_piece(part.substr(b, e - b), out);
    }
  }

  void encode_piece(const std::string& piece, std::vector<int64_t>& out) const {
    const auto whole = rank_of_.find(piece);
    if (whole != rank_of_.end()) {
      out.push_back(whole->second);
      return;
    }
    if (cache_.lookup(piece, out)) return;
    std::vector<BpeSymbol> syms;
    syms.reserve(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) {
      syms.push_back({byte_rank_[static_cast<unsigned char>(piece[i])], static_cast<uint32_t>(i),
                      static_cast<uint32_t>(i + 1)});
    }
    std::vector<int64_t> ids = bpe_merge(syms, [&](const BpeSymbol& l, const BpeSymbol& r) {
      const auto it = rank_of_.find(std::string_view(piece).substr(l.begin, r.end - l.begin));
      return it == rank_of_.end() ? BpeMerge{} : BpeMerge{it->second, it->second};
    });
    out.insert(out.end(), ids.begin(), ids.end());
    cache_.store(piece, std::move(ids));
  }

  std::string file_;
  TokenizerOptions options_;
  std::string bytes_;             // every rank's bytes, back to back
  std::vector<size_t> offsets_;   // rank r = bytes_[offsets_[r], offsets_[r + 1])
  std::unordered_map<std::string_view, int64_t> rank_of_;  // views into bytes_
  int64_t byte_rank_[256] = {};                             // the rank of each single byte
  int64_t n_ranks_ = 0, vocab_size_ = 0;
  std::string pattern_;  // the pre-tokenizer regex in use
  std::unique_ptr<Regex> regex_;
  std::map<int64_t, AddedToken> added_;  // special (and added) tokens by id; pointers stay valid
  AddedMatcher matcher_[2];              // [parse_special]: non-special only / all
  int64_t bos_ = -1, eos_ = -1, pad_ = -1;
  bool add_bos_ = false;
  std::vector<int64_t> eos_ids_;
  BpeCache cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tiktoken_tokenizer(const std::string& file, const TokenizerOptions& options) {
  return std::make_unique<TiktokenTokenizer>(file, options);
}

}  // namespace scorch
