// The rollout engine on CUDA (label gpu; every test skips without a CUDA device): the inverse-CDF
// draw follows its weights on the device, greedy decoding of a mixed-length batch on the GPU gives
// the CPU engine's tokens, and sampled log-probs equal a CPU float64 full-forward log-softmax. On
// CUDA the engine's default decode steps are replayed from CUDA graphs (static_decoder.h): the
// tests check that graphs were captured and replayed, that they give the eager steps' tokens (also
// across compactions and in multi-turn episodes), and that a bf16 Qwen2-shaped model runs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cmath>
#include <limits>

#include "kernels/ops.h"
#include "rollout/engine.h"
#include "rollout/episode.h"
#include "rollout_fixtures.h"
#include "tokenizer/chat_template.h"

namespace scorch {
namespace {

using test::concat;
using test::full_forward_logits;
using test::tiny_model;

#define SKIP_WITHOUT_CUDA()                                             \
  do {                                                                  \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

const std::vector<std::vector<int64_t>> kPrompts = {{5, 17, 200}, {42}, {9, 9, 100, 31, 77, 12, 250, 3, 64, 128, 1, 2}};

TEST(RolloutGpu, InverseCdfDrawFollowsItsWeightsOnTheDevice) {
  SKIP_WITHOUT_CUDA();
  const std::vector<double> w = {0.0, 3.0, 0.0, 0.5, 1.5, 0.0, 2.0, 1.0};
  const int64_t n = 40000, V = static_cast<int64_t>(w.size());
  const at::Tensor probs = at::tensor(w, at::kDouble).to(at::kFloat).view({1, V}).expand({n, V}).contiguous().cuda();
  at::Generator g = make_sampling_generator(7, at::kCUDA);
  const at::Tensor tokens = inverse_cdf_draw(probs, g);
  ASSERT_TRUE(tokens.is_cuda());
  const test::WeightFit fit = test::fit_to_weights(tokens, w);
  EXPECT_EQ(fit.zero_weight_draws, 0);
  EXPECT_LT(fit.chi_square, 20.52);  // chi-square, 5 degrees of freedom, 99.9% quantile
}

// The fused sampler's CUDA kernel (scorch::sample_tokens, the engine's path without top-k / top-p):
// for the same uniforms it draws the CPU op's tokens on Qwen-sized bf16 and fp32 rows (at most a
// token of the 64 may differ, where u sits on a boundary up to fp32 weight rounding), follows
// its softmax on the device (chi-square, -inf never drawn), and marks NaN rows -1.
TEST(RolloutGpu, FusedSamplerKernelMatchesTheCpuOpAndFollowsTheSoftmax) {
  SKIP_WITHOUT_CUDA();
  at::manual_seed(5);
  for (auto dtype : {at::kBFloat16, at::kFloat}) {
    for (int64_t V : {151936, 1000, 300}) {
      const at::Tensor logits = (at::randn({64, V}) * 4).to(dtype);
      const at::Tensor u = at::rand({64}, at::kDouble);
      const at::Tensor cpu = scorch::sample_tokens(logits, u, 0.8);
      const at::Tensor gpu = scorch::sample_tokens(logits.cuda(), u.cuda(), 0.8).cpu();
      EXPECT_LE(cpu.ne(gpu).sum().item<int64_t>(), 1) << "V " << V << " " << dtype;
    }
  }
  const std::vector<double> w = {0.0, 3.0, 0.0, 0.5, 1.5, 0.0, 2.0, 1.0};
  const int64_t n = 40000, V = static_cast<int64_t>(w.size());
  const at::Tensor row = at::tensor(w, at::kDouble).log().to(at::kFloat).view({1, V});
  SamplingParams p;  // T = 1, no truncation: the engine's fused path on CUDA
  at::Generator g = make_sampling_generator(9, at::kCUDA);
  const SampledTokens s = sample_next_tokens(row.expand({n, V}).contiguous().cuda().to(at::kBFloat16), p, g);
  const test::WeightFit fit = test::fit_to_weights(s.tokens, w);
  EXPECT_EQ(fit.zero_weight_draws, 0);
  EXPECT_LT(fit.chi_square, 20.52);  // 5 degrees of freedom, 99.9% quantile
  const at::Tensor ref = row.to(at::kBFloat16).to(at::kDouble).log_softmax(-1).view({-1}).index_select(0, s.tokens.cpu());
  EXPECT_LE((s.logprobs.cpu().to(at::kDouble) - ref).abs().max().item<double>(), 1e-5);
  at::Tensor bad = at::randn({3, 500}).cuda();
  bad[1][7] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor t = scorch::sample_tokens(bad, at::rand({3}, at::kDouble).cuda(), 1.0).cpu();
  EXPECT_EQ(t[1].item<int64_t>(), -1);
  EXPECT_GE(t[0].item<int64_t>(), 0);
  EXPECT_GE(t[2].item<int64_t>(), 0);
}

TEST(RolloutGpu, GreedyOnTheGpuEqualsTheCpuEngine) {
  SKIP_WITHOUT_CUDA();
  Transformer cpu_model = tiny_model();
  Transformer gpu_model = cpu_model.clone();
  gpu_model.to(at::kCUDA);
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 20;
  GenerationEngine cpu(cpu_model), gpu(gpu_model);
  const auto a = cpu.generate(kPrompts, p), b = gpu.generate(kPrompts, p);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].completion_ids, b[i].completion_ids) << "prompt " << i;
    for (size_t t = 0; t < std::min(a[i].logprobs.size(), b[i].logprobs.size()); ++t) {
      EXPECT_NEAR(a[i].logprobs[t], b[i].logprobs[t], 1e-4) << "prompt " << i << " token " << t;
    }
  }
}

