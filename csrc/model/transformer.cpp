// The Llama-family forward pass. Numerics follow transformers' modeling_llama so logits match to
// fp32 rounding: RMSNorm upcasts to fp32 and casts back before the weight multiply; RoPE angles
// are computed in fp32 (positions × inv_freq), cos/sin cast to the activation dtype and applied
// with the rotate_half pairing (dimension i pairs with i + head_dim/2); attention is
// at::scaled_dot_product_attention with scale head_dim^-0.5. Forwards that need no gradient use
// kernels/' fused ops, and so do training forwards with fused_training_ops (a sibling layer in
// DESIGN.md's order: kernels depends on nothing here).
#include "model/transformer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "common/error.h"
#include "common/rng.h"
#include "kernels/ops.h"
#include "model/device_memory.h"
#include "model/hf_adapter.h"

namespace scorch {
namespace {

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
}

// RoPE tables [B, 1, T, rotary_dim]: fp32 angles, times the rope's attention factor (longrope), then
// cast to the activation dtype (as transformers).
std::pair<at::Tensor, at::Tensor> rope_tables(const at::Tensor& positions, const at::Tensor& inv_freq,
                                              at::ScalarType act_dtype, double attention_factor = 1.0) {
  const auto dev = positions.device();
  const at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq.to(dev).view({1, 1, -1});
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos(), sin = emb.sin();
  if (attention_factor != 1.0) {
    cos = cos * attention_factor;
    sin = sin * attention_factor;
  }
  return {cos.to(act_dtype).unsqueeze(1), sin.to(act_dtype).unsqueeze(1)};
}

// The RoPE tables of one forward: every layer's, and the sliding-window layers' own where the config
// gives them a separate base (ModelConfig::local_rope_theta; undefined otherwise).
struct Rope {
  at::Tensor cos, sin, local_cos, local_sin;

  Rope(const at::Tensor& positions, const at::Tensor& inv_freq, const at::Tensor& local_inv_freq, at::ScalarType dtype,
       double attention_factor) {
    std::tie(cos, sin) = rope_tables(positions, inv_freq, dtype, attention_factor);
    if (local_inv_freq.defined()) std::tie(local_cos, local_sin) = rope_tables(positions, local_inv_freq, dtype);
  }
  const at::Tensor& cos_of(bool sliding) const { return sliding && local_cos.defined() ? local_cos : cos; }
  const at::Tensor& sin_of(bool sliding) const { return sliding && local_sin.defined() ? local_sin : sin; }
};

// Attention of one layer: q [B, H, T, D], k / v [B, KV, S, D], mask [B, 1, T, S] bool (or nullopt with
// `causal`). On CUDA, decode steps (one query per row) with GQA go through
// grouped_decode_attention; the CPU keeps SDPA's enable_gqa (the fold is no faster there:
// bench/RESULTS.md, "Decode attention with GQA").
// With soft-capping (softcap > 0; SDPA has none) the scores are computed as transformers' eager
// attention does: q k^T * scale, cap * tanh(. / cap), + mask, softmax in fp32 cast back, times v.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& mask,
                  bool causal, double scale, double softcap = 0) {
  const int64_t H = q.size(1), T = q.size(2), KV = k.size(1);
  if (softcap > 0) {
    const at::Tensor kk = KV == H ? k : k.repeat_interleave(H / KV, 1), vv = KV == H ? v : v.repeat_interleave(H / KV, 1);
    at::Tensor w = at::matmul(q, kk.transpose(2, 3)) * scale;  // [B, H, T, S]
    w = at::tanh(w / softcap) * softcap;
    if (mask) {
      w = w + (mask->scalar_type() == at::kBool
                   ? at::zeros(mask->sizes(), w.options()).masked_fill_(mask->logical_not(), -INFINITY)
                   : *mask);
    } else if (causal) {
      const int64_t S = k.size(2);
      const at::Tensor allowed = at::ones({T, S}, q.options().dtype(at::kBool)).tril(S - T);
      w = w.masked_fill(allowed.logical_not(), -INFINITY);
    }
    return at::matmul(at::softmax(w, -1, at::kFloat).to(q.scalar_type()), vv);
  }
  if (q.is_cuda() && T == 1 && KV != H && !causal) return grouped_decode_attention(q, k, v, mask, scale);
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, scale, /*enable_gqa=*/KV != H);
}

// Whether any of the model's parameters or LoRA adapters requires grad.
bool any_requires_grad(const std::vector<at::Tensor>& tensors, const std::vector<TransformerLayer>& layers) {
  for (const at::Tensor& t : tensors) {
    if (t.requires_grad()) return true;
  }
  for (const TransformerLayer& L : layers) {
    for (const LoraWeights& w : L.lora) {
      if (w.defined() && (w.a.requires_grad() || w.b.requires_grad())) return true;
    }
  }
  return false;
}

// Whether a forward must differentiate with respect to any of these (defined) tensors.
bool needs_grad(std::initializer_list<const at::Tensor*> tensors) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : tensors) {
    if (t->defined() && t->requires_grad()) return true;
  }
  return false;
}

// Whether a forward may run kernels' fused layer ops (RMSNorm, add + RMSNorm, RoPE, SiLU * up): always
// where nothing needs a gradient; where something does, when `fused_training` is on
// (Transformer::set_fused_training_ops; their backward is in kernels/). The same forward values
// either way; the gradients differ by the dtype's rounding (the fused backward rounds once).
// The kernels take bf16 / fp16 / fp32: a float64 model (tests' references) runs the eager ops.
bool use_fused_ops(bool fused_training, std::initializer_list<const at::Tensor*> inputs) {
  for (const at::Tensor* t : inputs) {
    const at::ScalarType dtype = t->defined() ? t->scalar_type() : at::kFloat;
    if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf) return false;
  }
  return fused_training || !needs_grad(inputs);
}

