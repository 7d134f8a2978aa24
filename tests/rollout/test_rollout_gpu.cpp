// The rollout engine on CUDA (label gpu; every test skips without a CUDA device): the inverse-CDF
// draw follows its weights on the device, greedy decoding of a mixed-length batch on the GPU gives
// the CPU engine's tokens, and sampled log-probs equal a CPU float64 full-forward log-softmax.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "rollout/engine.h"
#include "rollout_fixtures.h"

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
  for (const auto& s : samples) {
    const auto& prompt = s.prompt_index == 0 ? kPrompts[0] : kPrompts[2];
    const at::Tensor logits = full_forward_logits(cpu_model, concat(prompt, s.completion_ids)).to(at::kDouble);
    const at::Tensor logp = (logits / 0.7).log_softmax(-1);
    const int64_t P = static_cast<int64_t>(prompt.size());
    for (size_t t = 0; t < s.completion_ids.size(); ++t) {
      const double ref = logp[P - 1 + static_cast<int64_t>(t)][s.completion_ids[t]].item<double>();
      EXPECT_NEAR(s.logprobs[t], ref, 1e-4) << "token " << t;
    }
  }
}

}  // namespace
}  // namespace scorch