// Each sample's log-probs (within 1e-4) against log_softmax(logits / T) of a float64 full forward
// of `cpu_model` over its prompt and completion.
void expect_logprobs_of_a_float64_forward(const Transformer& cpu_model, const std::vector<Sample>& samples,
                                          const std::vector<std::vector<int64_t>>& prompts, double temperature) {
  for (const auto& s : samples) {
    const auto& prompt = prompts[s.prompt_index];
    const at::Tensor logits = full_forward_logits(cpu_model, concat(prompt, s.completion_ids)).to(at::kDouble);
    const at::Tensor logp = (logits / temperature).log_softmax(-1);
    const int64_t P = static_cast<int64_t>(prompt.size());
    for (size_t t = 0; t < s.completion_ids.size(); ++t) {
      const double ref = logp[P - 1 + static_cast<int64_t>(t)][s.completion_ids[t]].item<double>();
      EXPECT_NEAR(s.logprobs[t], ref, 1e-4) << "prompt " << s.prompt_index << " token " << t;
    }
  }
}

TEST(RolloutGpu, SampledLogprobsEqualAFloat64FullForwardOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  Transformer cpu_model = tiny_model();
  Transformer gpu_model = cpu_model.clone();
  gpu_model.to(at::kCUDA);
  GenerationEngine engine(gpu_model);
  SamplingParams p;
  p.temperature = 0.7;
  p.n = 4;
  p.max_new_tokens = 12;
  p.seed = 5;
  const auto samples = engine.generate({kPrompts[0], kPrompts[2]}, p);
  ASSERT_EQ(samples.size(), 8u);
  expect_logprobs_of_a_float64_forward(cpu_model, samples, {kPrompts[0], kPrompts[2]}, 0.7);
}

EngineOptions with_steps(DecodeSteps steps) {
  EngineOptions o;
  o.decode_steps = steps;
  return o;
}

TEST(RolloutGpu, CudaGraphDecodeEqualsEagerStepsOnTheGpu) {
  SKIP_WITHOUT_CUDA();
  Transformer gpu_model = tiny_model();
  gpu_model.to(at::kCUDA);
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 20;
  GenerationEngine eager(gpu_model, nullptr, with_steps(DecodeSteps::kDynamic));
  GenerationEngine graphs(gpu_model);  // auto = CUDA graphs on CUDA
  ASSERT_TRUE(graphs.static_decode_steps());
  const auto a = eager.generate(kPrompts, p), b = graphs.generate(kPrompts, p);
  const GenerationStats& st = graphs.last_stats();
  EXPECT_GE(st.graph_captures, 1);
  EXPECT_GT(st.graph_replays, 0);
  EXPECT_EQ(st.graph_replays + st.graph_captures, st.static_steps) << "every static step was captured or replayed";
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].completion_ids, b[i].completion_ids) << "prompt " << i;
    ASSERT_EQ(a[i].logprobs.size(), b[i].logprobs.size());
    for (size_t t = 0; t < a[i].logprobs.size(); ++t) EXPECT_NEAR(a[i].logprobs[t], b[i].logprobs[t], 1e-4);
  }
}