// x * cos + rotate_half(x) * sin over x [B, M, T, D] (M heads; q and k heads at once in the fused
// path): kernels' fused_rope (the same rounding, one kernel) or the eager ops. With tables narrower
// than D (partial rotary) the first cos.size(-1) dimensions rotate and the rest pass through, as
// transformers' phi3.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool fused_training) {
  const int64_t rotary = cos.size(-1), D = x.size(-1);
  if (rotary < D) {
    return at::cat({apply_rope(x.narrow(-1, 0, rotary), cos, sin, fused_training), x.narrow(-1, rotary, D - rotary)},
                   -1);
  }
  if (use_fused_ops(fused_training, {&x})) return fused_rope(x, cos, sin);
  return x * cos + rotate_half(x) * sin;
}

// RMSNorm, and the residual add followed by RMSNorm, as the config's family computes them: kernels'
// fused ops (one kernel each, the same per-op rounding; the sum of squares in another order) when
// the family rounds as Llama does; the plain ops otherwise (the kernels implement Llama's rounding
// only), or where a gradient is needed with fused_training off.
at::Tensor norm(const at::Tensor& x, const at::Tensor& weight, const ModelConfig& c, bool fused_training) {
  if (!c.norm_weight_in_fp32 && use_fused_ops(fused_training, {&x, &weight})) {
    return fused_rms_norm(x, weight, c.rms_norm_eps);
  }
  return rms_norm(x, weight, c.rms_norm_eps, c.norm_weight_in_fp32, c.norm_weight_offset);
}

std::tuple<at::Tensor, at::Tensor> add_norm(const at::Tensor& h, const at::Tensor& delta, const at::Tensor& weight,
                                            const ModelConfig& c, bool fused_training) {
  if (!c.norm_weight_in_fp32 && use_fused_ops(fused_training, {&h, &delta, &weight})) {
    return fused_add_rms_norm(h, delta, weight, c.rms_norm_eps);
  }
  at::Tensor sum = h + delta;
  at::Tensor y = rms_norm(sum, weight, c.rms_norm_eps, c.norm_weight_in_fp32, c.norm_weight_offset);
  return {std::move(sum), std::move(y)};
}

// The adapter's term of one projection, scaling · (dropout(x) Aᵀ) Bᵀ: [..., out]. Dropout (PEFT's
// lora_dropout, on the adapter's input only) acts in forwards that differentiate the adapter.
at::Tensor lora_term(const at::Tensor& x, const LoraWeights& w, const Transformer::LoraScale& s) {
  const at::Tensor in = s.dropout > 0 && needs_grad({&w.a, &w.b}) ? at::dropout(x, s.dropout, /*train=*/true) : x;
  return at::linear(at::linear(in, w.a), w.b) * s.scaling;
}

const at::Tensor& projection_bias(const TransformerLayer& L, Projection p) {
  static const at::Tensor none;
  switch (p) {
    case Projection::q: return L.q_bias;
    case Projection::k: return L.k_bias;
    case Projection::v: return L.v_bias;
    case Projection::o: return L.o_bias;
    default: return none;
  }
}

// Every linear projection of a layer goes through here: x [..., in] through the projections `ps`,
// which are one projection, or {q, k, v} / {gate, up} read through the fused weight whose
// consecutive row blocks they are (one GEMM; TransformerLayer). Each projection's LoRA adapter,
// if any, adds its term to its columns of the output, so the base GEMM stays as it is (fused,
// frozen, in the model dtype) and a zero lora_B leaves the output bitwise unchanged.
at::Tensor project(const at::Tensor& x, const TransformerLayer& L, std::initializer_list<Projection> ps,
                   const Transformer::LoraScale& lora) {
  const Projection first = *ps.begin();
  at::Tensor y = ps.size() == 1          ? at::linear(x, projection_weight(L, first), projection_bias(L, first))
                 : first == Projection::q ? at::linear(x, L.qkv_weight, L.qkv_bias)
                                          : at::linear(x, L.gate_up_weight);
  bool adapted = false;
  for (Projection p : ps) adapted = adapted || L.lora[static_cast<size_t>(p)].defined();
  if (!adapted) return y;
  if (ps.size() == 1) return y + lora_term(x, L.lora[static_cast<size_t>(first)], lora);
  std::vector<at::Tensor> terms;  // one [..., out_p] block per projection, zeros where it has no adapter
  for (Projection p : ps) {
    const LoraWeights& w = L.lora[static_cast<size_t>(p)];
    if (w.defined()) {
      terms.push_back(lora_term(x, w, lora));
    } else {
      std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
      shape.back() = projection_weight(L, p).size(0);
      terms.push_back(at::zeros(shape, y.options()));
    }
  }
  return y + at::cat(terms, -1);
}

// The MLP's gated activation act(gate) * up (ModelConfig::hidden_act): SiLU through kernels'
// silu_mul (bit-equal to the eager pair) or the eager ops; GeGLU always eager.
at::Tensor gated_activation(const at::Tensor& gate, const at::Tensor& up, const ModelConfig& c, bool fused_training) {
  if (c.hidden_act == Activation::kGeluTanh) return at::gelu(gate, "tanh") * up;
  if (use_fused_ops(fused_training, {&gate, &up})) return silu_mul(gate, up);
  return at::silu(gate) * up;
}

// ModelConfig::qk_norm on the query and key projections q [B, T, H * D], k [B, T, KV * D] (in place
// of the arguments; nothing to do without q/k norms).
void norm_qk(const TransformerLayer& L, const ModelConfig& c, bool fused_training, at::Tensor& q, at::Tensor& k) {
  if (c.qk_norm == QkNorm::kFull) {
    q = norm(q, L.q_norm, c, fused_training);
    k = norm(k, L.k_norm, c, fused_training);
  } else if (c.qk_norm == QkNorm::kPerHead) {
    q = norm(q.unflatten(-1, {-1, c.head_dim}), L.q_norm, c, fused_training).flatten(-2);
    k = norm(k.unflatten(-1, {-1, c.head_dim}), L.k_norm, c, fused_training).flatten(-2);
  }
}

// The attention masks of one forward: `full` for full-attention layers (nullopt with `causal`) and
// `window` for sliding-window layers (ModelConfig::is_sliding_layer; nullopt when there are none),
// bool (true = attend) or already additive.
struct LayerMasks {
  std::optional<at::Tensor> full;
  bool causal = false;
  std::optional<at::Tensor> window;
};

