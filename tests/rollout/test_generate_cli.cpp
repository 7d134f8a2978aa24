// `scorch generate` end to end: a random model from `scorch init-model` with the quickstart
// tokenizer; the output lines carry the input fields and the documented keys, are reproducible for
// a seed, agree with the engine called in-process, and bad input exits 2 with a clear message.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "model/hf_checkpoint.h"
#include "rollout/engine.h"
#include "tests/support/run_cli.h"
#include "tests/support/jobs.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace scorch {
namespace {
using scorch::test::read_jsonl;

using test::run_scorch;

const std::string kSource = SCORCH_SOURCE_DIR;
const std::string kTokenizer = kSource + "/configs/quickstart/tokenizer.model";


void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class GenerateCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = test::temp_dir("generate");
    const auto r = run_scorch("init-model --config '" + kSource + "/configs/quickstart/model_config.json' --out '" + dir_ +
                              "/model' --seed 5 --tokenizer '" + kTokenizer + "'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    write(dir_ + "/prompts.jsonl",
          "{\"prompt\": \"12+7=\", \"answer\": \"19\"}\n"
          "{\"messages\": [{\"role\": \"user\", \"content\": \"3-1=\"}], \"id\": 7}\n"
          "{\"prompt_ids\": [5, 6, 7, 8]}\n");
  }
  static std::string dir_;
  std::string model() const { return "'" + dir_ + "/model'"; }
};
std::string GenerateCli::dir_;

TEST_F(GenerateCli, WritesOneLinePerSampleWithInputFieldsAndReproducesForASeed) {
  const std::string args = "generate --model " + model() + " --prompts '" + dir_ + "/prompts.jsonl' --n 2 --temperature 0.9 "
                           "--max-new-tokens 8 --seed 3 --chat-template plain --out '" + dir_;
  auto r = run_scorch(args + "/a.jsonl'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_scorch(args + "/b.jsonl'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(slurp(dir_ + "/a.jsonl"), slurp(dir_ + "/b.jsonl"));

  const auto lines = read_jsonl(dir_ + "/a.jsonl");
  ASSERT_EQ(lines.size(), 6u);
  const auto tok = load_tokenizer(kTokenizer);
  const ChatRenderer chat(*tok, "plain");
  EXPECT_EQ(lines[0]["answer"], "19");
  EXPECT_EQ(lines[2]["id"], 7);
  EXPECT_EQ(lines[0]["prompt_ids"].get<std::vector<int64_t>>(), chat.render_prompt({ChatMessage{"user", "12+7="}}));
  EXPECT_EQ(lines[2]["prompt_ids"].get<std::vector<int64_t>>(), chat.render_prompt({ChatMessage{"user", "3-1="}}));
  EXPECT_EQ(lines[4]["prompt_ids"].get<std::vector<int64_t>>(), (std::vector<int64_t>{5, 6, 7, 8}));
  const std::set<std::string> reasons = {"eos", "stop", "length"};
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    EXPECT_EQ(l["sample_index"], static_cast<int>(i % 2));
    const auto ids = l["completion_ids"].get<std::vector<int64_t>>();
    ASSERT_FALSE(ids.empty());
    EXPECT_LE(ids.size(), 8u);
    EXPECT_EQ(l["logprobs"].size(), ids.size());
    for (const auto& lp : l["logprobs"]) EXPECT_LE(lp.get<double>(), 0.0);
    EXPECT_EQ(l["completion"], tok->decode(ids));
    EXPECT_TRUE(reasons.count(l["finish_reason"].get<std::string>()));
    if (l["finish_reason"] == "length") EXPECT_EQ(ids.size(), 8u);
  }
}

