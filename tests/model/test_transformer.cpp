// The Llama-family forward against a naive float64 reference written out here (RMSNorm, RoPE pairs,
// per-head softmax attention with GQA, SwiGLU), plus SFT packing masks and the behaviour of init,
// parameters and gradients that the trainers rely on.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <torch/csrc/autograd/function.h>

#include "model_test_util.h"

using scorch::ModelConfig;
using scorch::Transformer;
using scorch::test::arange_positions;
using scorch::test::max_abs_diff;
using scorch::test::random_model;
using scorch::test::tiny_config;

namespace {

at::Tensor d(const at::Tensor& t) { return t.detach().to(at::kDouble); }

at::Tensor ref_rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {  // x [T, C]
  at::Tensor out = at::empty_like(x);
  for (int64_t t = 0; t < x.size(0); ++t) {
    double ss = 0;
    for (int64_t c = 0; c < x.size(1); ++c) ss += x[t][c].item<double>() * x[t][c].item<double>();
    out[t] = x[t] / std::sqrt(ss / x.size(1) + eps) * d(w);
  }
  return out;
}

at::Tensor ref_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  at::Tensor y = x.matmul(d(w).t());
  return b.defined() ? y + d(b) : y;
}

// Rotates pairs (i, i + D/2) of each head by pos * theta^(-2i/D) (divided by the linear factor).
at::Tensor ref_rope(const at::Tensor& x, int64_t heads, int64_t D, const std::vector<int64_t>& pos,
                    const ModelConfig& c) {  // x [T, heads*D]
  at::Tensor out = x.clone();
  auto a = x.accessor<double, 2>();
  auto o = out.accessor<double, 2>();
  const double factor = c.rope_scaling.type == "linear" ? c.rope_scaling.factor : 1.0;
  for (int64_t t = 0; t < x.size(0); ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < D / 2; ++i) {
        const double angle = pos[t] * std::pow(c.rope_theta, -2.0 * i / D) / factor;
        const double x1 = a[t][h * D + i], x2 = a[t][h * D + i + D / 2];
        o[t][h * D + i] = x1 * std::cos(angle) - x2 * std::sin(angle);
        o[t][h * D + i + D / 2] = x2 * std::cos(angle) + x1 * std::sin(angle);
      }
  return out;
}

// Hidden states [T, C] and logits [T, V] of one sequence, every query attending to keys j <= t.
std::pair<at::Tensor, at::Tensor> reference(const Transformer& m, const std::vector<int64_t>& ids,
                                            const std::vector<int64_t>& pos) {
  const ModelConfig& c = m.config();
  const int64_t T = ids.size(), H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim;
  at::Tensor h = at::empty({T, c.hidden_size}, at::kDouble);
  for (int64_t t = 0; t < T; ++t) h[t] = d(m.embed_tokens_[ids[t]]);
  for (const auto& L : m.layers_) {
    const at::Tensor x = ref_rms_norm(h, L.input_norm, c.rms_norm_eps);
    const at::Tensor q = ref_rope(ref_linear(x, L.q_weight, L.q_bias), H, D, pos, c);
    const at::Tensor k = ref_rope(ref_linear(x, L.k_weight, L.k_bias), KV, D, pos, c);
    const at::Tensor v = ref_linear(x, L.v_weight, L.v_bias);
    at::Tensor attn = at::zeros({T, H * D}, at::kDouble);
    auto qa = q.accessor<double, 2>(), ka = k.accessor<double, 2>(), va = v.accessor<double, 2>();
    auto out = attn.accessor<double, 2>();
    for (int64_t head = 0; head < H; ++head) {
      const int64_t kvh = head / (H / KV);  // GQA: consecutive query heads share a KV head
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> s(t + 1);
        double mx = -1e300, z = 0;
        for (int64_t j = 0; j <= t; ++j) {
          double dot = 0;
          for (int64_t e = 0; e < D; ++e) dot += qa[t][head * D + e] * ka[j][kvh * D + e];
          s[j] = dot / std::sqrt(static_cast<double>(D));
          mx = std::max(mx, s[j]);
        }
        for (auto& x : s) z += (x = std::exp(x - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t e = 0; e < D; ++e) out[t][head * D + e] += s[j] / z * va[j][kvh * D + e];
      }
    }
    h = h + ref_linear(attn, L.o_weight, L.o_bias);
    const at::Tensor y = ref_rms_norm(h, L.post_attention_norm, c.rms_norm_eps);
    const at::Tensor g = ref_linear(y, L.gate_weight, {});
    const at::Tensor silu = g / (1 + at::exp(-g));
    h = h + ref_linear(silu * ref_linear(y, L.up_weight, {}), L.down_weight, {});
  }
  h = ref_rms_norm(h, m.norm_, c.rms_norm_eps);
  return {h, h.matmul(d(m.lm_head_weight()).t())};
}