// `base` [B | 1, 1, T, S] bool restricted to the sliding window: query position pq sees key position
// pk only if pq - pk < window (positions, i.e. real tokens, not slots: left padding does not count).
//   q_pos [B, T], k_pos [B, S] int64
at::Tensor restrict_to_window(const at::Tensor& base, const at::Tensor& q_pos, const at::Tensor& k_pos, int64_t window) {
  const at::Tensor distance = q_pos.unsqueeze(1).unsqueeze(-1) - k_pos.unsqueeze(1).unsqueeze(2);  // [B, 1, T, S]
  return base.logical_and(distance.lt(window));
}

// A bool attention mask (true = attend) as the additive mask SDPA would make of it at every layer
// (0 / -inf in the activation dtype): converted once per forward instead of once per layer.
std::optional<at::Tensor> additive_mask(const std::optional<at::Tensor>& mask, at::ScalarType dtype) {
  if (!mask) return mask;
  return at::zeros(mask->sizes(), mask->options().dtype(dtype))
      .masked_fill_(mask->logical_not(), -std::numeric_limits<double>::infinity());
}

// The decoder layers over h [B, T, hidden], returning the last layer's output before the final
// norm: `kv(layer, k, v)` stores this step's keys / values [B, KV, T, D] (in a cache) and returns
// what attention reads ([B, KV, S, D]); each layer attends with its mask of `masks`.
// Without gradients (generation, reference log-probs, evaluation) a layer is ~13 kernels instead
// of ~44: one GEMM for q/k/v and one for gate/up (fused storage, TransformerLayer), RoPE on the q
// and k heads at once, and kernels' fused RMSNorm (each residual add fused with the norm after it),
// RoPE and SiLU-and-multiply -- the same values as the separate ops up to the GEMMs' blocking and
// the norms' order of summation.
// With gradients (training) the projections stay separate (q, k, v and gate, up are distinct
// parameters), and with `fused_training` the norms, RoPE and SiLU * up still run as kernels' fused
// ops, with their fused backward (~20 ops per layer instead of ~42, before autograd's backward).
// The families' variants (ModelConfig): q/k norms between the projection and RoPE; with post_norms
// the attention and MLP outputs are normed before their residual add, and (pre_norms) the next
// attention / MLP input is normed separately; GeGLU; soft-capped scores; a separate RoPE for the
// sliding-window layers. The fused kernels cover Llama's rounding of RMSNorm and SiLU only; other
// variants run the plain ops.
// `qkv_attn(layer, qkv, mask, cos, sin)` may take over RoPE, the cache write and attention (with the
// layer's mask and RoPE tables) from a fused projection qkv [B, H + 2 KV, T, D] and return the
// attention output [B, T, H * D], or nullopt (then RoPE, kv() and attend()).
template <class KvFn, class QkvAttnFn>
at::Tensor run_layers(const std::vector<TransformerLayer>& layers, const ModelConfig& c,
                      const Transformer::LoraScale& lora, bool fused, at::Tensor h, const Rope& rope,
                      const LayerMasks& masks, KvFn&& kv, QkvAttnFn&& qkv_attn, size_t first_layer = 0) {
  const int64_t B = h.size(0), T = h.size(1);
  const int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim, I = c.intermediate_size;
  const double scale = c.attention_scale();
  if (layers.empty()) return h;
  at::Tensor x = c.pre_norms ? norm(h, layers[0].input_norm, c, fused) : h;  // the attention input
  for (size_t i = 0; i < layers.size(); ++i) {
    const TransformerLayer& L = layers[i];
    const bool sliding = c.is_sliding_layer(first_layer + i);
    const std::optional<at::Tensor>& mask = sliding ? masks.window : masks.full;
    const bool causal = !sliding && masks.causal;
    const at::Tensor& cos = rope.cos_of(sliding);
    const at::Tensor& sin = rope.sin_of(sliding);
    at::Tensor q, k, v, attn;  // attn [B, T, H * D]
    if (has_fused_qkv(L) &&
        !needs_grad({&L.q_weight, &L.k_weight, &L.v_weight, &L.q_bias, &L.k_bias, &L.v_bias})) {
      at::Tensor proj = project(x, L, {Projection::q, Projection::k, Projection::v}, lora);  // [B, T, (H + 2 KV) D]
      if (c.qk_norm != QkNorm::kNone) {
        at::Tensor qp = proj.narrow(-1, 0, H * D), kp = proj.narrow(-1, H * D, KV * D);
        norm_qk(L, c, fused, qp, kp);
        proj = at::cat({qp, kp, proj.narrow(-1, (H + KV) * D, KV * D)}, -1);
      }
      const at::Tensor qkv = proj.view({B, T, H + 2 * KV, D}).transpose(1, 2);
      if (auto attended = qkv_attn(static_cast<int64_t>(first_layer + i), qkv, mask, cos, sin)) {
        attn = *attended;
      } else {
        const at::Tensor qk = apply_rope(qkv.narrow(1, 0, H + KV), cos, sin, fused);  // [B, H + KV, T, D]
        q = qk.narrow(1, 0, H);
        std::tie(k, v) = kv(static_cast<int64_t>(first_layer + i), qk.narrow(1, H, KV), qkv.narrow(1, H + KV, KV));
      }
    } else {
      at::Tensor qp = project(x, L, {Projection::q}, lora), kp = project(x, L, {Projection::k}, lora);
      norm_qk(L, c, fused, qp, kp);
      q = apply_rope(qp.view({B, T, H, D}).transpose(1, 2), cos, sin, fused);  // [B, H, T, D]
      k = apply_rope(kp.view({B, T, KV, D}).transpose(1, 2), cos, sin, fused);  // [B, KV, T, D]
      v = project(x, L, {Projection::v}, lora).view({B, T, KV, D}).transpose(1, 2);
      std::tie(k, v) = kv(static_cast<int64_t>(first_layer + i), k, v);
    }
    if (!attn.defined()) {
      attn = attend(q, k, v, mask, causal, scale, c.attn_logit_softcapping).transpose(1, 2).reshape({B, T, H * D});
    }
    const at::Tensor o = project(attn, L, {Projection::o}, lora);
    at::Tensor y;  // the MLP input
    if (c.post_norms) {
      h = h + norm(o, L.post_attention_norm, c, fused);
      y = c.pre_norms ? norm(h, L.pre_feedforward_norm, c, fused) : h;
    } else {
      std::tie(h, y) = add_norm(h, o, L.post_attention_norm, c, fused);
    }
    at::Tensor act;
    if (has_fused_gate_up(L) && !needs_grad({&L.gate_weight, &L.up_weight})) {
      const at::Tensor gu = project(y, L, {Projection::gate, Projection::up}, lora);  // [B, T, 2 I]
      act = c.hidden_act == Activation::kSilu && use_fused_ops(fused, {&gu})
                ? silu_and_mul(gu)
                : gated_activation(gu.narrow(-1, 0, I), gu.narrow(-1, I, I), c, fused);
    } else {
      act = gated_activation(project(y, L, {Projection::gate}, lora), project(y, L, {Projection::up}, lora), c,
                             fused);
    }
    const at::Tensor down = project(act, L, {Projection::down}, lora);
    if (c.post_norms) {
      h = h + norm(down, L.post_feedforward_norm, c, fused);
      if (i + 1 < layers.size()) x = c.pre_norms ? norm(h, layers[i + 1].input_norm, c, fused) : h;
    } else if (i + 1 < layers.size()) {
      std::tie(h, x) = add_norm(h, down, layers[i + 1].input_norm, c, fused);
    } else {
      h = h + down;
    }
  }
  return h;
}

