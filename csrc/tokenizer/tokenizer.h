// The Tokenizer interface (text <-> token ids, special-token ids) and its loader. Three
// implementations, picked from the model directory by load_tokenizer():
//   tokenizer.json   HuggingFace `tokenizers` format, model BPE (byte-level as GPT-2/Qwen2/Llama-3,
//                    or SentencePiece-style with byte fallback as Llama-2/Mistral/Phi-3);
//                    hf_tokenizer.cpp, with special tokens from tokenizer_config.json,
//                    special_tokens_map.json and generation_config.json beside it.
//   tokenizer.model  SentencePiece (libsentencepiece); sentencepiece_tokenizer.cpp. Or a tiktoken
//                    rank file under that name (Llama-3's original/tokenizer.model), recognised by
//                    its content.
//   *.tiktoken       tiktoken rank files (qwen.tiktoken, gpt2.tiktoken); tiktoken_tokenizer.cpp,
//                    pattern and special tokens from tiktoken_vocabularies.h or the options.
// Their headers stay in the .cpp files so including this file costs nothing.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace scorch {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Plain encoding of `text`. add_bos adds what the tokenizer adds around one sequence (BOS for
  // SentencePiece and Llama-style tokenizer.json post-processors; nothing for Qwen2). Special
  // tokens written literally in `text` ("<|im_end|>") stay text unless the tokenizer was loaded
  // with parse_special; non-special added tokens and SentencePiece user-defined pieces are matched.
  virtual std::vector<int64_t> encode(const std::string& text, bool add_bos = false) const = 0;
  // Like encode(text) but special-token text always becomes its control id: for template markup
  // written by scorch (chat templates), never for user data.
  virtual std::vector<int64_t> encode_special(const std::string& text) const { return encode(text); }
  // A rendered chat template: special-token text is matched except inside the `data` byte ranges
  // [begin, end) (message text), where it is matched only with parse_special. `continuation`: the
  // text continues text already encoded (no special token in between), so a SentencePiece-style
  // dummy prefix ("▁") is not added at its start, as when the whole rendering is encoded at once.
  virtual std::vector<int64_t> encode_template(const std::string& text,
                                               const std::vector<std::pair<size_t, size_t>>& data,
                                               bool continuation = false) const {
    (void)data;
    (void)continuation;
    return encode_special(text);
  }
  // Files (name -> content) an export writes in place of this tokenizer's own file when that file is
  // not one transformers reads (a tiktoken rank file: a tokenizer.json that encodes the same, and a
  // tokenizer_config.json when none is beside the file); empty when the files are copied as they are.
  virtual std::map<std::string, std::string> hf_export_files() const { return {}; }
  // Inverse of encode; control tokens (bos/eos/pad, special added tokens) and ids at or above
  // vocab_size() (a model's padded embedding rows) decode to nothing; a negative id throws.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t bos_id() const = 0;  // -1 if the model has none
  virtual int64_t eos_id() const = 0;  // -1 if the model has none
  virtual int64_t pad_id() const = 0;  // -1 if the model has none (callers then pad with eos_id)
  virtual int64_t unk_id() const = 0;
  // Every id that ends generation: eos_id and generation_config.json's eos_token_id list.
  virtual std::vector<int64_t> eos_ids() const {
    return eos_id() >= 0 ? std::vector<int64_t>{eos_id()} : std::vector<int64_t>{};
  }
  // Id of a vocabulary piece ("<|im_end|>", "</s>", "▁the"), or -1 if absent.
  virtual int64_t piece_to_id(const std::string& piece) const = 0;
  // The vocabulary piece of an id ("<0x0A>" for a byte-fallback newline). Throws on a bad id.
  virtual std::string id_to_piece(int64_t id) const = 0;
  // The file it was loaded from.
  virtual std::string source() const { return ""; }
};

struct TokenizerOptions {
  // Turn special-token text inside encode()'s input into control ids (HF's default). Off by
  // default so user data cannot inject "<|im_end|>" or "<|endoftext|>" control tokens.
  bool parse_special = false;
  // Extra variables for the model's own chat template (tokenizer.chat_template_kwargs), a JSON object.
  std::string chat_template_kwargs = "{}";
  // A tiktoken rank file's pre-tokenizer regex, or a known vocabulary's name whose pattern to use
  // (llama3, qwen, r50k_base, ...); empty = the pattern of the recognised vocabulary. Refused for
  // other tokenizers.
  std::string tiktoken_pattern;
};

// Loads `path` = a tokenizer.json, tokenizer.model, *.tiktoken, or a directory holding one
// (tokenizer.json is preferred, then tokenizer.model, then a single *.tiktoken). A missing, corrupt or
// unsupported file is a UserError naming the path and the fix.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const TokenizerOptions& options = {});
// The file load_tokenizer(path) reads (`path` itself, or the one it picks in a directory); a
// UserError as load_tokenizer's when there is none.
std::string tokenizer_file_of(const std::string& path);
// Whether that file is a tiktoken rank file (by name or content).
bool is_tiktoken_file(const std::string& file);
// True when directory `dir` holds a file load_tokenizer(dir) would pick: tokenizer.json,
// tokenizer.model or a *.tiktoken rank file.
bool has_tokenizer_file(const std::string& dir);

// tokenizer.json (hf_tokenizer.cpp); the tokenizer_config.json, special_tokens_map.json and
// generation_config.json beside it give the special tokens and stop ids.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& file, const TokenizerOptions& options);
// The same from tokenizer.json text already in memory: `file` names it in errors, and its directory
// is where the side files are looked for.
std::unique_ptr<Tokenizer> parse_hf_tokenizer(const std::string& json_text, const std::string& file,
                                              const TokenizerOptions& options);
// generation_config.json's eos_token_id (an id or a list) from the directory of `tokenizer_file`, each
// id checked against [0, vocab_size); a UserError naming the file otherwise. Empty without the file.
std::vector<int64_t> generation_config_eos_ids(const std::string& tokenizer_file, int64_t vocab_size);
// tokenizer.model (sentencepiece_tokenizer.cpp); generation_config.json beside it adds stop ids.
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& file, const TokenizerOptions& options);
// A tiktoken rank file (tiktoken_tokenizer.cpp); a tokenizer_config.json and generation_config.json
// beside it add special tokens and stop ids.
std::unique_ptr<Tokenizer> load_tiktoken_tokenizer(const std::string& file, const TokenizerOptions& options);

}  // namespace scorch
