// Picks the tokenizer implementation from a path: tokenizer.json (preferred in a directory),
// else tokenizer.model. A tiktoken rank file (Llama-3's original/tokenizer.model, qwen.tiktoken)
// is recognised by its text format and refused with a message saying so.
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

// tiktoken files are lines "<base64 token> <rank>".
bool looks_like_tiktoken(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t sp = line.find(' ');
  if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size()) return false;
  for (size_t i = 0; i < sp; ++i) {
    const char c = line[i];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=')) return false;
  }
  for (size_t i = sp + 1; i < line.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(line[i])) && line[i] != '\r') return false;
  }
  return true;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const TokenizerOptions& options) {
  const std::string fix = "Fix: point tokenizer.path at the model's tokenizer.json or SentencePiece tokenizer.model";
  if (path.empty()) throw UserError("no tokenizer given: set tokenizer.path to a tokenizer.json or tokenizer.model, or its directory");
  std::string file = path;
  if (fs::is_directory(path)) {
    const std::string json_file = (std::filesystem::path(path) / "tokenizer.json").string();
    const std::string sp_file = (std::filesystem::path(path) / "tokenizer.model").string();
    if (fs::exists(json_file)) file = json_file;
    else if (fs::exists(sp_file)) file = sp_file;
    else throw UserError("directory '" + path + "' has no tokenizer.json or tokenizer.model. " + fix);
  } else if (!fs::exists(path)) {
    throw UserError("tokenizer file '" + path + "' does not exist. " + fix);
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {  // a directory fails the reader, a FIFO blocks it
    throw UserError("tokenizer file '" + file + "' is " + (fs::is_directory(file) ? "a directory" : "not a regular file") +
                    ". " + fix);
  }
  if (ends_with(file, ".json")) return load_hf_tokenizer(file, options);
  if (looks_like_tiktoken(file)) {
    throw UserError("'" + file + "' is a tiktoken rank file, which scorch does not read. Fix: use the model's "
                    "tokenizer.json (transformers writes one: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))");
  }
  return load_sentencepiece_tokenizer(file, options);
}

}  // namespace scorch