// Rows that end at budgets 36, 32, ..., 8 (context 40, no EOS): the graph path compacts 8 -> 4 -> 2
// -> 1, captures one graph per batch shape, and every row equals the CPU engine's greedy tokens.
TEST(RolloutGpu, CudaGraphsAcrossCompactionsEqualTheCpuEngine) {
  SKIP_WITHOUT_CUDA();
  Transformer cpu_model = tiny_model(257, 7, /*context=*/40, /*eos=*/{});
  Transformer gpu_model = cpu_model.clone();
  gpu_model.to(at::kCUDA);
  const std::vector<std::vector<int64_t>> prompts = test::staggered_prompts();
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 64;
  GenerationEngine cpu(cpu_model), gpu(gpu_model);
  const auto a = cpu.generate(prompts, p), b = gpu.generate(prompts, p);
  const GenerationStats& st = gpu.last_stats();
  EXPECT_EQ(st.compactions, 3);
  EXPECT_EQ(st.graph_captures, st.compactions + 1);
  EXPECT_EQ(st.graph_replays + st.graph_captures, st.static_steps);
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(a[i].completion_ids, b[i].completion_ids) << "prompt " << i;
}

// Sampled (T = 1.3, n = 4) in CUDA graphs with `options`: the log-probs of a float64 full forward.
void expect_graph_samples_logprobs_of_a_float64_forward(const EngineOptions& options) {
  Transformer cpu_model = tiny_model();
  Transformer gpu_model = cpu_model.clone();
  gpu_model.to(at::kCUDA);
  GenerationEngine engine(gpu_model, nullptr, options);
  SamplingParams p;
  p.temperature = 1.3;
  p.n = 4;
  p.max_new_tokens = 16;
  p.seed = 9;
  const auto samples = engine.generate({kPrompts[1], kPrompts[2]}, p);
  EXPECT_GT(engine.last_stats().graph_replays, 0);
  expect_logprobs_of_a_float64_forward(cpu_model, samples, {kPrompts[1], kPrompts[2]}, 1.3);
}

TEST(RolloutGpu, CudaGraphSampledLogprobsEqualAFloat64FullForward) {
  SKIP_WITHOUT_CUDA();
  expect_graph_samples_logprobs_of_a_float64_forward(with_steps(DecodeSteps::kCudaGraph));
}

TEST(RolloutGpu, CudaGraphEpisodesEqualTheCpuEpisodes) {
  SKIP_WITHOUT_CUDA();
  Transformer cpu_model = tiny_model(257, 7, /*context=*/512);
  Transformer gpu_model = cpu_model.clone();
  gpu_model.to(at::kCUDA);
  const test::ByteTokenizer tok;
  const ChatRenderer chat(tok, "chatml");
  GenerationEngine cpu(cpu_model, &tok), gpu(gpu_model, &tok);
  const std::vector<std::vector<int64_t>> prompts = {chat.render_prompt({ChatMessage{"user", "2+2?"}}),
                                                      chat.render_prompt({ChatMessage{"user", "hello there"}})};
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 12;
  const Environment env = [](const FinishedTurn&) { return EnvironmentReply::user("Check it."); };
  const auto a = run_episodes(cpu, chat, prompts, p, env), b = run_episodes(gpu, chat, prompts, p, env);
  EXPECT_GT(gpu.last_stats().graph_replays, 0);
  ASSERT_EQ(a.size(), b.size());
  for (size_t e = 0; e < a.size(); ++e) {
    EXPECT_EQ(a[e].tokens, b[e].tokens) << "episode " << e;
    EXPECT_EQ(a[e].turn_mask, b[e].turn_mask) << "episode " << e;
  }
}

// Lookahead in CUDA graphs (the next step queued before the tokens reach the host by an event-waited
// pinned copy): the same samples as without it, with stop ids making rows finish at varied steps
// (masks, then compactions and recaptures while a queued step is in flight).
TEST(RolloutGpu, LookaheadInCudaGraphsGivesTheSameSamples) {
  SKIP_WITHOUT_CUDA();
  Transformer gpu_model = tiny_model(257, 7, /*context=*/64);
  gpu_model.to(at::kCUDA);
  const std::vector<std::vector<int64_t>> prompts = test::staggered_prompts();
  for (const double temperature : {0.0, 1.0}) {
    SamplingParams p;
    p.temperature = temperature;
    p.max_new_tokens = 24;
    p.n = temperature > 0 ? 2 : 1;
    p.seed = 11;
    for (int64_t v = 17; v < 257; v += 17) p.stop_token_ids.push_back(v);
    EngineOptions plain;
    plain.lookahead = false;
    GenerationEngine a(gpu_model, nullptr, plain), b(gpu_model);
    const auto x = a.generate(prompts, p), y = b.generate(prompts, p);
    EXPECT_GT(b.last_stats().graph_replays, 0);
    EXPECT_EQ(a.last_stats().compactions, b.last_stats().compactions);
    EXPECT_EQ(a.last_stats().row_steps, b.last_stats().row_steps);
    test::expect_same_samples(x, y, "T " + std::to_string(temperature), 1e-5);
  }
}

