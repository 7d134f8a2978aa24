// JSONL datasets: the three formats, file:line errors, skip-and-count, empty / missing files, and
// SFT tokenisation (loss mask on completion tokens with EOS included; truncation right/left/error).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "common/fs.h"
#include "data/dataset.h"
#include "data/preference_example.h"
#include "data/sft_example.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tests/support/user_error.h"

namespace {

using namespace scorch::data;

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& content, const std::string& name = "data.jsonl") {
    static int counter = 0;
    auto dir = std::filesystem::temp_directory_path() /
               ("scorch_ds_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(dir);
    path = (dir / name).string();
    std::ofstream(path) << content;
  }
  ~TempFile() { scorch::fs::remove_all(std::filesystem::path(path).parent_path().string()); }
};

using scorch::test::user_error_of;

const scorch::Tokenizer& tok() {
  static auto t = scorch::load_tokenizer(std::string(SCORCH_SOURCE_DIR) + "/configs/quickstart/tokenizer.model");
  return *t;
}

TEST(Dataset, ReadsTheThreeSftFormatsAndSkipsBlankLines) {
  TempFile f(
      "{\"prompt\": \"Compute 1+2.\", \"completion\": \"3\"}\n"
      "\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\", \"train\": false},"
      " {\"role\": \"user\", \"content\": \"c\"}, {\"role\": \"assistant\", \"content\": \"d\"}]}\r\n"
      "{\"text\": \"free text\"}\n");
  const SftDataset ds = load_sft_dataset(f.path);
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds[0].line, 1);
  ASSERT_EQ(ds[0].messages.size(), 2u);
  EXPECT_EQ(ds[0].messages[0].role, "user");
  EXPECT_EQ(ds[0].messages[1].content, "3");
  EXPECT_EQ(ds[1].line, 3);
  ASSERT_EQ(ds[1].messages.size(), 4u);
  EXPECT_FALSE(ds[1].messages[1].train);
  EXPECT_TRUE(ds[1].messages[3].train);
  EXPECT_TRUE(ds[2].is_text);
  EXPECT_EQ(ds[2].text, "free text");
}