void expect_matches_reference(const Transformer& m, double tol) {
  const std::vector<std::vector<int64_t>> rows = {{5, 17, 3, 44, 8, 21, 0}, {52, 1, 30, 30, 9, 2, 11}};
  const at::Tensor ids = at::tensor(std::vector<int64_t>{5, 17, 3, 44, 8, 21, 0, 52, 1, 30, 30, 9, 2, 11}).view({2, 7});
  // Row 1 starts at position 3: positions are honoured, not assumed to be 0..T-1.
  const at::Tensor pos = at::tensor(std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7, 8, 9}).view({2, 7});
  const at::Tensor hidden = m.forward(ids, pos);
  const at::Tensor logits = m.logits(hidden);
  ASSERT_EQ(hidden.sizes(), (std::vector<int64_t>{2, 7, m.config().hidden_size}));
  ASSERT_EQ(logits.sizes(), (std::vector<int64_t>{2, 7, m.config().vocab_size}));
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<int64_t> p(7);
    for (int i = 0; i < 7; ++i) p[i] = pos[b][i].item<int64_t>();
    const auto [ref_h, ref_logits] = reference(m, rows[b], p);
    EXPECT_LT(max_abs_diff(hidden[b], ref_h), tol) << "row " << b;
    EXPECT_LT(max_abs_diff(logits[b], ref_logits), tol * 10) << "row " << b;
  }
}

}  // namespace

TEST(Transformer, LlamaWithGqaMatchesFloat64Reference) {
  expect_matches_reference(random_model(tiny_config("llama"), 1), 1e-4);
}

TEST(Transformer, Qwen2WithQkvBiasMatchesFloat64Reference) {
  expect_matches_reference(random_model(tiny_config("qwen2", false, 4), 2), 1e-4);
}

TEST(Transformer, TiedLlamaWithAttentionBiasAndLinearRopeMatchesFloat64Reference) {
  ModelConfig c = tiny_config("llama", /*tied=*/true, 1);
  c.attention_bias = true;
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 2.5;
  const Transformer m = random_model(c, 3);
  ASSERT_FALSE(m.lm_head_.defined());
  ASSERT_TRUE(m.layers_[0].o_bias.defined());
  expect_matches_reference(m, 1e-4);
}

// The grouped decode attention (query heads of a KV head folded into the query length; CUDA's
// decode path) against per-head softmax attention in float64 with head h reading KV head h / G.
TEST(Transformer, GroupedDecodeAttentionMatchesPerHeadFloat64Attention) {
  at::manual_seed(5);
  const int64_t B = 3, H = 8, KV = 2, S = 9, D = 16, G = H / KV;
  const at::Tensor q = at::randn({B, H, 1, D}), k = at::randn({B, KV, S, D}), v = at::randn({B, KV, S, D});
  at::Tensor mask = at::rand({B, 1, 1, S}).gt(0.3);
  mask.select(3, S - 1).fill_(true);  // every row sees at least its own slot
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const at::Tensor got = scorch::grouped_decode_attention(q, k, v, mask, scale);
  ASSERT_EQ(got.sizes(), q.sizes());
  double worst = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const at::Tensor kh = d(k[b][h / G]), vh = d(v[b][h / G]);                         // [S, D]
      at::Tensor scores = at::matmul(kh, d(q[b][h][0])) * scale;                         // [S]
      scores = scores.masked_fill(mask[b][0][0].logical_not(), -INFINITY);
      const at::Tensor want = at::matmul(scores.softmax(0), vh);                         // [D]
      worst = std::max(worst, (d(got[b][h][0]) - want).abs().max().item<double>());
    }
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_THROW(scorch::grouped_decode_attention(at::randn({B, H, 2, D}), k, v, std::nullopt, scale), std::invalid_argument);
}

