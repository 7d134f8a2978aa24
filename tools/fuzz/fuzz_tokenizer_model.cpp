// A tokenizer.model file through load_tokenizer(): a tiktoken rank file is recognised and refused,
// anything else is parsed by SentencePiece. A model that loads must encode and decode a sample.
#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace scorch;
  const std::string path = fuzz::write_scratch("tokenizer.model", data, size);
  try {
    const std::unique_ptr<Tokenizer> tok = load_tokenizer(path);
    const std::vector<int64_t> ids = tok->encode("Hello world, 123 caf\xC3\xA9", true);
    (void)tok->decode(ids);
  } catch (const UserError& e) {
    fuzz::expect_named(e, path);
  }
  return 0;
}
