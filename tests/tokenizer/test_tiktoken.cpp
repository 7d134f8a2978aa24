// tiktoken rank files: a tiny rank file built here with hand-computed ids (merge order by the rank
// of the merged bytes, the whole-piece rule, special tokens from tokenizer_config.json), the known
// vocabularies from the cache tools/setup fills (a few ids checked against the `tiktoken` package),
// the loader's choice, and one bad-input error per kind of damage, each naming the file and line.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tests/support/run_cli.h"
#include "tests/support/user_error.h"

namespace {

using scorch::test::temp_dir;
using scorch::test::user_error_of;

std::string b64(const std::string& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

// Ranks 0-255: the single bytes (rank = byte value); then the merges below.
const std::vector<std::string> kMerges = {
    "lo",   // 256
    "ow",   // 257
    "low",  // 258
    "er",   // 259
    " l",   // 260
    "aa",   // 261
    "xyz",  // 262: a token no merge reaches (neither "xy" nor "yz" is one)
};

std::string tiny_rank_file() {
  std::string text;
  for (int b = 0; b < 256; ++b) text += b64(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\n";
  for (size_t i = 0; i < kMerges.size(); ++i) text += b64(kMerges[i]) + " " + std::to_string(256 + i) + "\n";
  return text;
}

std::string write_tiny(const std::string& dir, const std::string& name = "tiny.tiktoken") {
  std::ofstream(dir + "/" + name, std::ios::binary) << tiny_rank_file();
  return dir + "/" + name;
}

scorch::TokenizerOptions with_pattern(const std::string& pattern, bool parse_special = false) {
  scorch::TokenizerOptions o;
  o.parse_special = parse_special;
  o.tiktoken_pattern = pattern;
  return o;
}

// Worked by hand with GPT-2's pattern ("lower", " lower", ...):
//   "lower":  l o w e r -> lo(256) is the lowest pair -> [lo w e r] -> low(258) -> [low e r] ->
//             er(259) -> [low er] = 258 259
//   " lower": " l"(260) loses to lo(256); then low, er -> [' ' low er] = 32 258 259
//   "aaa":    the leftmost of two equal pairs -> [aa a] = 261 97
//   "xyz":    the whole piece is a token -> 262; "xyzx": no pair merges -> 120 121 122 120
TEST(Tiktoken, TinyRankFileGivesHandComputedIds) {
  const std::string dir = temp_dir("tiktoken_tiny");
  auto tok = scorch::load_tokenizer(write_tiny(dir), with_pattern("r50k_base"));
  EXPECT_EQ(tok->vocab_size(), 263);
  EXPECT_EQ(tok->encode("lower lower"), (std::vector<int64_t>{258, 259, 32, 258, 259}));
  EXPECT_EQ(tok->encode("aaa"), (std::vector<int64_t>{261, 97}));
  EXPECT_EQ(tok->encode("xyz"), (std::vector<int64_t>{262}));
  EXPECT_EQ(tok->encode("xyzx"), (std::vector<int64_t>{120, 121, 122, 120}));
  EXPECT_EQ(tok->encode(""), (std::vector<int64_t>{}));
  // Invalid UTF-8 becomes U+FFFD (EF BF BD) first, as Python's str does before tiktoken sees it.
  EXPECT_EQ(tok->encode("a\xFF"), (std::vector<int64_t>{97, 0xEF, 0xBF, 0xBD}));
  EXPECT_EQ(tok->decode({258, 259, 32, 258, 259}), "lower lower");
  EXPECT_EQ(tok->decode({0xE6, 0x97}), "\xEF\xBF\xBD");  // a cut character decodes as one U+FFFD
  EXPECT_EQ(tok->piece_to_id("low"), 258);
  EXPECT_EQ(tok->id_to_piece(262), "xyz");
  EXPECT_EQ(tok->bos_id(), -1);
  EXPECT_EQ(tok->eos_id(), -1);
  EXPECT_EQ(tok->encode("lower", /*add_bos=*/true), (std::vector<int64_t>{258, 259}));  // no BOS known
  // A pattern of one's own: runs of letters and single other characters.
  auto own = scorch::load_tokenizer(dir + "/tiny.tiktoken", with_pattern("[a-z]+|[^a-z]"));
  EXPECT_EQ(own->encode("lower lower"), (std::vector<int64_t>{258, 259, 32, 258, 259}));
  EXPECT_EQ(own->encode(" lo"), (std::vector<int64_t>{32, 256}));
  auto gpt2 = scorch::load_tokenizer(dir + "/tiny.tiktoken", with_pattern("r50k_base"));
  EXPECT_EQ(gpt2->encode(" lo"), (std::vector<int64_t>{32, 256}));  // " l" loses to "lo" again
  scorch::fs::remove_all(dir);
}

TEST(Tiktoken, SpecialTokensAndStopIdsComeFromTheSideFiles) {
  const std::string dir = temp_dir("tiktoken_special");
  const std::string file = write_tiny(dir);
  std::ofstream(dir + "/tokenizer_config.json") << R"({
    "added_tokens_decoder": {
      "263": {"content": "<|end|>", "special": true},
      "264": {"content": "<|start|>", "special": true},
      "265": {"content": "[tool]", "special": false},
      "258": {"content": "low", "special": false}
    },
    "bos_token": "<|start|>", "eos_token": "<|end|>", "add_bos_token": true})";
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": [263, 265]})";
  auto tok = scorch::load_tokenizer(file, with_pattern("[a-z]+|[^a-z]"));
  auto special = scorch::load_tokenizer(file, with_pattern("[a-z]+|[^a-z]", /*parse_special=*/true));
  EXPECT_EQ(tok->vocab_size(), 266);
  EXPECT_EQ(tok->bos_id(), 264);
  EXPECT_EQ(tok->eos_id(), 263);
  EXPECT_EQ(tok->eos_ids(), (std::vector<int64_t>{263, 265}));
  // Special-token text in data stays text unless parse_special; the non-special one always matches.
  EXPECT_EQ(tok->encode("<|end|>[tool]"), (std::vector<int64_t>{60, 124, 101, 110, 100, 124, 62, 265}));
  EXPECT_EQ(special->encode("<|end|>[tool]"), (std::vector<int64_t>{263, 265}));
  EXPECT_EQ(tok->encode_special("low<|end|>"), (std::vector<int64_t>{258, 263}));
  EXPECT_EQ(tok->encode("low", /*add_bos=*/true), (std::vector<int64_t>{264, 258}));
  EXPECT_EQ(tok->decode({264, 258, 263, 265}), "low[tool]");  // control tokens decode to nothing
  EXPECT_EQ(tok->piece_to_id("<|end|>"), 263);
  EXPECT_EQ(tok->id_to_piece(263), "<|end|>");
  // Message text inside a rendered template keeps its special-token text as text.
  const std::string rendered = "<|start|>lo<|end|>";
  EXPECT_EQ(tok->encode_template(rendered, {{9, 18}}), (std::vector<int64_t>{264, 256, 60, 124, 101, 110, 100, 124, 62}));
  scorch::fs::remove_all(dir);
}

std::string vocab_dir() {
  const char* env = std::getenv("SCORCH_VOCAB_DIR");
  if (env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/scorch/vocab";
}

// The published rank files tools/setup takes from PyPI, recognised without any setting; the ids
// are the `tiktoken` package's for the same ranks, pattern and special tokens.
TEST(Tiktoken, PublishedRankFilesAreRecognisedWithTheirPatternAndSpecialTokens) {
  struct Case {
    std::string file;
    std::vector<int64_t> hello, hello_bos;
    int64_t vocab, bos, eos;
    std::vector<int64_t> stops;
  };
  const std::vector<Case> cases = {
      {"tiktoken/llama3/tokenizer.model", {9906, 1917}, {128000, 9906, 1917}, 128256, 128000, 128001,
       {128001, 128008, 128009}},
      {"tiktoken/qwen/qwen.tiktoken", {9707, 1879}, {9707, 1879}, 151851, -1, 151643, {151643, 151645}},
      {"tiktoken/gpt2/gpt2.tiktoken", {15496, 995}, {15496, 995}, 50257, -1, 50256, {50256}},
  };
  for (const Case& c : cases) {
    const std::string path = vocab_dir() + "/" + c.file;
    ASSERT_TRUE(scorch::fs::exists(path)) << "'" << path << "' is missing: run tools/setup (it fetches it from PyPI)";
    auto tok = scorch::load_tokenizer(path);
    EXPECT_EQ(tok->encode("Hello world"), c.hello) << c.file;
    EXPECT_EQ(tok->encode("Hello world", /*add_bos=*/true), c.hello_bos) << c.file;
    EXPECT_EQ(tok->vocab_size(), c.vocab) << c.file;
    EXPECT_EQ(tok->bos_id(), c.bos) << c.file;
    EXPECT_EQ(tok->eos_id(), c.eos) << c.file;
    EXPECT_EQ(tok->eos_ids(), c.stops) << c.file;
    EXPECT_EQ(tok->decode(tok->encode("héllo 世界 🙂\n\n  x")), "héllo 世界 🙂\n\n  x") << c.file;
  }
  // Llama-3: digits in runs of at most three; <|eot_id|> is text in data, a control id in markup.
  auto llama = scorch::load_tokenizer(vocab_dir() + "/tiktoken/llama3/tokenizer.model");
  EXPECT_EQ(llama->encode("Hello world 12345 <|eot_id|>"),
            (std::vector<int64_t>{9906, 1917, 220, 4513, 1774, 83739, 68, 354, 851, 91, 29}));
  EXPECT_EQ(llama->encode_special("Hello world 12345 <|eot_id|>"),
            (std::vector<int64_t>{9906, 1917, 220, 4513, 1774, 220, 128009}));
}

TEST(Tiktoken, DirectoriesPreferTokenizerJsonThenTokenizerModelThenOneTiktokenFile) {
  const std::string dir = temp_dir("tiktoken_pick");
  write_tiny(dir, "a.tiktoken");
  EXPECT_NE(user_error_of([&] { scorch::load_tokenizer(dir); }).find("does not recognise"), std::string::npos);
  EXPECT_EQ(scorch::load_tokenizer(dir, with_pattern("r50k_base"))->source(), dir + "/a.tiktoken");
  write_tiny(dir, "b.tiktoken");
  std::string err = user_error_of([&] { scorch::load_tokenizer(dir, with_pattern("r50k_base")); });
  EXPECT_NE(err.find("several tiktoken rank files"), std::string::npos) << err;
  // A rank file named tokenizer.model (Llama-3's original/) is recognised by its content.
  write_tiny(dir, "tokenizer.model");
  EXPECT_EQ(scorch::load_tokenizer(dir, with_pattern("r50k_base"))->source(), dir + "/tokenizer.model");
  // tiktoken_pattern on a SentencePiece model is refused, not ignored.
  err = user_error_of([&] {
    scorch::load_tokenizer(std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model", with_pattern("r50k_base"));
  });
  EXPECT_NE(err.find("tokenizer.tiktoken_pattern applies to tiktoken rank files"), std::string::npos) << err;
  scorch::fs::remove_all(dir);
}

TEST(Tiktoken, AnUnknownRankFileWithoutAPatternIsRefusedWithTheFix) {
  const std::string dir = temp_dir("tiktoken_unknown");
  const std::string file = write_tiny(dir);
  const std::string err = user_error_of([&] { scorch::load_tokenizer(file); });
  EXPECT_NE(err.find(file), std::string::npos) << err;
  EXPECT_NE(err.find("263 ranks"), std::string::npos) << err;
  EXPECT_NE(err.find("tokenizer.tiktoken_pattern"), std::string::npos) << err;
  EXPECT_NE(err.find("tokenizer.json"), std::string::npos) << err;
  const std::string bad_regex = user_error_of([&] { scorch::load_tokenizer(file, with_pattern("(a")); });
  EXPECT_NE(bad_regex.find("tokenizer.tiktoken_pattern: regex /(a/ does not compile"), std::string::npos) << bad_regex;
  scorch::fs::remove_all(dir);
}

TEST(Tiktoken, DamagedRankFilesAreUserErrorsNamingTheFileAndLine) {
  const std::string dir = temp_dir("tiktoken_bad");
  const std::string good = tiny_rank_file();
  const auto error_for = [&](const std::string& text) {
    std::ofstream(dir + "/bad.tiktoken", std::ios::binary) << text;
    return user_error_of([&] { scorch::load_tokenizer(dir + "/bad.tiktoken", with_pattern("r50k_base")); });
  };
  const auto line_of = [&](int rank) { return b64(std::string(1, static_cast<char>(rank))) + " " + std::to_string(rank) + "\n"; };
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes += line_of(b);
  struct Case {
    std::string name, text, want;
  };
  const std::vector<Case> cases = {
      {"malformed base64", "IQ== 0\nI@== 1\n", "line 2: token 'I@==' is not valid base64"},
      {"base64 without padding", "IQ== 0\nIg 1\n", "line 2: token 'Ig' is not valid base64"},
      {"duplicate rank", "IQ== 0\nIg== 1\nIw== 1\n", "line 3: rank 1 repeats line 2's rank"},
      {"non-contiguous ranks", "IQ== 0\nIg== 1\nIw== 5\n", "line 3: rank 5 skips ranks 2-4"},
      {"rank out of range", "IQ== 0\nIg== 99999999\n", "line 2: rank '99999999' is not a number from 0 to 16777215"},
      {"rank not a number", "IQ== 0\nIg== x1\n", "line 2: rank 'x1' is not a number"},
      {"truncated file", all_bytes + "bG93IDI1", "line 257: the last line has no newline: the file is truncated"},
      {"CRLF lines", "IQ== 0\r\nIg== 1\r\n", "line 1: ends with \\r\\n (Windows line ends"},
      {"empty line", "IQ== 0\n\nIg== 1\n", "line 2: '' is not '<base64 token> <rank>'"},
      {"duplicate token", "IQ== 0\nIQ== 1\n", "line 2: its token repeats line 1's token"},
      {"a byte without a rank", "IQ== 0\n", "has no token for the byte 0x00"},
      {"empty file", "", "is empty"},
  };
  for (const Case& c : cases) {
    const std::string err = error_for(c.text);
    EXPECT_NE(err.find(dir + "/bad.tiktoken"), std::string::npos) << c.name << ": " << err;
    EXPECT_NE(err.find(c.want), std::string::npos) << c.name << ": " << err;
    EXPECT_NE(err.find("Fix:"), std::string::npos) << c.name << ": " << err;
  }
  // Side files that contradict the ranks.
  std::ofstream(dir + "/ok.tiktoken", std::ios::binary) << good;
  std::ofstream(dir + "/tokenizer_config.json") << R"({"added_tokens_decoder": {"256": {"content": "<|x|>"}}})";
  std::string err = user_error_of([&] { scorch::load_tokenizer(dir + "/ok.tiktoken", with_pattern("r50k_base")); });
  EXPECT_NE(err.find("takes the id of rank 256"), std::string::npos) << err;
  std::ofstream(dir + "/tokenizer_config.json") << R"({"eos_token": "<|nope|>"})";
  err = user_error_of([&] { scorch::load_tokenizer(dir + "/ok.tiktoken", with_pattern("r50k_base")); });
  EXPECT_NE(err.find("'<|nope|>' is not a token"), std::string::npos) << err;
  scorch::fs::remove_all(dir);
}

TEST(Tiktoken, ABadRankFileStopsScorchGenerateWithExitCode2) {
  const std::string dir = temp_dir("tiktoken_cli");
  std::ofstream(dir + "/tokenizer.model", std::ios::binary) << "IQ== 0\r\nIg== 1\r\n";
  const auto r = scorch::test::run_scorch("generate --model '" + dir + "' --tokenizer '" + dir + "/tokenizer.model' --prompt x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(dir + "/tokenizer.model' line 1"), std::string::npos) << r.output;
  scorch::fs::remove_all(dir);
}

// What `generate --model DIR` uses to decide whether DIR brings its tokenizer: a lone *.tiktoken
// counts, as it does for load_tokenizer(DIR).
TEST(Tiktoken, ADirectoryWithOnlyARankFileHasATokenizer) {
  const std::string dir = temp_dir("tiktoken_has");
  EXPECT_FALSE(scorch::has_tokenizer_file(dir));
  EXPECT_FALSE(scorch::has_tokenizer_file(dir + "/missing"));
  std::ofstream(dir + "/notes.txt") << "x";
  EXPECT_FALSE(scorch::has_tokenizer_file(dir));
  std::ofstream(dir + "/qwen.tiktoken") << "IQ== 0\n";
  EXPECT_TRUE(scorch::has_tokenizer_file(dir));
  EXPECT_FALSE(scorch::has_tokenizer_file(dir + "/qwen.tiktoken")) << "a file is not a directory";
  scorch::fs::remove_all(dir);
}

// transformers reads no rank file, so an export writes it as tokenizer.json: every split of a
// token into two tokens is a merge, in the order of the rank it makes (worked by hand below), with
// ignore_merges (tiktoken's whole-piece rule), the pattern as a Split pre-tokenizer and the special
// tokens. scorch reads it back to the same ids; the CLI writes it in place of the rank file.
TEST(Tiktoken, AnExportWritesATokenizerJsonThatEncodesTheSame) {
  const std::string dir = temp_dir("tiktoken_export");
  const std::string file = write_tiny(dir);
  const std::string pattern = "[a-z]+|[^a-z]";
  auto bare = scorch::load_tokenizer(file, with_pattern(pattern));
  auto files = bare->hf_export_files();
  ASSERT_EQ(files.count("tokenizer.json"), 1u);
  ASSERT_EQ(files.count("tokenizer_config.json"), 1u);  // none beside the file: one is written
  EXPECT_EQ(nlohmann::json::parse(files["tokenizer_config.json"])["tokenizer_class"], "PreTrainedTokenizerFast");
  const nlohmann::json j = nlohmann::json::parse(files["tokenizer.json"]);
  // lo = l+o; ow = o+w; low = l+ow (108, 257) and lo+w (256, 119); er; " l" (space is Ġ); aa;
  // xyz has no split into two tokens.
  EXPECT_EQ(j["model"]["merges"], nlohmann::json({"l o", "o w", "l ow", "lo w", "e r", "\xC4\xA0 l", "a a"}));
  EXPECT_EQ(j["model"]["vocab"].size(), 263u);
  EXPECT_EQ(j["model"]["vocab"]["\xC4\xA0"], 32);
  EXPECT_EQ(j["model"]["ignore_merges"], true);
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"], pattern);

  // With special tokens from the side file: the converted tokenizer.json encodes as the rank file.
  std::ofstream(dir + "/tokenizer_config.json") << R"({
    "added_tokens_decoder": {"263": {"content": "<|end|>", "special": true}, "264": {"content": "<|start|>", "special": true}},
    "bos_token": "<|start|>", "eos_token": "<|end|>", "add_bos_token": true})";
  auto tok = scorch::load_tokenizer(file, with_pattern(pattern));
  files = tok->hf_export_files();
  EXPECT_EQ(files.count("tokenizer_config.json"), 0u);  // the model's own is copied instead
  const std::string out = temp_dir("tiktoken_export_out");
  std::ofstream(out + "/tokenizer.json") << files["tokenizer.json"];
  std::filesystem::copy_file(dir + "/tokenizer_config.json", out + "/tokenizer_config.json");
  auto back = scorch::load_tokenizer(out + "/tokenizer.json");
  for (const std::string text : {"lower lower", "aaa", "xyz", "xyzx", " lo", "a\xFF", "low<|end|>x", ""}) {
    EXPECT_EQ(back->encode(text), tok->encode(text)) << text;
    EXPECT_EQ(back->encode_special(text), tok->encode_special(text)) << text;
    EXPECT_EQ(back->encode(text, /*add_bos=*/true), tok->encode(text, true)) << text;
  }
  EXPECT_EQ(back->encode("low", true), (std::vector<int64_t>{264, 258}));

  // Through the CLI: init-model writes tokenizer.json (+ the side file), not the rank file.
  std::ofstream(dir + "/config.json") << R"({"model_type": "llama", "vocab_size": 272, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
    "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true})";
  const std::string model = out + "/model";
  auto r = scorch::test::run_scorch("init-model --config '" + dir + "/config.json' --tokenizer '" + file +
                                    "' --tiktoken-pattern '" + pattern + "' --out '" + model + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(scorch::fs::read_file(model + "/tokenizer.json"), files["tokenizer.json"]);
  EXPECT_TRUE(scorch::fs::exists(model + "/tokenizer_config.json"));
  EXPECT_FALSE(scorch::fs::exists(model + "/tokenizer.model"));
  EXPECT_FALSE(scorch::fs::exists(model + "/tiny.tiktoken"));
  // An unknown rank file needs its pattern to be exported, and a pattern needs a rank file.
  r = scorch::test::run_scorch("init-model --config '" + dir + "/config.json' --tokenizer '" + file + "' --out '" +
                               out + "/nopattern'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("tiktoken_pattern"), std::string::npos) << r.output;
  EXPECT_FALSE(scorch::fs::exists(out + "/nopattern"));
  r = scorch::test::run_scorch("export --model '" + model + "' --tiktoken-pattern qwen --out '" + out + "/again'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("is not one"), std::string::npos) << r.output;
  EXPECT_FALSE(scorch::fs::exists(out + "/again"));
  r = scorch::test::run_scorch("generate --model '" + model + "' --tiktoken-pattern qwen --prompt x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  scorch::fs::remove_all(dir);
  scorch::fs::remove_all(out);
}

TEST(Sha256, MatchesTheStandardTestVectors) {
  EXPECT_EQ(scorch::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(scorch::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(scorch::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(scorch::sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