TEST(Transformer, Bfloat16ForwardTracksFloat32) {
  const Transformer m32 = random_model(tiny_config("llama"), 4);
  const Transformer m16 = random_model(tiny_config("llama"), 4, at::kBFloat16);
  EXPECT_EQ(m16.dtype(), at::kBFloat16);
  const at::Tensor ids = at::randint(53, {2, 9}, at::kLong);
  const at::Tensor h32 = m32.forward(ids, arange_positions(2, 9));
  const at::Tensor h16 = m16.forward(ids, arange_positions(2, 9));
  EXPECT_EQ(h16.scalar_type(), at::kBFloat16);
  EXPECT_FALSE(at::isnan(h16).any().item<bool>());
  EXPECT_LT(max_abs_diff(h16, h32), 0.1 * h32.abs().max().item<double>());
}

TEST(Transformer, PackedSamplesWithBlockDiagonalMaskMatchSeparateRuns) {
  const Transformer m = random_model(tiny_config("qwen2"), 5);
  const at::Tensor a = at::randint(53, {1, 4}, at::kLong), b = at::randint(53, {1, 6}, at::kLong);
  const at::Tensor packed = at::cat({a, b}, 1);
  const at::Tensor pos = at::cat({arange_positions(1, 4), arange_positions(1, 6)}, 1);
  at::Tensor mask = at::zeros({1, 1, 10, 10}, at::kBool);
  mask.index({0, 0, at::indexing::Slice(0, 4), at::indexing::Slice(0, 4)}).copy_(at::ones({4, 4}, at::kBool).tril());
  mask.index({0, 0, at::indexing::Slice(4, 10), at::indexing::Slice(4, 10)}).copy_(at::ones({6, 6}, at::kBool).tril());
  const at::Tensor h = m.forward(packed, pos, mask);
  EXPECT_LT(max_abs_diff(h.narrow(1, 0, 4), m.forward(a, arange_positions(1, 4))), 1e-5);
  EXPECT_LT(max_abs_diff(h.narrow(1, 4, 6), m.forward(b, arange_positions(1, 6))), 1e-5);
  // Without the mask the second sample would see the first: the mask is doing the work.
  const at::Tensor leaky = m.forward(packed, pos);
  EXPECT_GT(max_abs_diff(leaky.narrow(1, 4, 6), m.forward(b, arange_positions(1, 6))), 1e-3);
}

TEST(Transformer, FullyMaskedPaddingRowsStayFinite) {
  const Transformer m = random_model(tiny_config("llama"), 6);
  at::Tensor mask = at::ones({1, 1, 5, 5}, at::kBool).tril();
  mask.index({0, 0, at::indexing::Slice(3, 5)}).zero_();  // two padding queries see nothing
  const at::Tensor h = m.forward(at::randint(53, {1, 5}, at::kLong), arange_positions(1, 5), mask);
  EXPECT_TRUE(at::isfinite(h).all().item<bool>());
}

TEST(Transformer, InitWeightsIsSeededWithTheConfiguredStd) {
  ModelConfig c = tiny_config("qwen2");
  c.initializer_range = 0.05;
  c.pad_token_id = 0;
  Transformer a(c), b(c), other(c);
  a.init_weights(42);
  b.init_weights(42);
  other.init_weights(43);
  for (const auto& [name, t] : a.named_parameters()) EXPECT_TRUE(at::equal(t, b.named_parameters().at(name))) << name;
  EXPECT_FALSE(at::equal(a.layers_[0].q_weight, other.layers_[0].q_weight));
  const double std = a.layers_[1].gate_weight.std().item<double>();
  EXPECT_NEAR(std, 0.05, 0.005);
  EXPECT_TRUE(at::equal(a.layers_[0].input_norm, at::ones({32})));
  EXPECT_TRUE(at::equal(a.layers_[0].q_bias, at::zeros({32})));
  EXPECT_TRUE(at::equal(a.embed_tokens_[0], at::zeros({32})));  // pad row, as transformers
  EXPECT_GT(a.embed_tokens_[1].abs().sum().item<double>(), 0);
}