// Decoder layer `index` over h [B, T, hidden] without a cache: the input norm, the layer, the
// residual sum (run_layers on this layer alone, the same ops as inside the full loop, with the
// layer's own mask and RoPE tables).
at::Tensor run_one_layer(const TransformerLayer& layer, size_t index, const ModelConfig& c,
                         const Transformer::LoraScale& lora, bool fused, const at::Tensor& h, const Rope& rope,
                         const LayerMasks& masks) {
  const std::vector<TransformerLayer> one{layer};  // shares the layer's tensors
  return run_layers(
      one, c, lora, fused, h, rope, masks,
      [](int64_t, const at::Tensor& k, const at::Tensor& v) { return std::make_pair(k, v); },
      [](int64_t, const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&, const at::Tensor&) {
        return std::optional<at::Tensor>();
      },
      index);
}

// What a checkpointed layer needs again in its backward, kept by the autograd node.
// The RoPE tables and masks take no gradient, so they travel here rather than as autograd inputs.
struct CheckpointedLayerState : torch::CustomClassHolder {
  TransformerLayer layer;
  size_t index = 0;
  ModelConfig config;
  Transformer::LoraScale lora;
  bool fused_training = true;
  std::shared_ptr<const Rope> rope;
  std::shared_ptr<const LayerMasks> masks;
};

// The layer's parameters as autograd inputs (each defined tensor once, in a fixed order).
std::vector<at::Tensor> layer_parameters(const TransformerLayer& L) {
  std::vector<at::Tensor> out;
  for (const at::Tensor* t : {&L.input_norm, &L.q_weight, &L.k_weight, &L.v_weight, &L.q_bias, &L.k_bias, &L.v_bias,
                              &L.o_weight, &L.o_bias, &L.q_norm, &L.k_norm, &L.post_attention_norm,
                              &L.pre_feedforward_norm, &L.post_feedforward_norm, &L.gate_weight, &L.up_weight,
                              &L.down_weight}) {
    if (t->defined()) out.push_back(*t);
  }
  for (const LoraWeights& w : L.lora) {
    if (w.defined()) {
      out.push_back(w.a);
      out.push_back(w.b);
    }
  }
  return out;
}

// Activation checkpointing of one decoder layer: the forward keeps only the layer's input (the
// output is computed with the training path's ops and the layer's activations are dropped at
// once); the backward runs the layer again under grad and differentiates that. The layer has no
// randomness (no dropout), so the recomputation is the forward exactly.
class CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h,
                                                at::TensorList params,
                                                c10::intrusive_ptr<CheckpointedLayerState> state) {
    at::Tensor out;
    {
      // The training path's ops (not the no-grad fused kernels), so the recomputation in the
      // backward reproduces this output bit for bit; the graph built here dies with this scope.
      at::AutoGradMode grad(true);
      const at::Tensor x = h.detach().requires_grad_(true);
      out = run_one_layer(state->layer, state->index, state->config, state->lora, state->fused_training, x,
                          *state->rope, *state->masks)
                .detach();
    }
    ctx->save_for_backward({h});
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    ctx->saved_data["params"] = static_cast<int64_t>(params.size());
    return {out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto state = c10::static_intrusive_pointer_cast<CheckpointedLayerState>(ctx->saved_data["state"].toCapsule());
    const size_t n_params = static_cast<size_t>(ctx->saved_data["params"].toInt());
    at::AutoGradMode grad(true);
    const at::Tensor x = saved[0].detach().requires_grad_(true);
    const at::Tensor out =
        run_one_layer(state->layer, state->index, state->config, state->lora, state->fused_training, x,
                          *state->rope, *state->masks);
    // Differentiate with respect to the input and the parameters that train (frozen ones get none).
    const std::vector<at::Tensor> params = layer_parameters(state->layer);
    std::vector<at::Tensor> wrt{x};
    std::vector<size_t> slot;  // wrt[k + 1] is params[slot[k]]
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].requires_grad()) {
        wrt.push_back(params[i]);
        slot.push_back(i);
      }
    }
    const auto g = torch::autograd::grad({out}, wrt, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                         /*allow_unused=*/true);
    // One gradient per forward argument: h, each parameter, state.
    torch::autograd::variable_list result(1 + n_params + 1);
    result[0] = g[0];
    for (size_t k = 0; k < slot.size(); ++k) result[1 + slot[k]] = g[k + 1];
    return result;
  }
};

// Concatenates the row blocks `parts` into one new tensor and makes each part its slice, keeping
// each part's requires_grad. Returns the fused tensor.
at::Tensor fuse_rows(std::initializer_list<at::Tensor*> parts) {
  std::vector<at::Tensor> values;
  for (at::Tensor* p : parts) values.push_back(p->detach());
  const at::Tensor base = at::cat(values, 0);
  int64_t row = 0;
  for (at::Tensor* p : parts) {
    const bool rg = p->requires_grad();
    const int64_t n = p->size(0);
    *p = base.narrow(0, row, n);
    if (rg) p->requires_grad_(true);
    row += n;
  }
  return base;
}

