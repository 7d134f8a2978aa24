// tokenizer.json content (parsed in memory; its directory is an empty scratch directory, so no side
// files). A tokenizer that loads must then encode and decode a fixed sample without throwing.
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scorch;
  const std::string file = fuzz::scratch_dir() + "/tokenizer.json";
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = parse_hf_tokenizer(text, file, TokenizerOptions{});
  } catch (const UserError& e) {
    fuzz::expect_named(e, file);
    return 0;
  }
  const std::string sample = "Hello world, the 123 <|im_end|> caf\xC3\xA9 \xF0\x9F\x98\x80\n\t x";
  for (const auto& ids : {tok->encode(sample, true), tok->encode_special(sample),
                          tok->encode_template(sample, {{0, 5}}, true)}) {
    std::vector<int64_t> known;
    for (int64_t id : ids) {
      if (id < 0) std::abort();  // encode never yields a negative id
      if (id < tok->vocab_size() && tok->piece_to_id(tok->id_to_piece(id)) >= 0) known.push_back(id);
    }
    (void)tok->decode(known);
  }
  return 0;
}
