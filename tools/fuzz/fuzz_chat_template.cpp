// A model's own chat template (chat_template.jinja beside a fixed byte-level tokenizer.json with
// ChatML specials) parsed and rendered through ChatRenderer "auto" with fixed conversations:
// render, render_prompt, render_continuation. Templates that do not parse, raise, or are not
// append-only must be UserErrors naming the template file.
#include <fstream>

#include "fuzz_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {

const scorch::Tokenizer& fixed_tokenizer() {
  static const std::unique_ptr<scorch::Tokenizer> tok = [] {
    const std::string dir = scorch::fuzz::scratch_dir();
    const std::string source = std::string(SCORCH_FUZZ_DIR) + "/tokenizers/byte_level.json";
    std::ofstream(dir + "/tokenizer_config.json") << R"({"eos_token": "<|im_end|>", "bos_token": "<|endoftext|>"})";
    return scorch::parse_hf_tokenizer(scorch::fs::read_file(source), dir + "/tokenizer.json", {});
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using scorch::ChatMessage;
  const scorch::Tokenizer& tok = fixed_tokenizer();
  const std::string file = scorch::fuzz::write_scratch("chat_template.jinja", data, size);
  const std::vector<ChatMessage> conversation = {{"system", "Be brief.", true},
                                                 {"user", "What is 2+2? <|im_end|>", true},
                                                 {"assistant", "4", true},
                                                 {"user", "And 3+3?", true}};
  try {
    const scorch::ChatRenderer chat(tok, "auto", R"({"enable_thinking": false})");
    (void)chat.render(conversation);
    (void)chat.render_prompt({conversation[1]});
    (void)chat.render_continuation({conversation[3]});
  } catch (const scorch::UserError& e) {
    scorch::fuzz::expect_named(e, file);
  }
  return 0;
}