TEST(Transformer, ParametersAreSharedNamedAndTrainable) {
  Transformer m = random_model(tiny_config("qwen2", /*tied=*/true), 7);
  const auto named = m.named_parameters();
  EXPECT_EQ(named.size(), 1 + 2 * 12 + 1u);  // embed, 12 per qwen2 layer, final norm; tied: no lm_head
  EXPECT_TRUE(named.count("model.layers.1.self_attn.k_proj.bias"));
  EXPECT_FALSE(named.count("lm_head.weight"));
  int64_t n = 0;
  for (const auto& t : m.parameters()) n += t.numel();
  EXPECT_EQ(n, m.num_parameters());

  const Transformer copy = m.clone();
  named.at("model.norm.weight").fill_(3.0f);  // writes through to the model, not to the clone
  EXPECT_TRUE(at::equal(m.norm_, at::full({32}, 3.0f)));
  EXPECT_FALSE(at::equal(copy.norm_, m.norm_));

  m.set_requires_grad(true);
  const at::Tensor ids = at::randint(53, {2, 5}, at::kLong);
  m.logits(m.forward(ids, arange_positions(2, 5))).pow(2).mean().backward();
  for (const auto& [name, t] : m.named_parameters()) {
    ASSERT_TRUE(t.grad().defined()) << name;
    EXPECT_GT(t.grad().abs().sum().item<double>(), 0) << name;
  }
}

// The fused q/k/v and gate/up storage: the weights are its slices after construction, to() and
// clone(); writing a weight writes the fused tensor; a no-grad forward (fused GEMMs) equals the
// float64 reference and the forward that differentiates the weights (separate GEMMs); a weight
// replaced by hand drops the layer to the separate GEMMs with the new value, until re-fused.
TEST(Transformer, FusedProjectionsAliasTheWeightsAndGiveTheSeparateGemmsValues) {
  using scorch::has_fused_gate_up;
  using scorch::has_fused_qkv;
  Transformer m = random_model(tiny_config("qwen2", false, 2), 11);
  const auto all_fused = [](const Transformer& t) {
    for (const auto& L : t.layers_) {
      if (!has_fused_qkv(L) || !has_fused_gate_up(L)) return false;
    }
    return true;
  };
  ASSERT_TRUE(all_fused(m));
  const auto& L0 = m.layers_[0];
  const int64_t q = L0.q_weight.size(0), kv = L0.k_weight.size(0), I = L0.gate_weight.size(0);
  EXPECT_EQ(L0.qkv_weight.size(0), q + 2 * kv);
  EXPECT_EQ(L0.qkv_bias.size(0), q + 2 * kv);
  EXPECT_EQ(L0.gate_up_weight.size(0), 2 * I);

  m.named_parameters().at("model.layers.0.self_attn.k_proj.weight").fill_(0.25f);
  EXPECT_TRUE(at::equal(L0.qkv_weight.narrow(0, q, kv), at::full({kv, 32}, 0.25f)));
  m.named_parameters().at("model.layers.0.mlp.up_proj.weight").mul_(-1.0f);
  EXPECT_TRUE(at::equal(L0.gate_up_weight.narrow(0, I, I), L0.up_weight));
  expect_matches_reference(m, 1e-4);  // grad mode on, weights frozen: the fused path

  const at::Tensor ids = at::randint(53, {2, 6}, at::kLong);
  const at::Tensor pos = arange_positions(2, 6);
  at::Tensor fused;
  {
    c10::NoGradGuard no_grad;
    fused = m.forward(ids, pos);
  }
  m.set_requires_grad(true);  // now the forward differentiates the weights: separate GEMMs
  const at::Tensor separate = m.forward(ids, pos);
  EXPECT_LT(max_abs_diff(fused, separate), 1e-5);
  m.set_requires_grad(false);

  const Transformer copy = m.clone();
  EXPECT_TRUE(all_fused(copy));
  EXPECT_FALSE(copy.layers_[0].qkv_weight.is_alias_of(L0.qkv_weight));
  Transformer b16 = m.clone();
  b16.to(at::kCPU, at::kBFloat16);
  EXPECT_TRUE(all_fused(b16));
  EXPECT_EQ(b16.layers_[1].gate_up_weight.scalar_type(), at::kBFloat16);

  m.layers_[1].v_weight = m.layers_[1].v_weight * 2;  // replaced by hand
  m.layers_[1].gate_weight = m.layers_[1].gate_weight * 0.5;
  EXPECT_FALSE(has_fused_qkv(m.layers_[1]));
  EXPECT_FALSE(has_fused_gate_up(m.layers_[1]));
  EXPECT_TRUE(has_fused_qkv(m.layers_[0]));
  expect_matches_reference(m, 1e-4);  // the reference reads the new tensors: so does the forward
  at::Tensor before;
  {
    c10::NoGradGuard no_grad;
    before = m.forward(ids, pos);
    m.fuse_projections();
    ASSERT_TRUE(all_fused(m));
    EXPECT_LT(max_abs_diff(m.forward(ids, pos), before), 1e-5);
  }
}

