// generation_config.json's stop ids, shared by every tokenizer format: HF lists all of a chat model's
// end-of-turn ids there (Qwen2.5-Instruct: [151645, 151643]), and generation must stop on each.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "tokenizer/tokenizer.h"

namespace scorch {

std::vector<int64_t> generation_config_eos_ids(const std::string& tokenizer_file, int64_t vocab_size) {
  const std::string path = (std::filesystem::path(tokenizer_file).parent_path() / "generation_config.json").string();
  if (!fs::exists(path)) return {};
  const std::string fix = ". Fix: use the generation_config.json that came with the model";
  nlohmann::json gen;
  try {
    gen = nlohmann::json::parse(fs::read_file(path, "generation config"));
  } catch (const nlohmann::json::exception& e) {
    throw UserError("'" + path + "' is not valid JSON: " + e.what() + fix);
  }
  if (!gen.is_object() || !gen.contains("eos_token_id") || gen["eos_token_id"].is_null()) return {};
  const nlohmann::json& v = gen["eos_token_id"];
  std::vector<nlohmann::json> items;
  if (v.is_array()) items.assign(v.begin(), v.end());
  else items.push_back(v);
  std::vector<int64_t> ids;
  for (const nlohmann::json& x : items) {
    if (!x.is_number_integer()) {
      throw UserError("'" + path + "': eos_token_id must be a token id or a list of token ids, got " +
                      shorten(x.dump(), 80) + fix);
    }
    const int64_t id = x.get<int64_t>();
    if (id < 0 || id >= vocab_size) {
      throw UserError("'" + path + "': eos_token_id " + std::to_string(id) + " is outside the vocabulary of '" +
                      tokenizer_file + "' (" + std::to_string(vocab_size) + " tokens)" + fix);
    }
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

}  // namespace scorch
