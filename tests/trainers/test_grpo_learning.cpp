// GRPO end to end on a toy task, through the shared training loop: a tiny random Llama model with a
// byte tokenizer learns a trivially learnable reward (the completion's first byte is ASCII < 64,
// about a quarter of the vocabulary at initialisation) within a fixed number of steps, with a fixed
// seed. The same run checks the step's metrics (reward, KL, clip ratios, lengths, rollout mismatch)
// are present and finite, that the β > 0 reference model stays frozen while the policy moves, and
// the per-sequence layout (prompt ‖ completion, right padded) against a one-row forward; and a run
// killed mid-way and restarted resumes bitwise identically.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/run_dir.h"
#include "config/config.h"
#include "data/dataset.h"
#include "kernels/ops.h"
#include "model/model_config.h"
#include "model/transformer.h"
#include "rewards/reward.h"
#include "tests/rollout/rollout_fixtures.h"
#include "tokenizer/chat_template.h"
#include "train/loop.h"
#include "train/session.h"
#include "trainers/common/policy_gradient.h"
#include "trainers/common/policy_loss.h"
#include "trainers/grpo/grpo_trainer.h"

namespace scorch::trainers {
namespace {

// 1 when the first generated token is a byte below 64 (ids 1..64 of the byte tokenizer), else 0.
class FirstByteLow : public rewards::Reward {
 public:
  rewards::RewardOutput score(const rewards::RewardBatch& batch) override {
    rewards::RewardOutput out;
    for (const auto& s : batch.samples) {
      out.values.push_back(!s.completion_ids.empty() && s.completion_ids[0] >= 1 && s.completion_ids[0] <= 64 ? 1.0 : 0.0);
    }
    return out;
  }
};

void register_test_reward() {
  static bool done = false;
  if (done) return;
  rewards::RewardInfo info;
  info.description = "test: first byte < 64";
  info.make = [](rewards::Params& p, const rewards::RewardContext&) -> std::unique_ptr<rewards::Reward> {
    p.finish();
    return std::make_unique<FirstByteLow>();
  };
  rewards::register_reward("test_first_byte_low", info);
  done = true;
}

// Near-uniform next-token distributions (initializer_range 0.02), so every group starts mixed.
std::unique_ptr<Transformer> small_model() {
  nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", 257}, {"hidden_size", 32},
                      {"intermediate_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0}, {"initializer_range", 0.02}, {"tie_word_embeddings", false},
                      {"eos_token_id", std::vector<int64_t>{0}}};
  auto m = std::make_unique<Transformer>(model_config_from_json(j, "tiny test model"));
  m->init_weights(11);
  return m;
}

ModelSession tiny_session() {
  at::set_num_threads(1);  // as train.threads: 1 would; the machine running tests is shared
  ModelSession s;
  s.model = small_model();
  s.tokenizer = std::make_unique<test::ByteTokenizer>();
  s.renderer = std::make_unique<ChatRenderer>(*s.tokenizer, "none");
  s.device = at::kCPU;
  return s;
}

std::vector<data::PromptRecord> toy_prompts() {
  std::vector<data::PromptRecord> out;
  for (const char* text : {"hello", "abc", "xyz!", "grpo", "toy", "zz", "q?", "seven"}) {
    data::PromptRecord r;
    r.prompt = {ChatMessage{"user", text}};
    r.prompt_text = text;
    out.push_back(r);
  }
  return out;
}

Config toy_config(const std::string& run_dir) {
  Config c;
  c.trainer = "grpo";
  c.seed = 3;
  c.train.max_steps = 25;
  c.train.micro_batch_size = 2;
  c.train.gradient_accumulation_steps = 2;
  c.train.max_grad_norm = 1.0;
  c.optim.learning_rate = 3e-2;
  c.generation.temperature = 1.0;
  c.generation.max_prompt_length = 16;
  c.generation.max_completion_length = 2;
  c.grpo.num_generations = 4;
  c.grpo.beta = 0.01;
  c.grpo.loss_type = GrpoLossType::kDapo;
  RewardSpec spec;
  spec.name = "test_first_byte_low";
  c.rewards.push_back(spec);
  c.checkpoint.export_final = false;
  c.log.every = 1;
  c.log.progress = false;
  c.run_dir = run_dir;
  return c;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Every parameter drawn from N(0, 0.3²) (outputs far from uniform) and set to require grad.
void randomize_parameters(Transformer& model, uint64_t seed) {
  for (auto& [name, t] : model.named_parameters()) {
    at::NoGradGuard no_grad;
    t.normal_(0.0, 0.3, at::make_generator<at::CPUGeneratorImpl>(seed));
    t.requires_grad_(true);
  }
}

// Policy rows of these prompts and completions (rollout log-probs -1), advantage(r, j) one per row
// (j = 0) or one per token.
template <class AdvantageFn>
std::vector<PolicyRow> policy_rows(const std::vector<std::vector<int64_t>>& prompts,
                                   const std::vector<std::vector<int64_t>>& completions, AdvantageFn advantage,
                                   bool per_token) {
  std::vector<PolicyRow> rows;
  for (size_t r = 0; r < prompts.size(); ++r) {
    PolicyRow row;
    row.prompt = &prompts[r];
    row.completion = completions[r];
    row.logprobs.assign(completions[r].size(), -1.0f);
    for (size_t j = 0; j < (per_token ? completions[r].size() : 1); ++j) row.advantages.push_back(advantage(r, j));
    rows.push_back(row);
  }
  return rows;
}

TEST(GrpoTrainer, CompletionLogprobsMatchAOneRowForwardOfPromptAndCompletion) {
  auto model = small_model();
  // Two rows of different prompt and completion lengths, right padded.
  const std::vector<std::vector<int64_t>> prompts = {{5, 6, 7}, {9}};
  const std::vector<std::vector<int64_t>> completions = {{11, 12}, {13, 14, 0}};
  PolicyBatch b;
  b.input_ids = at::tensor(std::vector<int64_t>{5, 6, 7, 11, 12, 9, 13, 14, 0, 3}, at::kLong).view({2, 5});
  b.prompt_lengths = at::tensor(std::vector<int64_t>{3, 1}, at::kLong);
  b.completion_ids = at::tensor(std::vector<int64_t>{11, 12, -100, 13, 14, 0}, at::kLong).view({2, 3});
  at::NoGradGuard no_grad;
  auto [logp, entropy] = completion_logprobs(*model, b, 0.7, true);
  for (size_t r = 0; r < 2; ++r) {
    std::vector<int64_t> seq = prompts[r];
    seq.insert(seq.end(), completions[r].begin(), completions[r].end());
    const at::Tensor logits = test::full_forward_logits(*model, seq).to(at::kDouble) / 0.7;  // [L, V]
    const at::Tensor lsm = at::log_softmax(logits, -1);
    for (size_t j = 0; j < completions[r].size(); ++j) {
      const int64_t pos = static_cast<int64_t>(prompts[r].size() + j) - 1;
      const double expected = lsm[pos][completions[r][j]].item<double>();
      EXPECT_NEAR(logp[static_cast<int64_t>(r)][static_cast<int64_t>(j)].item<double>(), expected, 1e-5);
      const double ent = -(lsm[pos].exp() * lsm[pos]).sum().item<double>();
      EXPECT_NEAR(entropy[static_cast<int64_t>(r)][static_cast<int64_t>(j)].item<double>(), ent, 1e-4);
    }
  }
}

// Packed rows (several per forward row, positions restarting, block-diagonal mask) give the padded
// rows' log-probs, entropies and policy-loss gradients up to fp32 reassociation, with fewer token
// positions in the forward. Rows of 3, 4, 2, 5, 2 and 7 tokens, first fit longest first into rows
// of 2 x 7: [7 5 2] [4 3 2] = 2 rows x 14 = 28 positions instead of 6 x 7 = 42.
TEST(GrpoTrainer, PackedRowsGiveThePaddedRowsLogprobsAndGradients) {
  auto model = small_model();
  randomize_parameters(*model, 7);
  const std::vector<std::vector<int64_t>> prompts = {{5, 6}, {9}, {4}, {7, 8, 1}, {2}, {3, 3, 4, 5}};
  const std::vector<std::vector<int64_t>> completions = {{11}, {13, 14, 0}, {6}, {20, 21}, {30}, {40, 41, 42}};
  const std::vector<PolicyRow> rows = policy_rows(prompts, completions, [](size_t r, size_t) {
    return static_cast<float>(r) - 2.5f;
  }, /*per_token=*/false);
  const PolicyBatch padded = pack_policy_batch(rows, /*pad_id=*/0, at::kCPU, /*pack=*/false);
  const PolicyBatch packed = pack_policy_batch(rows, /*pad_id=*/0, at::kCPU, /*pack=*/true);
  EXPECT_FALSE(padded.layout.packed);
  EXPECT_EQ(padded.layout.slots, 42);
  ASSERT_TRUE(packed.layout.packed);
  EXPECT_EQ(packed.layout.slots, 28);
  EXPECT_EQ(packed.layout.input_ids.sizes(), (std::vector<int64_t>{2, 14}));
  EXPECT_EQ(packed.tokens, 23);

  // Past rows of 2 x 1,024 tokens the dense block-diagonal mask would outweigh the padding: padded.
  std::vector<int64_t> long_prompt(1000, 5), short_prompt(4, 5);
  std::vector<PolicyRow> long_rows(3);
  for (size_t r = 0; r < 3; ++r) {
    long_rows[r].prompt = r == 0 ? &long_prompt : &short_prompt;
    long_rows[r].completion = std::vector<int64_t>(r == 0 ? 25 : 3, 7);
    long_rows[r].logprobs.assign(long_rows[r].completion.size(), -1.0f);
    long_rows[r].advantages = {1.0f};
  }
  EXPECT_FALSE(pack_policy_batch(long_rows, 0, at::kCPU, true).layout.packed);  // 2 x 1025 > 2048
  long_prompt.resize(990);
  EXPECT_TRUE(pack_policy_batch(long_rows, 0, at::kCPU, true).layout.packed);   // 2 x 1015 <= 2048

  PolicyLossOptions options;
  options.entropy_coef = 0.01;  // the entropies' gradient too
  std::vector<std::vector<at::Tensor>> grads;
  std::vector<at::Tensor> logps, entropies;
  for (const PolicyBatch* b : {&padded, &packed}) {
    for (auto& [name, t] : model->named_parameters()) t.mutable_grad() = at::Tensor();
    std::map<std::string, double> metrics;
    policy_gradient_step(*model, *b, 0.7, options, /*denominator=*/23.0, 1, false, metrics);
    std::vector<at::Tensor> g;
    for (auto& [name, t] : model->named_parameters()) g.push_back(t.grad().clone());
    grads.push_back(g);
    at::NoGradGuard no_grad;
    auto [logp, entropy] = completion_logprobs(*model, *b, 0.7, true);
    logps.push_back(logp);
    entropies.push_back(entropy);
  }
  const at::Tensor valid = padded.completion_ids.ge(0);
  ASSERT_EQ(valid.sum().item<int64_t>(), 11);
  const double logp_gap = (logps[0] - logps[1]).abs().masked_select(valid).max().item<double>();
  const double ent_gap = (entropies[0] - entropies[1]).abs().masked_select(valid).max().item<double>();
  EXPECT_LT(logp_gap, 1e-5) << logp_gap;
  EXPECT_LT(ent_gap, 1e-5) << ent_gap;
  EXPECT_GT(logps[0].masked_select(valid).abs().min().item<double>(), 0.1);  // not a trivial case
  for (size_t i = 0; i < grads[0].size(); ++i) {
    const double scale = grads[0][i].abs().max().item<double>();
    ASSERT_GT(scale, 0.0) << i;
    EXPECT_LT((grads[0][i] - grads[1][i]).abs().max().item<double>(), 1e-4 * scale) << i;
  }
}

// policy_gradient_step differentiates a token-separable loss inside the LM head's forward
// (Transformer::token_loss + policy_token_loss). Against the plain path -- log-probs with autograd,
// policy_loss, backward -- for every loss type, with π_old (clipping active), a per-token β and
// reference (SCoRe's), per-token advantages, the entropy bonus: the same numerator, metrics and
// parameter gradients up to fp32 reassociation.
TEST(GrpoTrainer, TheInForwardPolicyGradientEqualsPolicyLossThenBackward) {
  auto model = small_model();
  randomize_parameters(*model, 11);
  const std::vector<std::vector<int64_t>> prompts = {{5, 6}, {9}, {4, 7, 8}, {2}};
  const std::vector<std::vector<int64_t>> completions = {{11, 3}, {13, 14, 0}, {6}, {20, 21, 22, 23}};
  const std::vector<PolicyRow> rows = policy_rows(prompts, completions, [](size_t r, size_t j) {
    return 0.7f * static_cast<float>(r) - 1.0f + 0.3f * static_cast<float>(j);
  }, /*per_token=*/true);
  PolicyBatch b = pack_policy_batch(rows, /*pad_id=*/0, at::kCPU);
  ASSERT_EQ(b.advantages.dim(), 2);  // per-token advantages
  {
    at::NoGradGuard no_grad;
    const at::Tensor logp = completion_logprobs(*model, b, 0.7, false).first;
    at::Tensor noise = at::randn(logp.sizes(), at::make_generator<at::CPUGeneratorImpl>(5));
    b.old_logp = logp + 0.3 * noise;                    // ratios away from 1: some clipped
    b.ref_logp = logp - 0.2 * noise.abs();
    b.kl_coef = at::rand(logp.sizes(), at::make_generator<at::CPUGeneratorImpl>(6)) * 0.1;
  }
  for (GrpoLossType type : {GrpoLossType::kDapo, GrpoLossType::kGrpo, GrpoLossType::kDrGrpo, GrpoLossType::kBnpo}) {
    SCOPED_TRACE(static_cast<int>(type));
    PolicyLossOptions options;
    options.loss_type = type;
    options.epsilon_high = 0.28;
    options.entropy_coef = 0.01;
    options.max_completion_length = 4;
    ASSERT_TRUE(policy_loss_is_token_separable(options));
    std::vector<at::Tensor> fused_grads, plain_grads;
    for (auto& [name, t] : model->named_parameters()) t.mutable_grad() = at::Tensor();
    std::map<std::string, double> metrics;
    const double numerator = policy_gradient_step(*model, b, 0.7, options, /*denominator=*/5.0, 1, false, metrics).first;
    for (auto& [name, t] : model->named_parameters()) fused_grads.push_back(t.grad().clone());

    for (auto& [name, t] : model->named_parameters()) t.mutable_grad() = at::Tensor();
    auto [logp, entropy] = completion_logprobs(*model, b, 0.7, true);
    PolicyLossInputs in;
    in.logp = logp, in.entropy = entropy, in.old_logp = b.old_logp, in.ref_logp = b.ref_logp, in.kl_coef = b.kl_coef;
    in.advantages = b.advantages, in.mask = b.completion_mask;
    PolicyLossOutput plain = policy_loss(in, options, 5.0);
    plain.loss.backward();
    for (auto& [name, t] : model->named_parameters()) plain_grads.push_back(t.grad().clone());

    EXPECT_NEAR(numerator, plain.numerator.item<double>(), 1e-5 * std::abs(plain.numerator.item<double>()));
    EXPECT_GT(plain.metrics.at("clip_ratio/region_mean"), 0.0);  // the clip is exercised
    for (const auto& [k, v] : plain.metrics) EXPECT_NEAR(metrics.at(k), v, 1e-6) << k;
    for (size_t i = 0; i < plain_grads.size(); ++i) {
      const double scale = plain_grads[i].abs().max().item<double>();
      ASSERT_GT(scale, 0.0) << i;
      EXPECT_LT((fused_grads[i] - plain_grads[i]).abs().max().item<double>(), 1e-4 * scale) << i;
    }
  }
  // GSPO's sequence-level ratio and the entropy mask take the plain path.
  PolicyLossOptions gspo;
  gspo.importance_sampling_level = ImportanceSamplingLevel::kSequence;
  EXPECT_FALSE(policy_loss_is_token_separable(gspo));
  PolicyLossOptions masked;
  masked.top_entropy_quantile = 0.5;
  EXPECT_FALSE(policy_loss_is_token_separable(masked));
}

TEST(GrpoTrainer, ValidationRejectsSingleGenerationsAndTooLongSequences) {
  register_test_reward();
  Config c = toy_config("unused");
  c.grpo.num_generations = 1;
  EXPECT_THROW(validate_grpo_config(c, 64), UserError);
  c.grpo.num_generations = 4;
  c.generation.max_prompt_length = 63;  // 63 + 2 > 64
  EXPECT_THROW(validate_grpo_config(c, 64), UserError);
  c.generation.max_prompt_length = 16;
  EXPECT_NO_THROW(validate_grpo_config(c, 64));
  c.rewards.clear();
  EXPECT_THROW(validate_grpo_config(c, 64), UserError);
}

TEST(GrpoTrainer, LearnsAToyRewardWithAFrozenReferenceAndFiniteMetrics) {
  register_test_reward();
  const std::string dir = std::string(SCORCH_BINARY_DIR) + "/test_grpo_learning_run";
  fs::remove_all(dir);
  fs::make_directories(dir);
  const Config config = toy_config(dir);
  validate_grpo_config(config, 64);
  ModelSession session = tiny_session();
  GrpoTask task(config, session, toy_prompts(), {}, dir);
  ASSERT_NE(task.reference(), nullptr);
  const at::Tensor ref_before = task.reference()->embed_tokens_.clone();
  const at::Tensor policy_before = session.model->embed_tokens_.clone();
  RunDir run_dir{dir, false};
  run_training(config, run_dir, *session.model, task, LoopOptions{});

  const auto lines = read_jsonl(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 25u);
  for (const char* key : {"reward", "reward_std", "frac_reward_zero_std", "kl", "entropy", "clip_ratio/region_mean",
                          "clip_ratio/low_mean", "clip_ratio/high_mean", "completions/mean_length",
                          "completions/clipped_ratio", "advantages/std", "rollout/logprob_diff_mean",
                          "rewards/test_first_byte_low/mean", "time/generation", "time/training",
                          "forward/padding", "forward/padding_unpacked"}) {
    ASSERT_TRUE(lines.back().contains(key)) << key;
    EXPECT_TRUE(std::isfinite(lines.back()[key].get<double>())) << key;
  }
  // Packing never adds padding: at most what padded rows would have had.
  for (const auto& line : lines) {
    EXPECT_GE(line["forward/padding"].get<double>(), 0.0);
    EXPECT_LE(line["forward/padding"].get<double>(), line["forward/padding_unpacked"].get<double>() + 1e-12);
  }
  // The policy's own log-probs of its rollout tokens agree with the sampler's (same weights, fp32).
  EXPECT_LT(lines.front()["rollout/logprob_diff_max"].get<double>(), 1e-3);
  // μ = 1: ratio 1, nothing is clipped.
  EXPECT_EQ(lines.back()["clip_ratio/region_mean"].get<double>(), 0.0);

  const double first = lines.front()["reward"].get<double>();
  double last = 0;
  for (size_t i = lines.size() - 3; i < lines.size(); ++i) last += lines[i]["reward"].get<double>() / 3;
  EXPECT_LT(first, 0.6);
  EXPECT_GT(last, 0.9) << "reward went from " << first << " to " << last;
  EXPECT_GT(lines.back()["kl"].get<double>(), 0.0);  // the policy moved away from the reference

  EXPECT_TRUE(at::equal(task.reference()->embed_tokens_, ref_before));
  EXPECT_FALSE(at::equal(session.model->embed_tokens_, policy_before));
  EXPECT_FALSE(read_jsonl(dir + "/samples.jsonl").empty());
}

// Delegates to a GrpoTask and dies in step `fail_at`, like a killed process (after the checkpoint
// of an earlier step was written).
class Interrupted : public TrainTask {
 public:
  Interrupted(GrpoTask& task, int64_t fail_at) : task_(task), fail_at_(fail_at) {}
  int64_t total_steps() const override { return task_.total_steps(); }
  std::vector<int64_t> prepare_step(int64_t step, StepMetrics& m) override {
    if (step == fail_at_) throw std::runtime_error("killed");
    return task_.prepare_step(step, m);
  }
  double forward_backward(size_t i, double d, StepMetrics& m) override { return task_.forward_backward(i, d, m); }
  nlohmann::json data_cursor() const override { return task_.data_cursor(); }
  void restore_data_cursor(const nlohmann::json& c) override { task_.restore_data_cursor(c); }

 private:
  GrpoTask& task_;
  int64_t fail_at_;
};

TEST(GrpoTrainer, AKilledAndResumedRunContinuesBitwiseIdentically) {
  register_test_reward();
  auto run = [](const std::string& dir, int64_t fail_at) {
    Config config = toy_config(dir);
    config.train.max_steps = 6;
    config.checkpoint.save_every = 3;
    ModelSession session = tiny_session();
    GrpoTask task(config, session, toy_prompts(), {}, dir);
    Interrupted wrapper(task, fail_at);
    run_training(config, RunDir{dir, false}, *session.model, wrapper, LoopOptions{});
    return session.model->embed_tokens_.clone();
  };
  const std::string a = std::string(SCORCH_BINARY_DIR) + "/test_grpo_resume_a";
  const std::string b = std::string(SCORCH_BINARY_DIR) + "/test_grpo_resume_b";
  for (const auto& d : {a, b}) fs::remove_all(d), fs::make_directories(d);
  const at::Tensor straight = run(a, -1);
  EXPECT_THROW(run(b, 5), std::runtime_error);  // dies in step 5, after the step-3 checkpoint
  const at::Tensor resumed = run(b, -1);         // resumes from step 3
  EXPECT_TRUE(at::equal(straight, resumed));
  const auto la = read_jsonl(a + "/metrics.jsonl"), lb = read_jsonl(b + "/metrics.jsonl");
  ASSERT_EQ(la.size(), 6u);
  ASSERT_EQ(lb.size(), 6u);
  for (size_t i = 3; i < 6; ++i) {
    EXPECT_EQ(la[i]["reward"], lb[i]["reward"]) << "step " << i + 1;
    EXPECT_EQ(la[i]["loss"], lb[i]["loss"]) << "step " << i + 1;
    EXPECT_EQ(la[i]["kl"], lb[i]["kl"]) << "step " << i + 1;
  }
}

TEST(GrpoTrainer, SeveralIterationsReuseTheBatchAndClipAgainstTheSavedOldPolicy) {
  register_test_reward();
  const std::string dir = std::string(SCORCH_BINARY_DIR) + "/test_grpo_mu_run";
  fs::remove_all(dir);
  fs::make_directories(dir);
  Config config = toy_config(dir);
  config.train.max_steps = 4;
  config.grpo.num_iterations = 2;
  config.grpo.epsilon = 0.01;  // tiny clip range: the second pass over a batch clips
  config.grpo.epsilon_high = 0.01;
  ModelSession session = tiny_session();
  GrpoTask task(config, session, toy_prompts(), {}, dir);
  run_training(config, RunDir{dir, false}, *session.model, task, LoopOptions{});
  const auto lines = read_jsonl(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 4u);
  // Rollouts at steps 1 and 3 only; steps 2 and 4 train again on them against π_old.
  EXPECT_TRUE(lines[0].contains("time/generation") && lines[2].contains("time/generation"));
  EXPECT_FALSE(lines[1].contains("time/generation") || lines[3].contains("time/generation"));
  // A reuse step logs the rollout metrics of the batch it trains on (so log.every never hides them).
  for (size_t i : {1u, 3u}) {
    for (const char* key : {"reward", "reward_std", "frac_reward_zero_std", "advantages/abs_mean", "completions/mean_length"}) {
      ASSERT_TRUE(lines[i].contains(key)) << key << " at step " << i + 1;
      EXPECT_EQ(lines[i][key], lines[i - 1][key]) << key << " at step " << i + 1;
    }
  }
  EXPECT_EQ(lines[0]["clip_ratio/region_mean"].get<double>(), 0.0);  // first pass: ρ = 1
  EXPECT_GT(lines[1]["clip_ratio/region_mean"].get<double>(), 0.0);  // second pass: the policy moved
  EXPECT_DOUBLE_EQ(task.epoch(), 1.0);  // 2 generations × 4 prompts = the 8 prompts once
}

}  // namespace
}  // namespace scorch::trainers