namespace {

// Autograd nodes reachable from `root`, by name.
std::map<std::string, int> graph_nodes(const at::Tensor& root) {
  std::map<std::string, int> count;
  std::set<const torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> todo{root.grad_fn().get()};
  while (!todo.empty()) {
    torch::autograd::Node* n = todo.back();
    todo.pop_back();
    if (n == nullptr || !seen.insert(n).second) continue;
    ++count[n->name()];
    for (const auto& e : n->next_edges()) todo.push_back(e.function.get());
  }
  return count;
}

// Each family's layer variant (qwen3 q/k norms, olmo2 post-norms, gemma2 sandwich norms with soft
// caps and a sliding window narrower than the packed samples, so window and full masks differ).
std::vector<std::pair<std::string, ModelConfig>> layer_variants() {
  auto family = [](const std::string& type, nlohmann::json extra) {
    nlohmann::json j = scorch::model_config_to_json(tiny_config("llama"));
    j["model_type"] = type;
    for (auto& [k, v] : extra.items()) j[k] = v;
    return scorch::model_config_from_json(j, "family");
  };
  return {
      {"llama", tiny_config("llama", false)},
      {"qwen2 tied", tiny_config("qwen2", true)},
      {"qwen3", family("qwen3", {{"head_dim", 8}})},
      {"olmo2", family("olmo2", {})},
      {"gemma2 window 3", family("gemma2", {{"head_dim", 8}, {"sliding_window", 3}, {"tie_word_embeddings", true}})},
  };
}

// A packed two-sample batch (block-diagonal mask) and its loss: -sum log p of the next tokens.
struct PackedLoss {
  at::Tensor ids, pos, mask, targets;
  explicit PackedLoss(int64_t vocab) {
    ids = at::randint(vocab, {2, 9}, at::kLong);
    pos = at::cat({arange_positions(2, 4), arange_positions(2, 5)}, 1);
    mask = at::zeros({2, 1, 9, 9}, at::kBool);
    mask.index({at::indexing::Slice(), 0, at::indexing::Slice(0, 4), at::indexing::Slice(0, 4)})
        .copy_(at::ones({4, 4}, at::kBool).tril());
    mask.index({at::indexing::Slice(), 0, at::indexing::Slice(4, 9), at::indexing::Slice(4, 9)})
        .copy_(at::ones({5, 5}, at::kBool).tril());
    targets = at::randint(vocab, {2, 9}, at::kLong);
    targets.index_put_({0, 3}, -100);
  }
  at::Tensor operator()(const Transformer& m) const {
    auto [logp, entropy] = m.token_logprobs(m.forward(ids, pos, mask), targets, 0.9, true);
    return -logp.sum() + 0.1 * entropy.sum();
  }
};

}  // namespace

