// Encoding fuzzed text with two fixed tokenizer.json files (tools/fuzz/tokenizers/): byte-level BPE
// (GPT-2 / Qwen2 style: NFC, a Split regex, added special tokens) and SentencePiece-style BPE
// (Metaspace normalizer, byte fallback, digits, lstrip/rstrip/single_word added tokens, BOS).
// Input byte 0 picks the tokenizer and the call (encode, with BOS, with specials, as a template
// with data ranges from byte 1); the rest is the text. Encoding never throws; decoding what was
// encoded never throws; on the byte-level tokenizer (all 256 bytes in its vocabulary) decoding the
// plain encoding of valid UTF-8 gives back the text's NFC form (its normalizer).
#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

namespace {

std::unique_ptr<scorch::Tokenizer> load_fixture(const std::string& name, bool parse_special) {
  const std::string file = std::string(SCORCH_FUZZ_DIR) + "/tokenizers/" + name + ".json";
  scorch::TokenizerOptions options;
  options.parse_special = parse_special;
  return scorch::parse_hf_tokenizer(scorch::fs::read_file(file), file, options);
}

bool valid_utf8(const std::string& s) {
  // Round trips only hold for text the tokenizer does not replace (U+FFFD for invalid bytes).
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      const unsigned char x = static_cast<unsigned char>(s[i + k]);
      if ((x & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (x & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<scorch::Tokenizer> tokenizers[] = {
      load_fixture("byte_level", false), load_fixture("byte_level", true), load_fixture("metaspace", false),
      load_fixture("metaspace", true)};
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const scorch::Tokenizer& tok = *tokenizers[mode & 3];
  const std::string text(reinterpret_cast<const char*>(data + 2), size - 2);
  std::vector<int64_t> ids;
  switch ((mode >> 2) & 3) {
    case 0: ids = tok.encode(text); break;
    case 1: ids = tok.encode(text, true); break;
    case 2: ids = tok.encode_special(text); break;
    case 3: {
      const size_t b = std::min<size_t>(data[1] & 0x0F, text.size()), e = std::min<size_t>(b + (data[1] >> 4), text.size());
      ids = tok.encode_template(text, {{b, e}}, (mode & 0x10) != 0);
      break;
    }
  }
  const std::string decoded = tok.decode(ids);
  if ((mode & 0x0F) == 0 && valid_utf8(text)) {  // byte-level, special-token text kept as text, plain encode
    utf8proc_uint8_t* nfc = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(text.c_str()));
    const std::string expected = nfc ? reinterpret_cast<const char*>(nfc) : "";
    std::free(nfc);
    if (text.find('\0') == std::string::npos && decoded != expected) {
      std::fprintf(stderr, "byte-level round trip changed the text: %zu bytes in, %zu out\n", text.size(), decoded.size());
      std::abort();
    }
  }
  return 0;
}
