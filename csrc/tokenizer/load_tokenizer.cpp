// Picks the tokenizer implementation from a path. In a directory: tokenizer.json (as transformers
// prefers it), else tokenizer.model, else one *.tiktoken file. A tokenizer.model is SentencePiece
// unless its content is a tiktoken rank file (Llama-3's original/tokenizer.model); a .json file is
// tokenizer.json whatever its name.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/fs.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {

// tiktoken files are lines "<base64 token> <rank>"; a SentencePiece model is a binary protobuf.
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

// The directory's *.tiktoken files, sorted.
std::vector<std::string> tiktoken_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (ends_with(name, ".tiktoken")) out.push_back(entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

bool has_tokenizer_file(const std::string& dir) {
  if (!fs::is_directory(dir)) return false;
  return fs::exists((std::filesystem::path(dir) / "tokenizer.json").string()) ||
         fs::exists((std::filesystem::path(dir) / "tokenizer.model").string()) || !tiktoken_files(dir).empty();
}

std::string tokenizer_file_of(const std::string& path) {
  const std::string fix =
      "Fix: point tokenizer.path at the model's tokenizer.json, its SentencePiece tokenizer.model or a tiktoken rank "
      "file (*.tiktoken, Llama-3's original/tokenizer.model)";
  if (path.empty()) throw UserError("no tokenizer given: set tokenizer.path to a tokenizer.json, tokenizer.model or *.tiktoken file, or its directory");
  std::string file = path;
  if (fs::is_directory(path)) {
    const std::string json_file = (std::filesystem::path(path) / "tokenizer.json").string();
    const std::string sp_file = (std::filesystem::path(path) / "tokenizer.model").string();
    const std::vector<std::string> tiktoken = tiktoken_files(path);
    if (fs::exists(json_file)) {
      file = json_file;
    } else if (fs::exists(sp_file)) {
      file = sp_file;
    } else if (tiktoken.size() == 1) {
      file = tiktoken[0];
    } else if (tiktoken.size() > 1) {
      std::string names;
      for (const std::string& t : tiktoken) names += (names.empty() ? "'" : ", '") + t + "'";
      throw UserError("directory '" + path + "' has several tiktoken rank files (" + names +
                      ") and no tokenizer.json or tokenizer.model. Fix: set tokenizer.path to the one the model uses");
    } else {
      throw UserError("directory '" + path + "' has no tokenizer.json, tokenizer.model or *.tiktoken file. " + fix);
    }
  } else if (!fs::exists(path)) {
    throw UserError("tokenizer file '" + path + "' does not exist. " + fix);
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {  // a directory fails the reader, a FIFO blocks it
    throw UserError("tokenizer file '" + file + "' is " + (fs::is_directory(file) ? "a directory" : "not a regular file") +
                    ". " + fix);
  }
  return file;
}

bool is_tiktoken_file(const std::string& file) {
  return !ends_with(file, ".json") && (ends_with(file, ".tiktoken") || looks_like_tiktoken(file));
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const TokenizerOptions& options) {
  const std::string file = tokenizer_file_of(path);
  const bool tiktoken = is_tiktoken_file(file);
  if (!options.tiktoken_pattern.empty() && !tiktoken) {
    throw UserError("tokenizer.tiktoken_pattern applies to tiktoken rank files, and '" + file +
                    "' is not one. Fix: remove tokenizer.tiktoken_pattern");
  }
  if (tiktoken) return load_tiktoken_tokenizer(file, options);
  if (ends_with(file, ".json")) return load_hf_tokenizer(file, options);
  return load_sentencepiece_tokenizer(file, options);
}

}  // namespace scorch