// model.gradient_checkpointing: the same loss bit for bit and the same gradients to fp32 round-off,
// with a frozen weight (no gradient for it); and the graph really holds one node per layer instead
// of the layer's ops (the activations inside a layer are not kept). Each family's layer variant.
TEST(Transformer, GradientCheckpointingGivesTheSameLossAndGradients) {
  const auto configs = layer_variants();
  for (const auto& [label, config] : configs) {
    const bool tied = config.tie_word_embeddings;
    SCOPED_TRACE(label);
    Transformer m = random_model(config, 21);
    m.set_requires_grad(true);
    m.layers_[0].up_weight.requires_grad_(false);
    at::manual_seed(22);
    const PackedLoss loss_of(m.config().vocab_size);

    const at::Tensor plain = loss_of(m);
    const auto plain_nodes = graph_nodes(plain);
    plain.backward();
    std::map<std::string, at::Tensor> plain_grads;
    for (auto& [name, t] : m.named_parameters()) {
      if (t.grad().defined()) plain_grads[name] = t.grad().clone();
      t.mutable_grad() = at::Tensor();
    }

    m.set_gradient_checkpointing(true);
    const at::Tensor ckpt = loss_of(m);
    const auto ckpt_nodes = graph_nodes(ckpt);
    ckpt.backward();
    EXPECT_EQ(ckpt.item<float>(), plain.item<float>()) << "tied=" << tied;
    int compared = 0;
    for (auto& [name, t] : m.named_parameters()) {
      if (name == "model.layers.0.mlp.up_proj.weight") {
        EXPECT_FALSE(t.grad().defined());
        continue;
      }
      ASSERT_TRUE(t.grad().defined()) << name;
      const at::Tensor& ref = plain_grads.at(name);
      const double rel = (t.grad() - ref).norm().item<double>() / ref.norm().item<double>();
      EXPECT_LT(rel, 1e-6) << name << " tied=" << tied;
      EXPECT_GT(ref.abs().max().item<double>(), 0) << name;
      ++compared;
    }
    EXPECT_EQ(compared, static_cast<int>(plain_grads.size()));
    int checkpointed = 0;
    for (const auto& [name, n] : ckpt_nodes) {
      if (name.find("CheckpointedLayer") != std::string::npos) checkpointed += n;
    }
    EXPECT_EQ(checkpointed, m.config().num_hidden_layers);
    int plain_total = 0, ckpt_total = 0;
    for (const auto& [name, n] : plain_nodes) plain_total += n;
    for (const auto& [name, n] : ckpt_nodes) ckpt_total += n;
    EXPECT_LT(ckpt_total * 2, plain_total) << "the layers' own ops should not be in the graph";
  }
}

