// AdamW against a float64 transcription of the AdamW formula (Loshchilov & Hutter, Algorithm 2 with
// torch's bias correction), the no-decay rule, param groups, bf16 master weights and the exact
// state round trip.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/error.h"
#include "train/optimizer.h"

namespace scorch {
namespace {

// The float64 reference of one parameter's AdamW trajectory.
struct RefAdamW {
  std::vector<double> w, m, v;
  int64_t t = 0;
  void step(const std::vector<double>& g, double lr, double b1, double b2, double eps, double wd) {
    ++t;
    for (size_t i = 0; i < w.size(); ++i) {
      w[i] -= lr * wd * w[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(b1, t));
      const double vhat = v[i] / (1 - std::pow(b2, t));
      w[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

std::vector<double> to_vec(const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kDouble).contiguous().reshape({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

at::Tensor make_param(at::IntArrayRef shape, uint64_t seed, at::ScalarType dtype = at::kFloat) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)).to(dtype).requires_grad_(true);
}

// Gradient for (param, step): deterministic, small enough that eps matters.
at::Tensor make_grad(const at::Tensor& p, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return (at::randn(p.sizes(), gen, at::TensorOptions().dtype(at::kFloat)) * 1e-2).to(p.scalar_type());
}

TEST(AdamW, MatchesFloat64FormulaWithDecoupledDecayAndNoDecayOnNormsAndBiases) {
  NamedTensors params{{"layers.0.mlp.weight", make_param({3, 4}, 1)},
                      {"layers.0.input_layernorm.weight", make_param({4}, 2)},
                      {"lm_head.bias", make_param({3}, 3)}};
  AdamWOptions o;
  o.lr = 0.05;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-3;  // comparable to sqrt(v): a misplaced eps would show
  o.weight_decay = 0.3;
  AdamW opt(params, o);

  std::map<std::string, RefAdamW> ref;
  for (const auto& [name, p] : params) {
    const auto n = static_cast<size_t>(p.numel());
    ref[name] = RefAdamW{to_vec(p), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
  }
  for (int step = 0; step < 6; ++step) {
    uint64_t seed = 100 + 10 * step;
    for (auto& [name, p] : params) {
      const at::Tensor g = make_grad(p, seed++);
      p.mutable_grad() = g;
      const double wd = name == "layers.0.mlp.weight" ? o.weight_decay : 0.0;
      ref[name].step(to_vec(g), o.lr, o.beta1, o.beta2, o.eps, wd);
    }
    opt.step();
    opt.zero_grad();
  }
  for (const auto& [name, p] : params) {
    EXPECT_FALSE(p.grad().defined()) << "zero_grad must drop " << name;
    const auto got = to_vec(p);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], ref[name].w[i], 2e-6) << name << "[" << i << "]";
  }
  EXPECT_EQ(opt.step_count(), 6);
}

TEST(AdamW, NoDecayRuleCoversNormsBiasesAndOneDimensionalTensors) {
  const at::Tensor matrix = at::zeros({2, 2}), vector = at::zeros({2});
  EXPECT_TRUE(is_no_decay_param("model.norm.weight", matrix));
  EXPECT_TRUE(is_no_decay_param("model.layers.3.post_attention_layernorm.weight", matrix));
  EXPECT_TRUE(is_no_decay_param("model.layers.0.self_attn.q_proj.bias", matrix));
  EXPECT_TRUE(is_no_decay_param("some.scale", vector));
  EXPECT_FALSE(is_no_decay_param("model.layers.0.self_attn.q_proj.weight", matrix));

  NamedTensors params{{"a.weight", make_param({2, 2}, 1)}, {"a.bias", make_param({2}, 2)},
                      {"frozen.weight", make_param({2, 2}, 3).requires_grad_(false)}};
  AdamW split(params, AdamWOptions{});
  ASSERT_EQ(split.groups().size(), 2u);
  EXPECT_EQ(split.groups()[0].name, "decay");
  EXPECT_EQ(split.groups()[0].params, std::vector<std::string>{"a.weight"});
  EXPECT_EQ(split.groups()[1].params, std::vector<std::string>{"a.bias"});
  AdamWSettings all;
  all.decay_norms_and_biases = true;
  AdamW together(params, AdamWOptions{}, all);
  ASSERT_EQ(together.groups().size(), 1u);
  EXPECT_EQ(together.groups()[0].params.size(), 2u);  // the frozen tensor is not optimised
}

TEST(AdamW, ParamGroupLrScaleAndDecayApplyPerGroup) {
  NamedTensors params{{"x", make_param({5}, 11)}, {"y", make_param({5}, 12)}};
  AdamWOptions o;
  o.lr = 0.1;
  AdamW opt(params, {ParamGroup{"slow", {"x"}, 0.5, 0.25}, ParamGroup{"fast", {"y"}, 0.0, 2.0}}, o);
  RefAdamW rx{to_vec(params["x"]), std::vector<double>(5), std::vector<double>(5)};
  RefAdamW ry{to_vec(params["y"]), std::vector<double>(5), std::vector<double>(5)};
  for (int s = 0; s < 3; ++s) {
    params["x"].mutable_grad() = make_grad(params["x"], 50 + s);
    params["y"].mutable_grad() = make_grad(params["y"], 60 + s);
    rx.step(to_vec(params["x"].grad()), 0.1 * 0.25, o.beta1, o.beta2, o.eps, 0.5);
    ry.step(to_vec(params["y"].grad()), 0.1 * 2.0, o.beta1, o.beta2, o.eps, 0.0);
    opt.step();
  }
  const auto gx = to_vec(params["x"]), gy = to_vec(params["y"]);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(gx[i], rx.w[i], 2e-6);
    EXPECT_NEAR(gy[i], ry.w[i], 2e-6);
  }
  EXPECT_THROW(AdamW(params, {ParamGroup{"a", {"x"}}, ParamGroup{"b", {"x"}}}, o), UserError);
  EXPECT_THROW(AdamW(params, {ParamGroup{"a", {"nope"}}}, o), UserError);
}

TEST(AdamW, ParameterWithoutGradIsSkippedAndKeepsItsOwnStepCount) {
  NamedTensors params{{"a", make_param({4}, 1)}, {"b", make_param({4}, 2)}};
  AdamWOptions o;
  o.lr = 0.01;
  AdamW opt(params, o);
  RefAdamW rb{to_vec(params["b"]), std::vector<double>(4), std::vector<double>(4)};
  const auto b_before = to_vec(params["b"]);
  params["a"].mutable_grad() = make_grad(params["a"], 7);
  opt.step();  // b has no grad: untouched
  EXPECT_EQ(to_vec(params["b"]), b_before);
  params["b"].mutable_grad() = make_grad(params["b"], 8);
  rb.step(to_vec(params["b"].grad()), o.lr, o.beta1, o.beta2, o.eps, 0.0);  // b's first step: t = 1
  opt.step();
  const auto got = to_vec(params["b"]);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(got[i], rb.w[i], 1e-7);
  EXPECT_EQ(opt.state_json()["param_steps"]["a"], 2);
  EXPECT_EQ(opt.state_json()["param_steps"]["b"], 1);
}

TEST(AdamW, StateRoundTripContinuesBitwiseLikeAnUninterruptedRun) {
  auto make = [] {
    return NamedTensors{{"w", make_param({3, 4}, 21)}, {"n.norm.weight", make_param({4}, 22)},
                        {"h", make_param({2, 4}, 23, at::kBFloat16)}};
  };
  AdamWOptions o;
  o.lr = 0.02;
  o.weight_decay = 0.1;
  NamedTensors a = make();
  AdamW opt_a(a, o);
  auto feed = [](NamedTensors& p, int s) {
    uint64_t seed = 1000 + 7 * s;
    for (auto& [name, t] : p) t.mutable_grad() = make_grad(t, seed++);
  };
  for (int s = 0; s < 3; ++s) {
    feed(a, s);
    opt_a.step();
  }
  // Export through text JSON and cloned tensors, as a checkpoint would.
  NamedTensors saved_tensors;
  for (const auto& [k, t] : opt_a.state_tensors()) saved_tensors[k] = t.clone();
  const auto saved_json = nlohmann::json::parse(opt_a.state_json().dump());
  EXPECT_TRUE(saved_tensors.count("master/h"));  // bf16 parameter: fp32 master saved
  EXPECT_EQ(saved_tensors.at("master/h").scalar_type(), at::kFloat);
  EXPECT_EQ(saved_tensors.at("exp_avg/h").scalar_type(), at::kFloat);

  NamedTensors b = make();
  {
    at::NoGradGuard ng;
    for (auto& [k, t] : b) t.copy_(a[k]);
  }
  AdamW opt_b(b, o);
  opt_b.set_lr(123.0);  // restored from the state
  opt_b.load_state(saved_tensors, saved_json);
  EXPECT_EQ(opt_b.lr(), o.lr);
  EXPECT_EQ(opt_b.step_count(), 3);
  for (int s = 3; s < 6; ++s) {
    feed(a, s);
    feed(b, s);
    opt_a.step();
    opt_b.step();
  }
  for (const auto& [k, t] : a) EXPECT_TRUE(at::equal(t, b[k])) << k;
  const auto sa = opt_a.state_tensors(), sb = opt_b.state_tensors();
  ASSERT_EQ(sa.size(), sb.size());
  for (const auto& [k, t] : sa) EXPECT_TRUE(at::equal(t, sb.at(k))) << k;
  EXPECT_EQ(opt_a.state_json(), opt_b.state_json());
}

TEST(AdamW, LoadStateWithDifferentShapeOrUnknownTensorIsAUserError) {
  NamedTensors a{{"w", make_param({3, 4}, 1)}};
  AdamW opt_a(a, AdamWOptions{});
  a["w"].mutable_grad() = make_grad(a["w"], 2);
  opt_a.step();
  NamedTensors b{{"w", make_param({4, 4}, 1)}};
  AdamW opt_b(b, AdamWOptions{});
  try {
    opt_b.load_state(opt_a.state_tensors(), opt_a.state_json());
    FAIL() << "expected UserError";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("exp_avg/w"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 4]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("different model shape"), std::string::npos) << msg;
  }
  NamedTensors extra = opt_a.state_tensors();
  extra["exp_avg/ghost"] = at::zeros({1});
  NamedTensors c{{"w", make_param({3, 4}, 1)}};
  AdamW opt_c(c, AdamWOptions{});
  EXPECT_THROW(opt_c.load_state(extra, opt_a.state_json()), UserError);
  EXPECT_THROW(opt_c.load_state(opt_a.state_tensors(), nlohmann::json{{"type", "sgd"}}), UserError);
}

TEST(AdamW, Bf16MasterWeightsKeepUpdatesThatBf16AloneRoundsAway) {
  // w = 1 in bf16: the spacing below 1 is 2^-8 ~ 0.0039, so 30 Adam steps of ~1e-4 (sum 3e-3)
  // each round back to 1.0 without masters, while the master accumulates them.
  auto run = [](bool master) {
    NamedTensors p{{"w", at::ones({8}, at::kBFloat16).requires_grad_(true)}};
    AdamWOptions o;
    o.lr = 1e-4;
    AdamWSettings s;
    s.master_weights = master;
    AdamW opt(p, o, s);
    for (int i = 0; i < 30; ++i) {
      p["w"].mutable_grad() = at::full({8}, 0.5, at::kBFloat16);
      opt.step();
    }
    return std::make_pair(p["w"].detach().clone(), opt.state_tensors());
  };
  auto [with_master, state_m] = run(true);
  auto [without, state_n] = run(false);
  EXPECT_TRUE(at::equal(without, at::ones({8}, at::kBFloat16))) << "bf16-only update should have been rounded away";
  ASSERT_TRUE(state_m.count("master/w"));
  EXPECT_FALSE(state_n.count("master/w"));
  // Adam with a constant gradient moves by lr per step: master = 1 - 30e-4 (to fp32 rounding).
  EXPECT_NEAR(state_m["master/w"][0].item<double>(), 1.0 - 30 * 1e-4, 5e-6);
  EXPECT_TRUE(at::equal(with_master, state_m["master/w"].to(at::kBFloat16)));
  EXPECT_LT(with_master[0].item<double>(), 1.0);
}

}  // namespace
}  // namespace scorch
