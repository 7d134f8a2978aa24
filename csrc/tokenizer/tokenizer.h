// The Tokenizer interface (text <-> token ids, special-token ids) and its loader. The only
// implementation is SentencePiece (tokenizer.model, byte fallback); its headers stay in
// sentencepiece_tokenizer.cpp so including this file costs nothing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace scorch {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Plain encoding of `text` (no special tokens unless add_bos). Special pieces that the model
  // declares user-defined (e.g. "<|im_start|>" in the quickstart model) are matched in the text;
  // control pieces (<s>, </s>, <pad>) never are — use their ids.
  virtual std::vector<int64_t> encode(const std::string& text, bool add_bos = false) const = 0;
  // Inverse of encode; control tokens (bos/eos/pad) and ids at or above vocab_size() (a model's
  // padded embedding rows) decode to nothing; a negative id throws.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t bos_id() const = 0;  // -1 if the model has none
  virtual int64_t eos_id() const = 0;  // -1 if the model has none
  virtual int64_t pad_id() const = 0;  // -1 if the model has none (callers then pad with eos_id)
  virtual int64_t unk_id() const = 0;
  // Id of a vocabulary piece ("<|im_end|>", "</s>", "▁the"), or -1 if absent.
  virtual int64_t piece_to_id(const std::string& piece) const = 0;
  // The vocabulary piece of an id ("<0x0A>" for a byte-fallback newline). Throws on a bad id.
  virtual std::string id_to_piece(int64_t id) const = 0;
};

// Loads `path` = a tokenizer.model file or a directory containing one. A missing or corrupt
// file is a UserError naming the path.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

}  // namespace scorch