// Whether `parts` are, in order, consecutive row slices covering `base`.
bool are_slices_of(const at::Tensor& base, std::initializer_list<const at::Tensor*> parts) {
  if (!base.defined() || base.dim() < 1) return false;
  int64_t row = 0;
  for (const at::Tensor* p : parts) {
    if (!p->defined() || !p->is_alias_of(base) || p->dim() != base.dim()) return false;
    if (p->storage_offset() != base.storage_offset() + row * base.stride(0)) return false;
    if (p->strides() != base.strides() || p->sizes().slice(1) != base.sizes().slice(1)) return false;
    row += p->size(0);
  }
  return row == base.size(0);
}

}  // namespace

const at::Tensor& projection_weight(const TransformerLayer& L, Projection p) {
  switch (p) {
    case Projection::q: return L.q_weight;
    case Projection::k: return L.k_weight;
    case Projection::v: return L.v_weight;
    case Projection::o: return L.o_weight;
    case Projection::gate: return L.gate_weight;
    case Projection::up: return L.up_weight;
    case Projection::down: return L.down_weight;
  }
  throw std::logic_error("projection_weight: bad projection");
}

bool has_fused_qkv(const TransformerLayer& L) {
  if (!are_slices_of(L.qkv_weight, {&L.q_weight, &L.k_weight, &L.v_weight})) return false;
  if (!L.q_bias.defined() && !L.k_bias.defined() && !L.v_bias.defined()) return !L.qkv_bias.defined();
  return are_slices_of(L.qkv_bias, {&L.q_bias, &L.k_bias, &L.v_bias});
}

bool has_fused_gate_up(const TransformerLayer& L) {
  return are_slices_of(L.gate_up_weight, {&L.gate_weight, &L.up_weight});
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_in_fp32, double weight_offset) {
  const auto input_dtype = x.scalar_type();
  const at::Tensor h = x.to(at::kFloat);
  const at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  if (weight_in_fp32) {
    const at::Tensor w = weight_offset != 0 ? weight.to(at::kFloat) + weight_offset : weight;
    return (h * at::rsqrt(variance + eps) * w).to(input_dtype);
  }
  return weight * (h * at::rsqrt(variance + eps)).to(input_dtype);
}

at::Tensor rope_inv_freq(const ModelConfig& c) {
  const int64_t dim = c.rotary_dim();
  // As transformers: int64 arange cast to fp32, divided, theta ** that, reciprocal — all in fp32.
  const at::Tensor exponent = at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / dim;
  at::Tensor inv_freq = at::reciprocal(at::pow(at::Scalar(c.rope_theta), exponent));
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "longrope") {  // as transformers: 1 / (short_factor * theta ** exponent)
    const at::Tensor ext = at::tensor(std::vector<float>(s.short_factor.begin(), s.short_factor.end()), at::kFloat);
    inv_freq = at::reciprocal(ext * at::pow(at::Scalar(c.rope_theta), exponent));
  } else if (s.type == "linear") {
    inv_freq = inv_freq / s.factor;
  } else if (s.type == "llama3") {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / s.low_freq_factor;
    const double high_freq_wavelen = old_len / s.high_freq_factor;
    const at::Tensor wavelen = 2 * M_PI / inv_freq;
    at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
    const at::Tensor smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    const at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    const at::Tensor medium = wavelen.ge(high_freq_wavelen).logical_and(wavelen.le(low_freq_wavelen));
    inv_freq = at::where(medium, smoothed, scaled);
  } else if (s.type != "default") {
    throw UserError("rope scaling '" + s.type + "' is not supported");
  }
  return inv_freq;
}

at::Tensor grouped_decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const std::optional<at::Tensor>& mask, double scale) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3), KV = k.size(1);
  if (q.size(2) != 1 || H % KV != 0) {
    throw std::invalid_argument("grouped_decode_attention: one query per row and query heads a multiple of KV heads");
  }
  const at::Tensor a = at::scaled_dot_product_attention(q.reshape({B, KV, H / KV, D}), k, v, mask, 0.0, false, scale);
  return a.reshape({B, H, 1, D});
}

Transformer::Transformer(ModelConfig config, at::ScalarType dtype, at::Device device) : config_(std::move(config)) {
  const ModelConfig& c = config_;
  {  // doubles: an absurd config.json must not overflow the estimate
    const double H = static_cast<double>(c.hidden_size);
    const double per_layer = H * (c.q_dim() + 2.0 * c.kv_dim()) + static_cast<double>(c.q_dim()) * H +
                             3.0 * H * static_cast<double>(c.intermediate_size) + 2 * H;
    const double params = static_cast<double>(c.vocab_size) * H * (c.tie_word_embeddings ? 1 : 2) +
                          static_cast<double>(c.num_hidden_layers) * per_layer + H;
    check_memory(device, params * c10::elementSize(dtype),
                      "the model's weights (num_hidden_layers " + std::to_string(c.num_hidden_layers) +
                          ", hidden_size " + std::to_string(c.hidden_size) + ", intermediate_size " +
                          std::to_string(c.intermediate_size) + ", vocab_size " + std::to_string(c.vocab_size) + ")",
                      "check the sizes in config.json, or use a smaller model or dtype");
  }
  const auto o = at::TensorOptions().dtype(dtype).device(device);
  embed_tokens_ = at::empty({c.vocab_size, c.hidden_size}, o);
  layers_.resize(c.num_hidden_layers);
  const int64_t q_norm_dim = c.qk_norm == QkNorm::kFull ? c.q_dim() : c.head_dim;
  const int64_t k_norm_dim = c.qk_norm == QkNorm::kFull ? c.kv_dim() : c.head_dim;
  for (auto& L : layers_) {
    if (c.pre_norms) L.input_norm = at::empty({c.hidden_size}, o);
    L.q_weight = at::empty({c.q_dim(), c.hidden_size}, o);
    L.k_weight = at::empty({c.kv_dim(), c.hidden_size}, o);
    L.v_weight = at::empty({c.kv_dim(), c.hidden_size}, o);
    L.o_weight = at::empty({c.hidden_size, c.q_dim()}, o);
    if (c.has_qkv_bias()) {
      L.q_bias = at::empty({c.q_dim()}, o);
      L.k_bias = at::empty({c.kv_dim()}, o);
      L.v_bias = at::empty({c.kv_dim()}, o);
    }
    if (c.has_o_bias()) L.o_bias = at::empty({c.hidden_size}, o);
    if (c.qk_norm != QkNorm::kNone) {
      L.q_norm = at::empty({q_norm_dim}, o);
      L.k_norm = at::empty({k_norm_dim}, o);
    }
    L.post_attention_norm = at::empty({c.hidden_size}, o);
    if (c.post_norms) L.post_feedforward_norm = at::empty({c.hidden_size}, o);
    if (c.post_norms && c.pre_norms) L.pre_feedforward_norm = at::empty({c.hidden_size}, o);
    L.gate_weight = at::empty({c.intermediate_size, c.hidden_size}, o);
    L.up_weight = at::empty({c.intermediate_size, c.hidden_size}, o);
    L.down_weight = at::empty({c.hidden_size, c.intermediate_size}, o);
  }
  norm_ = at::empty({c.hidden_size}, o);
  if (!c.tie_word_embeddings) lm_head_ = at::empty({c.vocab_size, c.hidden_size}, o);
  // On the weights' device (no host copy per forward, none inside a CUDA graph); a meta-device
  // model (loading fills its slots) keeps it on the CPU until to() or assign_hf_weights places it.
  inv_freq_ = device.is_meta() ? rope_inv_freq(c) : rope_inv_freq(c).to(device);
  if (c.local_rope_theta > 0) {
    ModelConfig local = c;
    local.rope_theta = c.local_rope_theta;
    local.rope_scaling = RopeScaling{};
    local_inv_freq_ = device.is_meta() ? rope_inv_freq(local) : rope_inv_freq(local).to(device);
  }
  fuse_projections();
}

