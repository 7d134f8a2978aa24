// SentencePiece implementation of Tokenizer (libsentencepiece from Debian). The model's own
// normalizer, byte fallback and special pieces decide everything; this file only adapts types
// (int <-> int64_t) and turns load failures into UserErrors.
#include <sentencepiece_processor.h>

#include <filesystem>
#include <stdexcept>

#include "common/error.h"
#include "common/fs.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& file) {
    const auto status = sp_.Load(file);
    if (!status.ok()) {
      throw UserError("cannot load tokenizer model '" + file + "': " + status.ToString() +
                      ". Fix: point tokenizer.path at a valid SentencePiece tokenizer.model");
    }
    if (sp_.GetPieceSize() <= 0) throw UserError("tokenizer model '" + file + "' has an empty vocabulary");
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

  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  if (path.empty()) throw UserError("no tokenizer given: set tokenizer.path to a tokenizer.model file or its directory");
  std::string file = path;
  if (fs::is_directory(path)) {
    file = (std::filesystem::path(path) / "tokenizer.model").string();
    if (!fs::exists(file)) {
      const bool has_json = fs::exists((std::filesystem::path(path) / "tokenizer.json").string());
      throw UserError("directory '" + path + "' has no tokenizer.model" +
                      (has_json ? " (it has a tokenizer.json: only SentencePiece tokenizer.model files are supported)" : "") +
                      ". Fix: point tokenizer.path at a SentencePiece tokenizer.model");
    }
  } else if (!fs::exists(path)) {
    throw UserError("tokenizer model '" + path + "' does not exist. Fix: point tokenizer.path at a SentencePiece tokenizer.model");
  }
  return std::make_unique<SentencePieceTokenizer>(file);
}

}  // namespace scorch
