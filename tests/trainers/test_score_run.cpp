// SCoRe end to end on CPU (seconds): the quickstart tokenizer, synthetic arithmetic prompts with
// gold answers, a random tiny model. `scorch train` runs Stage I then Stage II (group baseline,
// β1/β2 > 0: a reference model) with the two-attempt evaluation; the metrics are finite, the stage
// boundary is checkpointed, and a run resumed in Stage I or at the boundary repeats the
// uninterrupted run's later steps exactly, also after a SIGKILL right before or after the boundary
// checkpoint. Turn 2's context holds turn 1's exact tokens, and
// `scorch eval --attempts 2` writes exactly the two-attempt report's keys.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "config/config.h"
#include "data/dataset.h"
#include "tests/support/run_cli.h"
#include "tests/support/jobs.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/session.h"
#include "trainers/score/score_trainer.h"

namespace {
using scorch::test::read_jsonl;

using scorch::test::run_scorch;



class ScoreRun : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = scorch::test::temp_dir("score-run");
    ASSERT_FALSE(dir_.empty());
    ASSERT_EQ(scorch::test::make_tiny_job_files(dir_, 16), "");
    tok_ = scorch::test::quickstart_tokenizer();
    auto r = run_scorch("make-data --task arith --n 4 --seed 4 --out " + dir_ + "/eval.jsonl");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(dir_ + "/score.yaml") << yaml();
  }
  static void TearDownTestSuite() { scorch::fs::remove_all(dir_); }

  static std::string yaml() {
    return "trainer: score\nseed: 7\nmodel: {path: " + dir_ + "/base}\n"
           "tokenizer: {path: " + tok_ + ", chat_template: plain}\n"
           "data: {train: " + dir_ + "/train.jsonl, eval: " + dir_ + "/eval.jsonl, eval_limit: 4}\n"
           "train: {micro_batch_size: 2, gradient_accumulation_steps: 2, threads: 1}\n"
           "optim: {learning_rate: 1.0e-3}\n"
           "generation: {max_prompt_length: 96, max_completion_length: 8, eval_max_new_tokens: 8, stop: [e, a, o]}\n"
           "score: {stage: both, stage1_steps: 2, stage2_steps: 1, policy_gradient: group, num_generations: 2}\n"
           "rewards: [{name: math_answer}, {name: overlong, params: {max_length: 8, cache: 6}}]\n"
           "checkpoint: {save_every: 0, keep_last: 5}\n"
           "log: {every: 1, level: warn, samples: 2}\n";
  }
  static std::string dir_, tok_;
};
std::string ScoreRun::dir_, ScoreRun::tok_;

