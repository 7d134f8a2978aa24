// A tokenizer.model file through load_tokenizer(): a tiktoken rank file is recognised by its
// content and parsed (once as an unknown vocabulary, refused for want of a pattern, once with
// tokenizer.tiktoken_pattern set, which SentencePiece models refuse); anything else is parsed by
// SentencePiece. A model that loads must encode (special-token text as text and as control ids)
// and decode a sample.
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scorch;
  const std::string path = fuzz::write_scratch("tokenizer.model", data, size);
  for (const char* pattern : {"", "r50k_base"}) {
    TokenizerOptions options;
    options.tiktoken_pattern = pattern;
    try {
      const std::unique_ptr<Tokenizer> tok = load_tokenizer(path, options);
      const std::vector<int64_t> ids = tok->encode("Hello world, 123 caf\xC3\xA9 <|endoftext|>\xFF", true);
      (void)tok->decode(ids);
      (void)tok->decode(tok->encode_special("lo <|endoftext|>"));
    } catch (const UserError& e) {
      fuzz::expect_named(e, path);
    }
  }
  return 0;
}