EngineOptions fused_attention() {
  EngineOptions o;
  o.fused_decode_attention = true;
  return o;
}

// The fused decode attention kernel (EngineOptions::fused_decode_attention) in CUDA graphs: greedy
// tokens of a mixed-length batch (left padding = masked slots) and across compactions equal the CPU
// engine's, and sampled log-probs equal a float64 full forward on the CPU.
TEST(RolloutGpu, FusedDecodeAttentionInCudaGraphsEqualsTheCpuEngine) {
  SKIP_WITHOUT_CUDA();
  {
    Transformer cpu_model = tiny_model(257, 7, /*context=*/40, /*eos=*/{});
    Transformer gpu_model = cpu_model.clone();
    gpu_model.to(at::kCUDA);
    SamplingParams p;
    p.temperature = 0;
    p.max_new_tokens = 64;
    const std::vector<std::vector<int64_t>> prompts = test::staggered_prompts();
    GenerationEngine cpu(cpu_model), gpu(gpu_model, nullptr, fused_attention());
    const auto a = cpu.generate(prompts, p), b = gpu.generate(prompts, p);
    EXPECT_EQ(gpu.last_stats().compactions, 3);
    EXPECT_GT(gpu.last_stats().graph_replays, 0);
    for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(a[i].completion_ids, b[i].completion_ids) << "prompt " << i;
    const auto c = cpu.generate(kPrompts, p), d = gpu.generate(kPrompts, p);
    for (size_t i = 0; i < kPrompts.size(); ++i) EXPECT_EQ(c[i].completion_ids, d[i].completion_ids) << "prompt " << i;
  }
  expect_graph_samples_logprobs_of_a_float64_forward(fused_attention());
}

// bf16 with a Qwen2-like layout (qkv bias, tied embeddings, GQA 4/2 folded in decode): the graph
// path runs, with SDPA and with the fused decode attention kernel, and its log-probs are those of a
// float32 recomputation within bf16 rounding.
TEST(RolloutGpu, Bf16Qwen2ShapedModelDecodesInCudaGraphs) {
  SKIP_WITHOUT_CUDA();
  nlohmann::json j = {{"model_type", "qwen2"}, {"vocab_size", 1000}, {"hidden_size", 64},
                      {"intermediate_size", 128}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-6},
                      {"rope_theta", 1000000.0}, {"initializer_range", 0.3}, {"tie_word_embeddings", true}};
  Transformer cpu_model(model_config_from_json(j, "bf16 test model"));
  cpu_model.init_weights(3);
  Transformer gpu_model = cpu_model.clone();
  gpu_model.to(at::kCUDA, at::kBFloat16);
  for (const bool fused : {false, true}) {
    GenerationEngine engine(gpu_model, nullptr, fused ? fused_attention() : EngineOptions{});
    SamplingParams p;
    p.n = 8;
    p.max_new_tokens = 24;
    p.seed = 2;
    const auto samples = engine.generate({kPrompts[0], kPrompts[2]}, p);
    EXPECT_GE(engine.last_stats().graph_captures, 1);
    EXPECT_GT(engine.last_stats().graph_replays, 0);
    double worst = 0;
    for (const auto& s : samples) {
      const auto& prompt = s.prompt_index == 0 ? kPrompts[0] : kPrompts[2];
      const at::Tensor logp = full_forward_logits(cpu_model, concat(prompt, s.completion_ids)).to(at::kDouble).log_softmax(-1);
      const int64_t P = static_cast<int64_t>(prompt.size());
      for (size_t t = 0; t < s.completion_ids.size(); ++t) {
        const double ref = logp[P - 1 + static_cast<int64_t>(t)][s.completion_ids[t]].item<double>();
        ASSERT_TRUE(std::isfinite(s.logprobs[t]));
        worst = std::max(worst, std::abs(s.logprobs[t] - ref));
      }
    }
    EXPECT_LT(worst, 0.25) << "bf16 log-probs vs a float32 recomputation" << (fused ? ", fused attention" : "");
  }
}

}  // namespace
}  // namespace scorch