// SCoRe with LoRA: both stages train the adapter, the engine samples it (a new adapter checksum
// and on-policy log-probs every step) and the per-turn KL is to the base with the adapter disabled.
TEST_F(ScoreRun, LoraTrainsTheAdapterInBothStagesAgainstTheBaseReference) {
  const std::string run = dir_ + "/lora";
  auto r = run_scorch("train " + dir_ + "/score.yaml --run-dir " + run +
                      " --set lora.enabled=true --set lora.target_modules=all-linear --set optim.learning_rate=2e-2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  std::set<double> checksums;
  for (const auto& line : lines) {
    EXPECT_LT(line["rollout/logprob_diff_max"].get<double>(), 1e-4) << line.dump();
    checksums.insert(line["rollout/adapter_checksum"].get<double>());
  }
  EXPECT_EQ(checksums.size(), 3u);
  EXPECT_LT(lines[0]["kl"].get<double>(), 1e-9);  // lora_B = 0 at the first step
  EXPECT_GT(lines[2]["kl"].get<double>(), 1e-9);
  EXPECT_TRUE(scorch::fs::exists(run + "/export/adapter_config.json"));
}

TEST_F(ScoreRun, BothStagesLogFiniteMetricsCheckpointTheBoundaryAndResumeExactlyInEitherStage) {
  const std::string run = dir_ + "/run";
  auto r = run_scorch("train " + dir_ + "/score.yaml --run-dir " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  const double stages[] = {1, 1, 2};
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& line = lines[i];
    EXPECT_EQ(line["score/stage"].get<double>(), stages[i]);
    for (const char* key : {"loss", "grad_norm", "reward/turn1", "reward/turn2", "reward/shaped_turn2", "kl",
                            "kl/turn1", "kl/turn2", "entropy", "score/edit_distance", "advantages/abs_mean",
                            "rollout/logprob_diff_mean", "completions/turn2_mean_length"}) {
      ASSERT_TRUE(line.contains(key)) << key << " at step " << i + 1;
      EXPECT_TRUE(std::isfinite(line[key].get<double>())) << key;
    }
    // Stage I and II both train on sampled tokens that the rollout produced: same log-probs.
    EXPECT_LT(line["rollout/logprob_diff_mean"].get<double>(), 1e-3);
  }
  EXPECT_EQ(lines[0]["kl"].get<double>(), 0.0);  // the first policy is the reference
  EXPECT_GT(lines[1]["kl/turn1"].get<double>(), 0.0);
  for (const char* key : {"eval_accuracy", "eval_accuracy_t2", "eval_delta", "eval_delta_i_to_c", "eval_delta_c_to_i",
                          "eval_edit_distance", "eval_changed_fraction"}) {
    ASSERT_TRUE(lines[2].contains(key)) << key;
    EXPECT_TRUE(std::isfinite(lines[2][key].get<double>())) << key;
  }
  EXPECT_TRUE(scorch::fs::exists(run + "/checkpoints/step-000002/model.safetensors"));  // the stage boundary
  EXPECT_FALSE(scorch::fs::exists(run + "/checkpoints/step-000001"));                   // save_every 0
  EXPECT_TRUE(scorch::fs::exists(run + "/export/config.json"));
  const auto samples = read_jsonl(run + "/samples.jsonl");
  ASSERT_EQ(samples.size(), 6u);
  EXPECT_TRUE(samples[0].contains("attempt1") && samples[0].contains("attempt2") && samples[0].contains("reward2"));

  // Resume at the boundary (the next step is Stage II) repeats step 3 bitwise.
  const std::string resumed = dir_ + "/resumed";
  r = run_scorch("train " + dir_ + "/score.yaml --run-dir " + resumed + " --resume " + run + "/checkpoints/step-000002");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto again = read_jsonl(resumed + "/metrics.jsonl");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0]["step"], lines[2]["step"]);
  EXPECT_EQ(again[0]["score/stage"].get<double>(), 2.0);
  for (const char* key : {"loss", "grad_norm", "reward/turn1", "reward/turn2", "kl/turn1"}) {
    EXPECT_EQ(again[0][key].get<double>(), lines[2][key].get<double>()) << key;
  }

  // Resume inside Stage I: a run saved every step, resumed from step 1, repeats steps 2 and 3.
  const std::string every = dir_ + "/every";
  r = run_scorch("train " + dir_ + "/score.yaml --run-dir " + every + " --set checkpoint.save_every=1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string resumed1 = dir_ + "/resumed1";
  r = run_scorch("train " + dir_ + "/score.yaml --run-dir " + resumed1 + " --resume " + every + "/checkpoints/step-000001");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto from1 = read_jsonl(resumed1 + "/metrics.jsonl");
  ASSERT_EQ(from1.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(from1[i]["score/stage"].get<double>(), stages[i + 1]);
    for (const char* key : {"loss", "grad_norm", "reward/turn2"}) {
      EXPECT_EQ(from1[i][key].get<double>(), lines[i + 1][key].get<double>()) << key << " step " << i + 2;
    }
  }

  // A resume with a different stage boundary is refused (exit 2) rather than mixing the stages.
  r = run_scorch("train " + dir_ + "/score.yaml --run-dir " + dir_ + "/bad --set score.stage1_steps=1 --resume " + run +
                 "/checkpoints/step-000002");
  EXPECT_EQ(r.exit_code, 2) << r.output;

  // Two-attempt evaluation of the result: exactly the report's keys, and a terminal table.
  r = run_scorch("eval --model " + run + "/export --data " + dir_ + "/eval.jsonl --attempts 2 --max-new-tokens 8 --out " +
                 dir_ + "/eval.json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("delta_i_to_c"), std::string::npos) << r.output;
  std::ifstream in(dir_ + "/eval.json");
  const nlohmann::json report = nlohmann::json::parse(in);
  std::set<std::string> keys;
  for (auto& [k, v] : report.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"accuracy_t1", "accuracy_t2", "delta", "delta_i_to_c", "delta_c_to_i",
                                         "edit_distance", "changed_fraction", "n"}));
  EXPECT_EQ(report["n"].get<int>(), 4);
  EXPECT_NEAR(report["delta"].get<double>(),
              report["delta_i_to_c"].get<double>() - report["delta_c_to_i"].get<double>(), 1e-12);
  // Sampling instead of greedy decoding is an option.
  r = run_scorch("eval --model " + run + "/export --data " + dir_ + "/eval.jsonl --attempts 2 --max-new-tokens 8 "
                 "--temperature 1.0 --seed 3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// Killed by SIGKILL around the Stage I → II boundary checkpoint (the only one before the last with
// save_every 0): right before it is written (nothing to resume from, so the run starts over) and
// right after (the run resumes in Stage II). Each time the same command again ends with the
// uninterrupted run's weights and per-step losses, and no partial checkpoint or export is left.
TEST_F(ScoreRun, KilledAtTheStageBoundaryResumesToTheSameWeights) {
  const std::string train = "train " + dir_ + "/score.yaml --run-dir ";
  const std::string full = dir_ + "/boundary-full", run = dir_ + "/boundary-killed";
  auto r = run_scorch(train + full);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  r = scorch::test::run_scorch_killed_at("before-checkpoint:1", train + run);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "not killed before the boundary checkpoint\n" << r.output;
  EXPECT_EQ(read_jsonl(run + "/metrics.jsonl").size(), 2u);  // Stage I logged, its end not saved
  EXPECT_FALSE(scorch::fs::exists(run + "/checkpoints/latest"));
  r = scorch::test::run_scorch_killed_at("after-checkpoint:1", train + run);
  ASSERT_EQ(r.exit_code, scorch::test::kKilledExitCode) << "not killed after the boundary checkpoint\n" << r.output;
  EXPECT_EQ(scorch::fs::read_file(run + "/checkpoints/latest"), "step-000002\n");
  EXPECT_FALSE(scorch::fs::exists(run + "/export"));
  r = run_scorch(train + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  EXPECT_TRUE(scorch::fs::read_file(full + "/export/model.safetensors") ==
              scorch::fs::read_file(run + "/export/model.safetensors"))
      << "the resumed run's final weights differ from the uninterrupted run's";
  const auto a = read_jsonl(full + "/metrics.jsonl"), b = read_jsonl(run + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 3u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    for (const char* key : {"loss", "grad_norm", "reward/turn2", "score/stage"}) {
      EXPECT_EQ(a[i][key], b[i][key]) << key << " at step " << i + 1;
    }
  }
  EXPECT_EQ(scorch::fs::read_file(full + "/samples.jsonl"), scorch::fs::read_file(run + "/samples.jsonl"));
  EXPECT_EQ(scorch::test::partial_files(run), std::vector<std::string>{});
}

TEST_F(ScoreRun, TurnTwoSeesExactlyTurnOnesTokensFollowedByTheCorrectionTurn) {
  const scorch::Config config = scorch::parse_config(yaml(), "score test config");
  scorch::ModelSession session = scorch::open_model_session(config);
  auto train = scorch::data::load_prompt_dataset(config.data.train).records;
  const std::string run = dir_ + "/direct";
  scorch::fs::make_directories(run);
  scorch::trainers::ScoreTask task(config, session, train, {}, run);
  scorch::StepMetrics m;
  const auto units = task.prepare_step(1, m);
  const auto& episodes = task.last_episodes();
  ASSERT_EQ(episodes.size(), 8u);  // 4 prompts × 2
  const std::vector<int64_t> correction =
      session.renderer->render_continuation({scorch::ChatMessage{"user", config.score.correction_instruction}});
  const int64_t eot = session.renderer->end_of_turn_id();
  int64_t with_two_turns = 0;
  for (const auto& e : episodes) {
    ASSERT_GE(e.turns.size(), 1u);
    const std::vector<int64_t> turn1(e.tokens.begin() + e.turns[0].begin, e.tokens.begin() + e.turns[0].end);
    EXPECT_EQ(e.turns[0].begin, e.prompt_length);
    EXPECT_EQ(session.tokenizer->decode(turn1), e.turns[0].text);
    if (e.turns.size() < 2) continue;
    ++with_two_turns;
    // Turn 2's context = prompt ‖ turn 1's sampled ids ‖ (closing id) ‖ the rendered correction turn.
    std::vector<int64_t> want(e.tokens.begin(), e.tokens.begin() + e.prompt_length);
    want.insert(want.end(), turn1.begin(), turn1.end());
    if (turn1.empty() || turn1.back() != eot) want.push_back(eot);
    want.insert(want.end(), correction.begin(), correction.end());
    const std::vector<int64_t> context(e.tokens.begin(), e.tokens.begin() + e.turns[1].begin);
    EXPECT_EQ(context, want);
    for (int64_t k = e.turns[0].end; k < e.turns[1].begin; ++k) EXPECT_EQ(e.turn_mask[k], 0);  // never trained
  }
  EXPECT_EQ(with_two_turns, 8);
  // The micro-batch rows are the episodes' token sequences, unchanged, and train exactly the turns' tokens.
  const auto& batches = task.last_batches();
  ASSERT_EQ(batches.size(), units.size());
  size_t e = 0;
  for (const auto& b : batches) {
    for (int64_t i = 0; i < b.input_ids.size(0); ++i, ++e) {
      const auto& ep = episodes[e];
      const int64_t L = static_cast<int64_t>(ep.tokens.size());
      const at::Tensor row = b.input_ids[i].narrow(0, 0, L);
      EXPECT_TRUE(at::equal(row, at::tensor(ep.tokens, at::kLong))) << "episode " << e;
      int64_t generated = 0;
      for (int32_t t : ep.turn_mask) generated += t > 0;
      EXPECT_EQ(b.completion_mask[i].sum().item<int64_t>(), generated);
      EXPECT_EQ(b.advantages.dim(), 2);
    }
  }
  EXPECT_EQ(e, episodes.size());
}

}  // namespace
