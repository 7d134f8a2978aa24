// The SentencePiece wrapper on the quickstart model (configs/quickstart/tokenizer.model): exact
// round trips, the documented special ids, digit splitting, and load errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "common/fs.h"
#include "tokenizer/tokenizer.h"

namespace {

const std::string kModel = std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model";

std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("scorch_tok_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir.string();
}

TEST(Tokenizer, RoundTripsTextExactlyIncludingWhitespaceNewlinesAndUnseenUnicode) {
  auto tok = scorch::load_tokenizer(kModel);
  const std::vector<std::string> texts = {
      "Compute 47+38-19.",
      "47+38=85. 85-19=66. The answer is \\boxed{66}.",
      "  leading and trailing spaces  ",
      "two\nlines\n\nand a tab\there",
      "unicode: héllo wörld 日本語 🙂",
      "<|im_start|>user\nhi<|im_end|>\n",
      "",
  };
  for (const std::string& text : texts) {
    const auto ids = tok->encode(text);
    EXPECT_EQ(tok->decode(ids), text) << "text: " << text;
    for (int64_t id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, tok->vocab_size());
    }
  }
}

TEST(Tokenizer, SpecialIdsAreTheDocumentedOnes) {
  auto tok = scorch::load_tokenizer(kModel);
  EXPECT_EQ(tok->unk_id(), 0);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 3);
  EXPECT_EQ(tok->piece_to_id("<|im_start|>"), 4);
  EXPECT_EQ(tok->piece_to_id("<|im_end|>"), 5);
  EXPECT_EQ(tok->piece_to_id("<unk>"), 0);
  EXPECT_EQ(tok->piece_to_id("</s>"), 2);
  EXPECT_EQ(tok->piece_to_id("no-such-piece-here"), -1);
  EXPECT_EQ(tok->id_to_piece(5), "<|im_end|>");
  EXPECT_EQ(tok->vocab_size(), 512);
}

TEST(Tokenizer, AddBosPrependsOnlyBosAndControlTokensDecodeToNothing) {
  auto tok = scorch::load_tokenizer(kModel);
  const auto plain = tok->encode("Compute 1+2.");
  const auto with_bos = tok->encode("Compute 1+2.", /*add_bos=*/true);
  ASSERT_EQ(with_bos.size(), plain.size() + 1);
  EXPECT_EQ(with_bos[0], tok->bos_id());
  EXPECT_TRUE(std::equal(plain.begin(), plain.end(), with_bos.begin() + 1));
  auto ids = with_bos;
  ids.push_back(tok->eos_id());
  ids.push_back(tok->pad_id());
  EXPECT_EQ(tok->decode(ids), "Compute 1+2.");
}

TEST(Tokenizer, EveryDigitIsItsOwnToken) {
  auto tok = scorch::load_tokenizer(kModel);
  const std::string number = "9081726354";
  const auto ids = tok->encode(number);
  ASSERT_EQ(ids.size(), number.size());
  for (size_t i = 0; i < number.size(); ++i) EXPECT_EQ(tok->id_to_piece(ids[i]), std::string(1, number[i]));
}

TEST(Tokenizer, SegmentsEncodedSeparatelyDecodeToTheConcatenatedText) {
  // No dummy prefix and no whitespace folding: what chat templates rely on.
  auto tok = scorch::load_tokenizer(kModel);
  auto ids = tok->encode("User: ");
  const auto b = tok->encode("Compute 3+4.");
  ids.insert(ids.end(), b.begin(), b.end());
  EXPECT_EQ(tok->decode(ids), "User: Compute 3+4.");
}

TEST(Tokenizer, LoadsFromTheDirectoryHoldingTokenizerModel) {
  auto tok = scorch::load_tokenizer(std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart");
  EXPECT_EQ(tok->vocab_size(), 512);
}

TEST(Tokenizer, MissingCorruptOrJsonOnlyTokenizersAreUserErrorsNamingThePath) {
  const std::string dir = temp_dir("bad");
  EXPECT_THROW(scorch::load_tokenizer(dir + "/nope.model"), scorch::UserError);
  std::ofstream(dir + "/tokenizer.json") << "{}";
  try {
    scorch::load_tokenizer(dir);
    FAIL() << "expected UserError";
  } catch (const scorch::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
  const std::string corrupt = dir + "/corrupt.model";
  std::ofstream(corrupt) << "this is not a protobuf \x01\x02\x03 at all";
  try {
    scorch::load_tokenizer(corrupt);
    FAIL() << "expected UserError";
  } catch (const scorch::UserError& e) {
    EXPECT_NE(std::string(e.what()).find(corrupt), std::string::npos) << e.what();
  }
  scorch::fs::remove_all(dir);
}

// A model with padded embedding rows can sample ids the tokenizer lacks: like transformers, they
// decode to nothing. A negative id is a bug and throws.
TEST(Tokenizer, DecodeSkipsIdsBeyondTheVocabularyAndRejectsNegativeOnes) {
  auto tok = scorch::load_tokenizer(kModel);
  const std::vector<int64_t> ids = tok->encode("Compute 1+2.");
  std::vector<int64_t> padded = ids;
  padded.insert(padded.begin() + 2, tok->vocab_size());
  padded.push_back(tok->vocab_size() + 1000);
  EXPECT_EQ(tok->decode(padded), tok->decode(ids));
  EXPECT_EQ(tok->decode(ids), "Compute 1+2.");
  EXPECT_THROW(tok->decode({-1}), std::out_of_range);
}

}  // namespace

// generation_config.json beside a SentencePiece model adds its eos_token_id list to the stop ids,
// as for tokenizer.json; an id outside the vocabulary or a non-integer is refused naming the file.
TEST(Tokenizer, GenerationConfigEosIdsAreStopIdsAndAreCheckedAgainstTheVocabulary) {
  const std::string dir = temp_dir("gen");
  std::filesystem::copy_file(kModel, dir + "/tokenizer.model", std::filesystem::copy_options::overwrite_existing);
  const int64_t eos = scorch::load_tokenizer(kModel)->eos_id();
  ASSERT_GE(eos, 0);
  EXPECT_EQ(scorch::load_tokenizer(dir)->eos_ids(), std::vector<int64_t>({eos})) << "no generation_config.json";
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": [7, )" << eos << R"(, 11]})";
  EXPECT_EQ(scorch::load_tokenizer(dir)->eos_ids(), std::vector<int64_t>({eos, 7, 11}));
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": 9})";
  EXPECT_EQ(scorch::load_tokenizer(dir)->eos_ids(), std::vector<int64_t>({eos, 9}));
  const auto refused = [&](const std::string& body, const std::string& needle) {
    std::ofstream(dir + "/generation_config.json") << body;
    try {
      scorch::load_tokenizer(dir);
      ADD_FAILURE() << body << ": expected a UserError";
    } catch (const scorch::UserError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(dir + "/generation_config.json"), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  };
  refused(R"({"eos_token_id": [2, 512]})", "eos_token_id 512 is outside the vocabulary");
  refused(R"({"eos_token_id": -1})", "eos_token_id -1 is outside the vocabulary");
  refused(R"({"eos_token_id": ["</s>"]})", "must be a token id or a list of token ids");
  refused(R"({"eos_token_id": )", "not valid JSON");
  scorch::fs::remove_all(dir);
}
