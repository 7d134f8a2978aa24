// SentencePiece implementation of Tokenizer (libsentencepiece from Debian). The model's own
// normalizer, byte fallback and special pieces decide everything; this file only adapts types
// (int <-> int64_t) and turns load failures into UserErrors.
#include <sentencepiece_processor.h>

#include <algorithm>
#include <stdexcept>

#include "common/error.h"
#include "common/fs.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& file) : file_(file) {
    const auto status = sp_.Load(file);
    if (!status.ok()) {
      throw UserError("cannot load tokenizer model '" + file + "': " + status.ToString() +
                      ". Fix: point tokenizer.path at a valid SentencePiece tokenizer.model");
    }
    if (sp_.GetPieceSize() <= 0) throw UserError("tokenizer model '" + file + "' has an empty vocabulary");
    if (eos_id() >= 0) eos_ids_.push_back(eos_id());
    for (int64_t id : generation_config_eos_ids(file, sp_.GetPieceSize())) {
      if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
    }
  }

  std::vector<int64_t> encode(const std::string& text, bool add_bos) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) throw std::runtime_error("sentencepiece encode failed: " + status.ToString());
    std::vector<int64_t> out;
    out.reserve(ids.size() + 1);
    if (add_bos && bos_id() >= 0) out.push_back(bos_id());
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }

  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<int> narrow;
    narrow.reserve(ids.size());
    for (int64_t id : ids) {
      // A model's embedding often has more rows than its tokenizer has pieces (Qwen2.5: 151,936 vs
      // 151,665, padded for speed); a sampled id beyond the pieces decodes to nothing, as in
      // transformers, instead of stopping a rollout.
      if (id >= sp_.GetPieceSize()) continue;
      narrow.push_back(checked(id));
    }
    std::string text;
    const auto status = sp_.Decode(narrow, &text);
    if (!status.ok()) throw std::runtime_error("sentencepiece decode failed: " + status.ToString());
    return text;
  }

  int64_t vocab_size() const override { return sp_.GetPieceSize(); }
  int64_t bos_id() const override { return sp_.bos_id(); }
  int64_t eos_id() const override { return sp_.eos_id(); }
  int64_t pad_id() const override { return sp_.pad_id(); }
  int64_t unk_id() const override { return sp_.unk_id(); }
  std::vector<int64_t> eos_ids() const override { return eos_ids_; }
  std::string source() const override { return file_; }

  int64_t piece_to_id(const std::string& piece) const override {
    const int id = sp_.PieceToId(piece);
    // PieceToId answers unk_id for unknown pieces; only "<unk>" itself may legitimately map there.
    if (id == sp_.unk_id() && sp_.IdToPiece(id) != piece) return -1;
    return id;
  }

  std::string id_to_piece(int64_t id) const override { return sp_.IdToPiece(checked(id)); }

 private:
  int checked(int64_t id) const {
    if (id < 0 || id >= sp_.GetPieceSize()) {
      throw std::out_of_range("token id " + std::to_string(id) + " is outside the tokenizer's vocabulary [0, " +
                              std::to_string(sp_.GetPieceSize()) + ")");
    }
    return static_cast<int>(id);
  }

  std::string file_;
  sentencepiece::SentencePieceProcessor sp_;
  std::vector<int64_t> eos_ids_;  // eos_id, then generation_config.json's eos_token_id list
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& file, const TokenizerOptions& options) {
  if (options.parse_special) {
    throw UserError("tokenizer.parse_special: true needs a tokenizer.json; SentencePiece '" + file +
                    "' always matches its user-defined pieces and never its control pieces. Fix: remove "
                    "tokenizer.parse_special or use the model's tokenizer.json");
  }
  return std::make_unique<SentencePieceTokenizer>(file);
}

}  // namespace scorch