TEST_F(GenerateCli, GreedyOutputEqualsTheEngineInProcess) {
  const auto r = run_scorch("generate --model " + model() + " --prompts '" + dir_ + "/prompts.jsonl' --temperature 0 "
                            "--max-new-tokens 12 --chat-template chatml --out '" + dir_ + "/greedy.jsonl'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = read_jsonl(dir_ + "/greedy.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_FALSE(lines[0].contains("sample_index"));  // n = 1
  const Transformer m = load_hf_model(dir_ + "/model");
  const auto tok = load_tokenizer(kTokenizer);
  const ChatRenderer chat(*tok, "chatml");
  EngineOptions opts;
  opts.extra_eos_ids = chat.stop_ids();
  GenerationEngine engine(m, tok.get(), opts);
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 12;
  for (const auto& l : lines) {
    const auto s = engine.generate({l["prompt_ids"].get<std::vector<int64_t>>()}, p)[0];
    EXPECT_EQ(l["completion_ids"].get<std::vector<int64_t>>(), s.completion_ids);
    EXPECT_EQ(l["finish_reason"], finish_reason_name(s.finish_reason));
  }
  // Static-shape decode steps (the CUDA-graph path, eager on the CPU) write the same samples.
  const auto st = run_scorch("generate --model " + model() + " --prompts '" + dir_ + "/prompts.jsonl' --temperature 0 "
                             "--max-new-tokens 12 --chat-template chatml --decode-steps static --out '" + dir_ + "/static.jsonl'");
  ASSERT_EQ(st.exit_code, 0) << st.output;
  const auto static_lines = read_jsonl(dir_ + "/static.jsonl");
  ASSERT_EQ(static_lines.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(static_lines[i]["completion_ids"], lines[i]["completion_ids"]);
  // ... and so do the static steps with the fused decode attention op and without lookahead.
  const auto fl = run_scorch("generate --model " + model() + " --prompts '" + dir_ + "/prompts.jsonl' --temperature 0 "
                             "--max-new-tokens 12 --chat-template chatml --decode-steps static --fused-decode-attention "
                             "--no-lookahead --out '" + dir_ + "/fused.jsonl'");
  ASSERT_EQ(fl.exit_code, 0) << fl.output;
  const auto fused_lines = read_jsonl(dir_ + "/fused.jsonl");
  ASSERT_EQ(fused_lines.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(fused_lines[i]["completion_ids"], lines[i]["completion_ids"]);
}

TEST_F(GenerateCli, QuickLookPromptPrintsAndTemplateNoneUsesTheTokenizerAlone) {
  const auto r = run_scorch("generate --model " + model() + " --prompt '5+5=' --chat-template none --max-new-tokens 4 --seed 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--- sample 0"), std::string::npos) << r.output;
  // The JSON record follows the text; its prompt ids are BOS (the tokenizer has one) + encode(text).
  const auto tok = load_tokenizer(kTokenizer);
  const auto brace = r.output.rfind("\n{");
  ASSERT_NE(brace, std::string::npos) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(brace + 1));
  EXPECT_EQ(j["prompt_ids"].get<std::vector<int64_t>>(), tok->encode("5+5=", /*add_bos=*/tok->bos_id() >= 0));
}

TEST_F(GenerateCli, BadInputExitsTwoWithAClearMessage) {
  const std::string base = "generate --model " + model() + " --prompts '" + dir_ + "/prompts.jsonl' --out '" + dir_ + "/x.jsonl' ";
  struct Case { std::string args, expect; };
  write(dir_ + "/bad_json.jsonl", "{\"prompt\": \"ok\"}\n{not json\n");
  write(dir_ + "/empty_prompt.jsonl", "{\"prompt_ids\": []}\n");
  std::string long_ids = "[";
  for (int i = 0; i < 600; ++i) long_ids += (i ? "," : "") + std::to_string(10 + i % 100);
  write(dir_ + "/long.jsonl", "{\"prompt_ids\": " + long_ids + "]}\n");
  const std::vector<Case> cases = {
      {base + "--n 0", "--n: Value 0 not in range 1 to 1048576"},
      {base + "--temperature -1", "temperature"},
      {base + "--top-p 1.5", "top_p"},
      {base + "--top-p 0", "top_p"},
      {base + "--chat-template nope", "nope"},
      {base + "--decode-steps graph", "decode steps must be auto, dynamic, static or cuda_graph"},
      {"generate --model '" + dir_ + "/missing' --prompt hi", "missing"},
      {"generate --model " + model() + " --prompts '" + dir_ + "/bad_json.jsonl' --out '" + dir_ + "/x.jsonl'", "bad_json.jsonl:2"},
      {"generate --model " + model() + " --prompts '" + dir_ + "/empty_prompt.jsonl' --out '" + dir_ + "/x.jsonl'", "empty"},
      {"generate --model " + model() + " --prompts '" + dir_ + "/long.jsonl' --out '" + dir_ + "/x.jsonl'", "context"},
      {"generate --model " + model() + " --prompts '" + dir_ + "/prompts.jsonl'", "--out"},
      {"generate --model " + model(), "--prompt"},
  };
  for (const auto& c : cases) {
    const auto r = run_scorch(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("internal error"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace scorch