// model.fused_training_ops: a differentiating forward through kernels' fused RMSNorm, add + RMSNorm,
// RoPE (q / k as transposed views) and SiLU * up gives the eager ops' loss to fp32 round-off and
// their gradients to fp32 round-off, for each family whose rounding the kernels implement (llama,
// qwen2 tied, qwen3's per-head q/k norms) and for those whose norms they do not (olmo2, gemma2: the
// norms and GeGLU stay eager, RoPE and SiLU * up are fused with bit-equal forwards: the same loss
// bits). The fused graph has fewer nodes.
TEST(Transformer, FusedTrainingOpsGiveTheEagerLossAndGradients) {
  const auto configs = layer_variants();
  for (const auto& [label, config] : configs) {
    SCOPED_TRACE(label);
    Transformer m = random_model(config, 31);
    m.set_requires_grad(true);
    m.layers_[0].up_weight.requires_grad_(false);  // a frozen weight: no gradient, none asked
    at::manual_seed(32);
    const PackedLoss loss_of(m.config().vocab_size);
    auto run = [&](bool fused, std::map<std::string, at::Tensor>& grads, int& nodes) {
      m.set_fused_training_ops(fused);
      const at::Tensor loss = loss_of(m);
      nodes = 0;
      for (const auto& [name, n] : graph_nodes(loss)) nodes += n;
      loss.backward();
      for (auto& [name, t] : m.named_parameters()) {
        if (t.grad().defined()) grads[name] = t.grad().clone();
        t.mutable_grad() = at::Tensor();
      }
      return loss.item<double>();
    };
    std::map<std::string, at::Tensor> eager_grads, fused_grads;
    int eager_nodes = 0, fused_nodes = 0;
    const double eager = run(false, eager_grads, eager_nodes);
    const double fused = run(true, fused_grads, fused_nodes);
    const bool kernels_apply = !m.config().norm_weight_in_fp32;
    if (kernels_apply) {
      EXPECT_LT(std::abs(fused - eager) / std::abs(eager), 1e-6);
      EXPECT_LT(fused_nodes, eager_nodes * 3 / 4) << "the layer ops should be one node each";
    } else {  // RoPE and SiLU * up fused (bit-equal forwards), the norms eager
      EXPECT_EQ(fused, eager);
      EXPECT_LT(fused_nodes, eager_nodes);
    }
    ASSERT_EQ(fused_grads.size(), eager_grads.size());
    double worst = 0;
    for (const auto& [name, ref] : eager_grads) {
      const at::Tensor& g = fused_grads.at(name);
      const double rel = (g - ref).norm().item<double>() / ref.norm().item<double>();
      EXPECT_LT(rel, 1e-5) << name;
      EXPECT_GT(ref.abs().max().item<double>(), 0) << name;
      worst = std::max(worst, rel);
    }
    EXPECT_FALSE(fused_grads.count("model.layers.0.mlp.up_proj.weight"));
    std::printf("[ info ] %s: loss %.9g fused vs %.9g eager; worst gradient relative difference %.1e; graph %d vs %d "
                "nodes\n", label.c_str(), fused, eager, worst, fused_nodes, eager_nodes);
  }
}

// Transformer::token_logprobs (the fused LM head) against float64 log_softmax of the full logits,
// values and gradients, tied and untied.
TEST(Transformer, TokenLogprobsEqualsFloat64LogSoftmaxOfTheLogits) {
  for (const bool tied : {false, true}) {
    Transformer m = random_model(tiny_config("llama", tied), 23);
    m.set_requires_grad(true);
    const at::Tensor ids = at::randint(53, {3, 7}, at::kLong);
    at::Tensor targets = at::randint(53, {3, 7}, at::kLong);
    targets.index_put_({1, 2}, -100);
    const at::Tensor hidden = m.forward(ids, arange_positions(3, 7)).detach().requires_grad_(true);
    auto [logp, entropy] = m.token_logprobs(hidden, targets, 1.2, true);
    ASSERT_EQ(logp.sizes(), targets.sizes());
    (logp.sum() + entropy.sum()).backward();

    const at::Tensor h64 = d(hidden).requires_grad_(true), w64 = d(m.lm_head_weight()).requires_grad_(true);
    const at::Tensor log_p = at::log_softmax(at::matmul(h64, w64.t()) / 1.2, -1);
    const at::Tensor ref = log_p.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1) * targets.ge(0);
    const at::Tensor ref_entropy = -(log_p.exp() * log_p).sum(-1);
    (ref.sum() + ref_entropy.sum()).backward();
    auto rel = [](const at::Tensor& a, const at::Tensor& b) { return (d(a) - b).norm().item<double>() / b.norm().item<double>(); };
    EXPECT_LT(rel(logp, ref.detach()), 1e-6);
    EXPECT_LT(rel(entropy, ref_entropy.detach()), 1e-6);
    EXPECT_LT(rel(hidden.grad(), h64.grad()), 1e-5);
    // Tied: the embedding's gradient here is the LM head's alone (hidden was detached).
    EXPECT_LT(rel(m.lm_head_weight().grad(), w64.grad()), 1e-5) << "tied=" << tied;
  }
}