void Transformer::fuse_projections() {
  if (embed_tokens_.device().is_meta()) return;  // loading replaces every slot, then to() fuses
  for (TransformerLayer& L : layers_) {
    L.qkv_weight = fuse_rows({&L.q_weight, &L.k_weight, &L.v_weight});
    L.qkv_bias = config_.has_qkv_bias() ? fuse_rows({&L.q_bias, &L.k_bias, &L.v_bias}) : at::Tensor();
    L.gate_up_weight = fuse_rows({&L.gate_weight, &L.up_weight});
  }
}

at::Tensor Transformer::forward(const at::Tensor& input_ids, const at::Tensor& positions,
                                const std::optional<at::Tensor>& attention_mask, KvCache* cache) const {
  const ModelConfig& c = config_;
  if (input_ids.dim() != 2) throw std::invalid_argument("Transformer::forward: input_ids must be [B, T]");
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  if (positions.sizes() != input_ids.sizes()) {
    throw std::invalid_argument("Transformer::forward: positions must have input_ids' shape [B, T]");
  }
  const auto dev = embed_tokens_.device();

  const at::Tensor h = embed(input_ids.to(dev));  // [B, T, hidden]
  const at::Tensor pos = positions.to(dev);
  const Rope rope(pos, inv_freq_, local_inv_freq_, h.scalar_type(), c.rope_scaling.attention_factor);
  if (c.rope_scaling.type == "longrope" && T > 0) {
    // transformers switches to long_factor tables from here on (mid-sequence); scorch refuses
    const int64_t last = pos.max().item<int64_t>();
    if (last >= c.rope_scaling.original_max_position_embeddings) {
      throw UserError("position " + std::to_string(last) + " is beyond original_max_position_embeddings (" +
                      std::to_string(c.rope_scaling.original_max_position_embeddings) +
                      "): scorch runs longrope's short factors only; keep sequences shorter");
    }
  }

  std::optional<at::Tensor> mask;
  bool causal = false;
  std::optional<at::Tensor> window;
  if (cache) {
    if (cache->batch() != B) throw std::invalid_argument("Transformer::forward: cache batch != input batch");
    mask = cache->begin_step(T, attention_mask);  // [B, 1, T, used + T]
    if (c.has_sliding_layers()) {
      window = restrict_to_window(*mask, pos, cache->slot_positions().narrow(1, 0, mask->size(-1)), c.sliding_window);
    }
  } else if (attention_mask) {
    at::Tensor m = attention_mask->to(dev, at::kBool);
    if (m.dim() == 3) m = m.unsqueeze(1);
    if (m.dim() != 4 || m.size(0) != B || m.size(1) != 1 || m.size(2) != T || m.size(3) != T) {
      throw std::invalid_argument("Transformer::forward: attention_mask must be [B, 1, T, T] bool without a cache");
    }
    // Every query sees itself, so a fully masked (padding) row cannot turn into NaN.
    mask = m.logical_or(at::eye(T, at::TensorOptions().dtype(at::kBool).device(dev)));
  } else {
    causal = true;
  }
  if (!cache && c.has_sliding_layers()) {
    const at::Tensor base =
        mask ? *mask : at::ones({T, T}, at::TensorOptions().dtype(at::kBool).device(dev)).tril().view({1, 1, T, T});
    window = restrict_to_window(base, pos, pos, c.sliding_window);
  }
  const LayerMasks masks{additive_mask(mask, h.scalar_type()), causal, additive_mask(window, h.scalar_type())};
  at::Tensor out;
  if (gradient_checkpointing_ && !cache && at::GradMode::is_enabled() && any_requires_grad(parameters(), layers_)) {
    if (lora_scale_.dropout > 0) {
      throw UserError("model.gradient_checkpointing with lora.lora_dropout > 0 is not supported (the recomputed "
                      "layer would draw other dropout masks): set lora.lora_dropout to 0 or turn checkpointing off");
    }
    const auto shared_rope = std::make_shared<const Rope>(rope);
    const auto shared_masks = std::make_shared<const LayerMasks>(masks);
    out = h;
    for (size_t i = 0; i < layers_.size(); ++i) {
      auto state = c10::make_intrusive<CheckpointedLayerState>();
      state->layer = layers_[i];
      state->index = i;
      state->config = c;
      state->lora = lora_scale_;
      state->fused_training = fused_training_ops_;
      state->rope = shared_rope;
      state->masks = shared_masks;
      const std::vector<at::Tensor> params = layer_parameters(layers_[i]);
      out = CheckpointedLayer::apply(out, at::TensorList(params), std::move(state))[0];
    }
  } else {
    out = run_layers(layers_, c, lora_scale_, fused_training_ops_, h, rope, masks,
                     [&](int64_t layer, const at::Tensor& k, const at::Tensor& v) {
                       return cache ? cache->write(layer, k, v) : std::make_pair(k, v);  // [B, KV, used + T, D]
                     },
                     [](int64_t, const at::Tensor&, const std::optional<at::Tensor>&, const at::Tensor&,
                        const at::Tensor&) { return std::optional<at::Tensor>(); });
  }
  if (cache) cache->end_step();
  return norm(out, norm_, c, fused_training_ops_);
}