TEST(Dataset, MalformedLineIsAUserErrorNamingFileAndLine) {
  TempFile f("{\"prompt\": \"p\", \"completion\": \"c\"}\n{\"prompt\": \"p\", \"completion\": 5}\n{not json\n");
  const std::string msg = user_error_of([&] { load_sft_dataset(f.path); });
  EXPECT_NE(msg.find(f.path + ":2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("completion"), std::string::npos) << msg;
  TempFile g("{\"prompt\": \"p\", \"completion\": \"c\"}\n\n{not json\n");
  EXPECT_NE(user_error_of([&] { load_sft_dataset(g.path); }).find(g.path + ":3"), std::string::npos);
  TempFile h("{\"messages\": [{\"role\": \"user\", \"content\": \"only a question\"}]}\n");
  EXPECT_NE(user_error_of([&] { load_sft_dataset(h.path); }).find(":1: "), std::string::npos);
  TempFile r("{\"prompt\": \"p\", \"completion\": \"c\"}\n"
             "{\"messages\": [{\"role\": \"usr\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n");
  TempFile big("{\"prompt\": \"p\", \"completion\": \"c\", \"x\": 1e999}\n");
  const std::string overflow = user_error_of([&] { load_sft_dataset(big.path); });
  EXPECT_NE(overflow.find(big.path + ":1"), std::string::npos) << overflow;
  const std::string role = user_error_of([&] { load_sft_dataset(r.path); });
  EXPECT_NE(role.find(r.path + ":2"), std::string::npos) << role;
  EXPECT_NE(role.find("'usr' is unknown"), std::string::npos) << role;
}

TEST(Dataset, SkipMalformedSkipsAndCountsBadLines) {
  TempFile f("{\"prompt\": \"p\", \"completion\": \"c\"}\n[1,2]\n{\"prompt\": \"p\"}\n{\"prompt\": \"q\", \"completion\": \"d\"}\n");
  DatasetOptions o;
  o.skip_malformed = true;
  const SftDataset ds = load_sft_dataset(f.path, o);
  EXPECT_EQ(ds.size(), 2);
  EXPECT_EQ(ds.skipped, 2);
  EXPECT_EQ(ds[1].line, 4);
}

TEST(Dataset, EmptyOrAllMalformedOrMissingFilesAreUserErrors) {
  TempFile empty("\n\n");
  EXPECT_NE(user_error_of([&] { load_sft_dataset(empty.path); }).find("no usable examples"), std::string::npos);
  TempFile bad("nope\n");
  DatasetOptions o;
  o.skip_malformed = true;
  EXPECT_NE(user_error_of([&] { load_prompt_dataset(bad.path, o); }).find("1 malformed"), std::string::npos);
  EXPECT_NE(user_error_of([&] { load_preference_dataset("/nonexistent/prefs.jsonl"); }).find("does not exist"),
            std::string::npos);
}

TEST(Dataset, PreferenceRecordsReadPromptChosenRejectedAndWeight) {
  TempFile f(
      "{\"prompt\": \"Q\", \"chosen\": \"good\", \"rejected\": \"bad\", \"weight\": 0.25}\n"
      "{\"prompt\": [{\"role\": \"user\", \"content\": \"Q2\"}], \"chosen\": [{\"role\": \"assistant\", \"content\": \"g\"}],"
      " \"rejected\": \"b\"}\n");
  const PreferenceDataset ds = load_preference_dataset(f.path);
  ASSERT_EQ(ds.size(), 2);
  EXPECT_EQ(ds[0].chosen, "good");
  EXPECT_EQ(ds[0].rejected, "bad");
  EXPECT_DOUBLE_EQ(ds[0].weight, 0.25);
  EXPECT_EQ(ds[1].prompt[0].content, "Q2");
  EXPECT_EQ(ds[1].chosen, "g");
  EXPECT_DOUBLE_EQ(ds[1].weight, 1.0);
  TempFile g("{\"prompt\": \"Q\", \"chosen\": \"good\"}\n");
  EXPECT_NE(user_error_of([&] { load_preference_dataset(g.path); }).find("rejected"), std::string::npos);
}

TEST(Dataset, PromptRecordsKeepAnswerAndExtraFields) {
  TempFile f(
      "{\"prompt\": \"Compute 2+2.\", \"answer\": \"4\", \"level\": 3, \"tags\": [\"x\"]}\n"
      "{\"prompt\": \"Compute 1+1.\", \"answer\": 2}\n"
      "{\"prompt\": \"open question\"}\n");
  const PromptDataset ds = load_prompt_dataset(f.path);
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds[0].prompt_text, "Compute 2+2.");
  EXPECT_EQ(*ds[0].answer, "4");
  EXPECT_EQ(ds[0].extra["level"], 3);
  EXPECT_EQ(ds[0].extra["tags"][0], "x");
  EXPECT_FALSE(ds[0].extra.contains("prompt"));
  EXPECT_EQ(*ds[1].answer, "2");
  EXPECT_FALSE(ds[2].answer.has_value());
}

TEST(SftExample, LossMaskCoversExactlyTheCompletionAndItsEos) {
  scorch::ChatRenderer r(tok(), "plain");
  SftRecord rec;
  rec.messages = {{"user", "Compute 47+38."}, {"assistant", "47+38=85. The answer is \\boxed{85}."}};
  const SftExample ex = tokenize_sft(rec, r, 512, Truncation::Right, "f.jsonl");
  ASSERT_EQ(ex.input_ids.size(), ex.loss_mask.size());
  std::vector<int64_t> targets, context;
  for (size_t t = 0; t < ex.input_ids.size(); ++t) (ex.loss_mask[t] ? targets : context).push_back(ex.input_ids[t]);
  ASSERT_FALSE(targets.empty());
  EXPECT_EQ(targets.back(), tok().eos_id());  // EOS is a target: the model learns to stop
  EXPECT_EQ(tok().decode(targets), "47+38=85. The answer is \\boxed{85}.");
  // Everything before the completion is context: BOS, the user turn, the "Assistant: " header.
  EXPECT_EQ(tok().decode(context), "User: Compute 47+38.\nAssistant: ");
  EXPECT_EQ(ex.input_ids.back(), tok().eos_id());  // nothing after the last target
  // Targets are contiguous.
  size_t first = 0;
  while (!ex.loss_mask[first]) ++first;
  for (size_t t = first; t < first + targets.size(); ++t) EXPECT_EQ(ex.loss_mask[t], 1);
}

TEST(SftExample, UntrainedAssistantTurnsAreContextOnly) {
  scorch::ChatRenderer r(tok(), "chatml");
  SftRecord rec;
  rec.messages = {{"user", "Q"}, {"assistant", "wrong", false}, {"user", "Fix it."}, {"assistant", "right"}};
  const SftExample ex = tokenize_sft(rec, r, 512, Truncation::Right, "f.jsonl");
  std::vector<int64_t> targets;
  for (size_t t = 0; t < ex.input_ids.size(); ++t)
    if (ex.loss_mask[t]) targets.push_back(ex.input_ids[t]);
  EXPECT_EQ(tok().decode(targets), "right<|im_end|>");
}

TEST(SftExample, TruncationRightLeftAndErrorAreCountedAndReported) {
  scorch::ChatRenderer r(tok(), "plain");
  SftRecord rec;
  rec.line = 7;
  rec.messages = {{"user", "Compute 12345+67890."}, {"assistant", "12345+67890=80235. The answer is \\boxed{80235}."}};
  const SftExample full = tokenize_sft(rec, r, 4096, Truncation::Right, "f.jsonl");
  const int64_t n = static_cast<int64_t>(full.input_ids.size());
  const int64_t max_length = n - 5;
  TruncationStats stats;
  const SftExample right = tokenize_sft(rec, r, max_length, Truncation::Right, "f.jsonl", &stats);
  EXPECT_EQ(right.input_ids, std::vector<int64_t>(full.input_ids.begin(), full.input_ids.begin() + max_length));
  EXPECT_TRUE(right.truncated);
  EXPECT_EQ(right.num_targets(), full.num_targets() - 5);  // the cut tokens were all targets (EOS among them)
  const SftExample left = tokenize_sft(rec, r, max_length, Truncation::Left, "f.jsonl", &stats);
  EXPECT_EQ(left.input_ids, std::vector<int64_t>(full.input_ids.begin() + 5, full.input_ids.end()));
  EXPECT_EQ(left.input_ids.back(), tok().eos_id());
  EXPECT_EQ(left.loss_mask[0], 0);  // the first kept token has no context to be predicted from
  EXPECT_EQ(stats.truncated, 2);
  EXPECT_EQ(stats.tokens_dropped, 10);
  const std::string msg = user_error_of([&] { tokenize_sft(rec, r, max_length, Truncation::Error, "f.jsonl"); });
  EXPECT_NE(msg.find("f.jsonl:7"), std::string::npos) << msg;
  EXPECT_NE(msg.find("max_length"), std::string::npos) << msg;
  EXPECT_THROW(parse_truncation("middle"), scorch::UserError);
}

TEST(SftExample, DatasetDropsAndCountsSamplesWithNoTargetLeft) {
  TempFile f("{\"prompt\": \"Compute 1+1+1+1+1+1+1+1+1+1.\", \"completion\": \"10\"}\n{\"prompt\": \"Hi\", \"completion\": \"ok\"}\n");
  const SftDataset ds = load_sft_dataset(f.path);
  scorch::ChatRenderer r(tok(), "plain");
  TruncationStats stats;
  const auto examples = tokenize_sft_dataset(ds, r, 12, Truncation::Right, &stats);
  ASSERT_EQ(examples.size(), 1u);
  EXPECT_EQ(examples[0].line, 2);
  EXPECT_EQ(stats.no_target, 1);
}

TEST(SftExample, TextRecordsTrainOnEveryTokenAfterBos) {
  scorch::ChatRenderer r(tok(), "plain");
  SftRecord rec;
  rec.is_text = true;
  rec.text = "The answer is 5.";
  const SftExample ex = tokenize_sft(rec, r, 512, Truncation::Right, "f.jsonl");
  EXPECT_EQ(ex.input_ids.front(), tok().bos_id());
  EXPECT_EQ(ex.input_ids.back(), tok().eos_id());
  EXPECT_EQ(ex.num_targets(), static_cast<int64_t>(ex.input_ids.size()) - 1);
}

TEST(PreferenceExample, PromptPlusChosenIsTheRenderedConversationAndTruncationCutsTheRightSide) {
  scorch::ChatRenderer r(tok(), "plain");
  PreferenceRecord rec;
  rec.line = 3;
  rec.prompt = {{"user", "Compute 40+2."}};
  rec.chosen = "40+2=42. The answer is \\boxed{42}.";
  rec.rejected = "40+2=43. The answer is \\boxed{43}.";
  rec.weight = 0.5;
  const PreferenceExample ex = tokenize_preference(rec, r, 512, Truncation::Right, "p.jsonl");
  std::vector<int64_t> joined = ex.prompt_ids;
  joined.insert(joined.end(), ex.chosen_ids.begin(), ex.chosen_ids.end());
  const auto chat = r.render({rec.prompt[0], {"assistant", rec.chosen}}).ids;
  EXPECT_EQ(joined, std::vector<int64_t>(chat.begin(), chat.begin() + joined.size()));
  EXPECT_EQ(ex.chosen_ids.back(), tok().eos_id());
  EXPECT_EQ(ex.rejected_ids.back(), tok().eos_id());
  EXPECT_DOUBLE_EQ(ex.weight, 0.5);
  const int64_t max_length = static_cast<int64_t>(ex.prompt_ids.size()) + 4;
  TruncationStats stats;
  const PreferenceExample right = tokenize_preference(rec, r, max_length, Truncation::Right, "p.jsonl", &stats);
  EXPECT_EQ(right.prompt_ids, ex.prompt_ids);
  EXPECT_EQ(right.chosen_ids, std::vector<int64_t>(ex.chosen_ids.begin(), ex.chosen_ids.begin() + 4));
  EXPECT_EQ(stats.truncated, 1);
  EXPECT_EQ(stats.tokens_dropped, static_cast<int64_t>(ex.chosen_ids.size() + ex.rejected_ids.size()) - 8);
  const PreferenceExample left = tokenize_preference(rec, r, static_cast<int64_t>(ex.chosen_ids.size()) + 3, Truncation::Left, "p.jsonl");
  EXPECT_EQ(left.prompt_ids, std::vector<int64_t>(ex.prompt_ids.end() - 3, ex.prompt_ids.end()));
  EXPECT_EQ(left.chosen_ids, ex.chosen_ids);
  EXPECT_NE(user_error_of([&] { tokenize_preference(rec, r, max_length, Truncation::Error, "p.jsonl"); }).find("p.jsonl:3"),
            std::string::npos);
}

}  // namespace