at::Tensor Transformer::decode_step(const at::Tensor& input_ids, const at::Tensor& token_mask, const at::Tensor& slot,
                                    KvCache& cache, bool fused_attention) const {
  const ModelConfig& c = config_;
  const int64_t B = input_ids.size(0);
  if (input_ids.dim() != 2 || input_ids.size(1) != 1 || cache.batch() != B) {
    throw std::invalid_argument("Transformer::decode_step: input_ids must be [B, 1] with B = the cache's batch");
  }
  const at::Tensor h = embed(input_ids);  // [B, 1, hidden]
  const KvCache::StaticStep step = cache.begin_static_step(slot, token_mask);
  const Rope rope(step.positions, inv_freq_, local_inv_freq_, h.scalar_type(),
                  c.rope_scaling.attention_factor);  // tables [B, 1, 1, rotary_dim]
  LayerMasks masks{additive_mask(step.attention_mask, h.scalar_type()), /*causal=*/false, std::nullopt};
  if (c.has_sliding_layers()) {
    masks.window = additive_mask(
        restrict_to_window(step.attention_mask, step.positions, cache.slot_positions(), c.sliding_window),
        h.scalar_type());
  }
  const int64_t H = c.num_attention_heads;
  const double scale = c.attention_scale();
  const at::Tensor out = run_layers(layers_, c, lora_scale_, fused_training_ops_, h, rope, masks,
                                    [&](int64_t layer, const at::Tensor& k, const at::Tensor& v) {
                                      return cache.write_at(layer, k, v, slot);  // [B, KV, max_len, D]
                                    },
                                    [&](int64_t layer, const at::Tensor& qkv, const std::optional<at::Tensor>& mask,
                                        const at::Tensor& cos, const at::Tensor& sin) -> std::optional<at::Tensor> {
                                      // soft-capped scores and partial rotary: the kernels have neither
                                      // (plain ops instead)
                                      if (needs_grad({&qkv}) || c.attn_logit_softcapping > 0 ||
                                          c.rotary_dim() != c.head_dim) {
                                        return std::nullopt;
                                      }
                                      at::Tensor keys = cache.keys(layer), values = cache.values(layer);
                                      // RoPE, the cache write and attention in one kernel
                                      if (fused_attention) {
                                        return decode_attention(qkv, cos, sin, keys, values, slot, mask, H, scale);
                                      }
                                      // RoPE and the cache write in one kernel, then attention
                                      const at::Tensor q = rope_kv_write(qkv, cos, sin, keys, values, slot, H);
                                      return attend(q, keys, values, mask, false, scale)
                                          .transpose(1, 2)
                                          .reshape({B, 1, H * c.head_dim});
                                    });
  return norm(out, norm_, c, fused_training_ops_);
}

at::Tensor Transformer::embed(const at::Tensor& input_ids) const {
  const at::Tensor h = at::embedding(embed_tokens_, input_ids);
  if (!config_.scale_embeddings) return h;
  // As transformers: sqrt(hidden) as an fp32 tensor, rounded to the weights' dtype, times the rows.
  const double normalizer = std::sqrt(static_cast<double>(config_.hidden_size));
  return h * at::scalar_tensor(normalizer, h.options().dtype(at::kFloat)).to(h.scalar_type());
}

at::Tensor Transformer::logits(const at::Tensor& hidden) const { return cap_logits(at::linear(hidden, lm_head_weight())); }

at::Tensor Transformer::cap_logits(const at::Tensor& logits) const {
  const double cap = config_.final_logit_softcapping;
  if (cap <= 0) return logits;
  return at::tanh(logits / cap) * cap;
}

namespace {

// SCORCH_LM_HEAD: "" (the fused ops), "unfused" or "recompute" (read once).
const std::string& lm_head_mode() {
  static const std::string mode = [] {
    const char* v = std::getenv("SCORCH_LM_HEAD");
    const std::string m = v != nullptr ? v : "";
    if (!m.empty() && m != "unfused" && m != "recompute") {
      throw UserError("SCORCH_LM_HEAD='" + m + "' is not a mode: unset it, or set unfused or recompute");
    }
    return m;
  }();
  return mode;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> Transformer::token_logprobs(const at::Tensor& hidden, const at::Tensor& targets,
                                                              double temperature, bool with_entropy) const {
  const int64_t H = hidden.size(-1);
  if (targets.sizes() != hidden.sizes().slice(0, hidden.dim() - 1)) {
    throw std::invalid_argument("Transformer::token_logprobs: targets must have hidden's leading shape");
  }
  const at::Tensor t = targets.reshape({-1});
  at::Tensor logp, entropy;
  if (lm_head_mode() == "unfused") {
    const at::Tensor z = logits(hidden);
    std::tie(logp, entropy) = scorch::token_logprobs(z.reshape({-1, z.size(-1)}), t, temperature, with_entropy);
  } else {
    std::tie(logp, entropy) = lm_head_logprobs(hidden.reshape({-1, H}), lm_head_weight(), t, temperature, with_entropy,
                                               /*chunk=*/0, config_.final_logit_softcapping);
  }
  return {logp.view(targets.sizes()), with_entropy ? entropy.view(targets.sizes()) : entropy};
}

LmHeadTokenLoss Transformer::token_loss(const at::Tensor& hidden, const at::Tensor& targets,
                                        const TokenLossFn& loss_fn, double temperature, bool with_entropy) const {
  if (targets.sizes() != hidden.sizes().slice(0, hidden.dim() - 1)) {
    throw std::invalid_argument("Transformer::token_loss: targets must have hidden's leading shape");
  }
  LmHeadTokenLoss out;
  if (!lm_head_mode().empty()) {  // the comparison paths: log-probs with autograd, then the loss
    auto [logp, entropy] = token_logprobs(hidden, targets, temperature, with_entropy);
    const at::Tensor lp = logp.reshape({-1});
    const at::Tensor ent = with_entropy ? entropy.reshape({-1}) : entropy;
    out.loss = loss_fn(lp, ent, 0, lp.size(0)).reshape({});
    out.logp = logp.detach();
    out.entropy = entropy.detach();
    return out;
  }
  const int64_t H = hidden.size(-1);
  out = lm_head_token_loss(hidden.reshape({-1, H}), lm_head_weight(), targets.reshape({-1}), loss_fn, temperature,
                           with_entropy, /*chunk=*/0, config_.final_logit_softcapping);
  out.logp = out.logp.view(targets.sizes());
  if (with_entropy) out.entropy = out.entropy.view(targets.sizes());
  return out;
}

std::map<std::string, at::Tensor> Transformer::named_parameters() const {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, slot] : hf_tensor_slots(const_cast<Transformer&>(*this))) out.emplace(name, *slot);
  return out;
}

std::vector<at::Tensor> Transformer::parameters() const {
  std::vector<at::Tensor> out;
  for (auto& [name, slot] : hf_tensor_slots(const_cast<Transformer&>(*this))) out.push_back(*slot);
  return out;
}

void Transformer::set_requires_grad(bool requires_grad) {
  for (auto& [name, slot] : hf_tensor_slots(*this)) slot->requires_grad_(requires_grad);
}

int64_t Transformer::num_parameters() const {
  int64_t n = 0;
  for (const auto& t : parameters()) n += t.numel();
  return n;
}

void Transformer::to(at::Device device, std::optional<at::ScalarType> dtype) {
  for (auto& [name, slot] : hf_tensor_slots(*this)) {
    const bool rg = slot->requires_grad();
    *slot = slot->detach().to(device, dtype.value_or(slot->scalar_type())).requires_grad_(rg);
  }
  for (auto& [name, slot] : lora_tensor_slots(*this)) {
    const bool rg = slot->requires_grad();
    *slot = slot->detach().to(device, dtype.value_or(slot->scalar_type())).requires_grad_(rg);
  }
  inv_freq_ = inv_freq_.to(device);
  if (local_inv_freq_.defined()) local_inv_freq_ = local_inv_freq_.to(device);
  fuse_projections();
}

Transformer Transformer::clone() const {
  Transformer copy = *this;
  // Fusing copies the q/k/v and gate/up weights into new storage (a deep copy of those already);
  // every other tensor is cloned, so each weight is copied once.
  copy.fuse_projections();
  std::set<const void*> fused;  // storages of the new fused tensors
  for (const TransformerLayer& L : copy.layers_) {
    for (const at::Tensor* base : {&L.qkv_weight, &L.qkv_bias, &L.gate_up_weight}) {
      if (base->defined()) fused.insert(base->storage().unsafeGetStorageImpl());
    }
  }
  for (auto& [name, slot] : hf_tensor_slots(copy)) {
    if (fused.count(slot->storage().unsafeGetStorageImpl())) continue;
    const bool rg = slot->requires_grad();
    *slot = slot->detach().clone().requires_grad_(rg);
  }
  for (auto& [name, slot] : lora_tensor_slots(copy)) {
    const bool rg = slot->requires_grad();
    *slot = slot->detach().clone().requires_grad_(rg);
  }
  return copy;
}

bool Transformer::has_lora() const {
  for (const TransformerLayer& L : layers_) {
    for (const LoraWeights& w : L.lora) {
      if (w.defined()) return true;
    }
  }
  return false;
}

std::map<std::string, at::Tensor> Transformer::lora_parameters() const {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, slot] : lora_tensor_slots(const_cast<Transformer&>(*this))) out.emplace(name, *slot);
  return out;
}

std::map<std::string, at::Tensor> Transformer::trainable_parameters() const {
  return has_lora() ? lora_parameters() : named_parameters();
}

Transformer Transformer::without_lora() const {
  Transformer copy = *this;
  for (TransformerLayer& L : copy.layers_) L.lora = {};
  copy.lora_scale_ = {};
  return copy;
}

void Transformer::init_weights(uint64_t seed) {
  // Drawn in fp32 on the CPU in slot order, so the weights do not depend on device or dtype.
  at::Generator gen = at::detail::createCPUGenerator(rng::derive(seed, {rng::kTagInit}));
  const double std = config_.initializer_range;
  c10::NoGradGuard no_grad;
  std::vector<const at::Tensor*> norms{&norm_}, biases;
  for (const auto& L : layers_) {
    norms.insert(norms.end(), {&L.input_norm, &L.post_attention_norm, &L.q_norm, &L.k_norm, &L.pre_feedforward_norm,
                               &L.post_feedforward_norm});
    biases.insert(biases.end(), {&L.q_bias, &L.k_bias, &L.v_bias, &L.o_bias});
  }
  const auto is_in = [](const std::vector<const at::Tensor*>& set, const at::Tensor* t) {
    return std::find(set.begin(), set.end(), t) != set.end();
  };
  for (auto& [name, slot] : hf_tensor_slots(*this)) {
    at::Tensor value;
    if (is_in(norms, slot)) {  // a scale of one: weights of one, or zeros stored as offsets from one
      value = at::full(slot->sizes(), 1.0 - config_.norm_weight_offset, at::kFloat);
    } else if (is_in(biases, slot)) {
      value = at::zeros(slot->sizes(), at::kFloat);
    } else {
      value = at::empty(slot->sizes(), at::kFloat).normal_(0.0, std, gen);
      if (slot == &embed_tokens_ && config_.pad_token_id >= 0 && config_.pad_token_id < config_.vocab_size) {
        value[config_.pad_token_id].zero_();
      }
    }
    slot->copy_(value);
  }
}

}  // namespace scorch
