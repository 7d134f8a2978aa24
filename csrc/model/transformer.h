// Transformer: the Llama-family decoder (llama, qwen2, mistral, qwen3, olmo2) as plain ATen ops over a
// set of weight tensors; the families' differences are ModelConfig options. forward() returns the final-normed hidden states; logits() applies the LM head
// separately, so the fused log-prob path never materialises [B, T, V] logits.
//
// The model knows nothing of training or distribution: parameters are ordinary tensors (set
// requires_grad on them to train), and HF tensor names live only in hf_adapter.cpp, which
// named_parameters() goes through. Copying a Transformer shares its tensors; clone() deep-copies.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "kernels/ops.h"
#include "model/kv_cache.h"
#include "model/model_config.h"

namespace scorch {

// The linear projections of a decoder layer, in HF module order (q_proj ... down_proj).
enum class Projection { q, k, v, o, gate, up, down };
constexpr int kNumProjections = 7;

// One LoRA adapter (model/lora.h): the projection computes x Wᵀ + b + scaling · (x Aᵀ) Bᵀ.
struct LoraWeights {
  at::Tensor a;  // lora_A [r, in_features]
  at::Tensor b;  // lora_B [out_features, r]
  bool defined() const { return a.defined(); }
};

struct TransformerLayer {
  at::Tensor input_norm;                  // [hidden]; undefined without ModelConfig::pre_norms
  at::Tensor q_weight, k_weight, v_weight; // [q_dim, hidden], [kv_dim, hidden], [kv_dim, hidden]
  at::Tensor q_bias, k_bias, v_bias;      // [q_dim], [kv_dim], [kv_dim]; undefined when absent
  at::Tensor o_weight;                    // [hidden, q_dim]
  at::Tensor o_bias;                      // [hidden]; attention_bias only
  at::Tensor q_norm, k_norm;              // ModelConfig::qk_norm: [head_dim] each, or [q_dim] / [kv_dim]
  at::Tensor post_attention_norm;         // [hidden]: before the MLP, or (post_norms) on the attention output
  at::Tensor pre_feedforward_norm;        // [hidden]: before the MLP (post_norms with pre_norms: gemma2/3)
  at::Tensor post_feedforward_norm;       // [hidden]: on the MLP output (post_norms only)
  at::Tensor gate_weight, up_weight;      // [intermediate, hidden]
  at::Tensor down_weight;                 // [hidden, intermediate]
  // Fused storage (Transformer::fuse_projections): q/k/v_weight (and biases) are row slices of
  // qkv_weight [q_dim + 2 kv_dim, hidden], gate/up_weight of gate_up_weight [2 intermediate, hidden],
  // so a forward that needs no weight gradient runs one GEMM for q, k, v and one for gate, up. The
  // slices stay the parameters (names, gradients, optimizer state); writing into them writes here.
  // A forward checks that they still alias (has_fused_qkv / has_fused_gate_up) and otherwise runs
  // the separate GEMMs: replacing a slice's tensor costs speed, never correctness.
  at::Tensor qkv_weight, qkv_bias;        // qkv_bias undefined when the layer has no q/k/v bias
  at::Tensor gate_up_weight;
  // LoRA adapters by Projection (undefined where the projection has none). They add to the base
  // GEMM's output, so the fused q/k/v and gate/up GEMMs stay one GEMM each (model/lora.h).
  std::array<LoraWeights, kNumProjections> lora;
};

// The layer's weight of projection `p` ([out, in]).
const at::Tensor& projection_weight(const TransformerLayer& layer, Projection p);

// Whether the layer's q/k/v (gate/up) weights are still the slices of its fused tensor.
bool has_fused_qkv(const TransformerLayer& layer);
bool has_fused_gate_up(const TransformerLayer& layer);

class Transformer {
 public:
  // Allocates every weight (uninitialised) with the config's shapes on `device` in `dtype`.
  Transformer(ModelConfig config, at::ScalarType dtype = at::kFloat, at::Device device = at::kCPU);

  // Hidden states after the final norm: [B, T, hidden].
  //   input_ids  [B, T] int64
  //   positions  [B, T] int64 RoPE positions (SFT packing resets them per sample; with a cache use
  //              cache->next_positions())
  //   attention_mask, without a cache: [B, 1, T, T] (or [B, T, T]) bool, true = attend (e.g. the
  //              block-diagonal causal mask of packed samples); nullopt = causal. Each query always
  //              attends to itself, so fully padded rows stay finite.
  //   attention_mask, with a cache: [B, T] bool token mask (true = real token, false = pad /
  //              row not taking part); nullopt = all real. See kv_cache.h.
  //   cache      nullptr = no cache; else this step's keys/values are appended to it.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& positions,
                     const std::optional<at::Tensor>& attention_mask = std::nullopt,
                     KvCache* cache = nullptr) const;
  // One decode step with static shapes, so it can be captured in a CUDA graph and replayed
  // (rollout/static_decoder.h): nothing in it depends on a host value. input_ids [B, 1] int64 and
  // token_mask [B, 1] bool (false = the row sits the step out) on the model's device; slot [1] int64
  // on the device = cache.used(). Attends over all max_len slots of the cache (those not yet valid
  // are masked) and writes the step's keys / values at `slot` by index; the caller advances the
  // host-side count with cache.advance_static_step(). Returns hidden [B, 1, hidden], equal to
  // forward() with the cache up to floating-point reassociation. fused_attention: each layer's RoPE,
  // cache write and attention as one kernels' decode_attention call (on CUDA its own kernel; on the
  // CPU the same ops as without it), instead of rope_kv_write + SDPA + a transposing copy.
  at::Tensor decode_step(const at::Tensor& input_ids, const at::Tensor& token_mask, const at::Tensor& slot,
                         KvCache& cache, bool fused_attention = false) const;
  // LM head: hidden [..., hidden] -> logits [..., vocab] in the weights' dtype, soft-capped as the
  // config says (cap_logits).
  at::Tensor logits(const at::Tensor& hidden) const;
  // ModelConfig::final_logit_softcapping on raw LM-head logits (cap * tanh(z / cap); none: as they are).
  at::Tensor cap_logits(const at::Tensor& logits) const;
  // Token embeddings [..., hidden] (scaled by sqrt(hidden) where the config says so).
  at::Tensor embed(const at::Tensor& input_ids) const;
  // Per-token log-probabilities of `targets` (and the entropy when with_entropy) under
  // softmax(logits(hidden) / temperature): hidden [..., hidden], targets [...] int64 (< 0 = ignored,
  // logp 0) -> (logp [...] fp32, entropy [...] fp32 or an empty tensor). Every trainer's training and
  // reference log-probs go through here. It runs kernels' lm_head_logprobs, which never holds the
  // [tokens, vocab] logits (chunked GEMMs, recomputed in the backward), with the config's final
  // logit soft cap; the environment variable SCORCH_LM_HEAD=unfused (a debugging switch for
  // comparisons, not a setting) takes logits() then token_logprobs instead. Trainers whose loss is
  // a sum of per-token terms use token_loss() below.
  std::pair<at::Tensor, at::Tensor> token_logprobs(const at::Tensor& hidden, const at::Tensor& targets,
                                                   double temperature = 1.0, bool with_entropy = false) const;
  // A loss that is a sum of per-token terms over `targets` (hidden [..., hidden], targets [...]), with
  // the LM head's gradients taken in the forward: kernels' lm_head_token_loss (no [tokens, vocab]
  // logits, and no second pass over the vocabulary in the backward), the config's final logit soft
  // cap. loss_fn sees the flattened tokens [begin, end) in order (see TokenLossFn in kernels/ops.h:
  // each term may depend on its own token only). Returns the loss (backward it) and the per-token logp
  // / entropy without gradient, shaped as targets. SCORCH_LM_HEAD=unfused (logits(), then
  // token_logprobs) or =recompute (lm_head_logprobs) instead evaluates loss_fn once over all tokens
  // with ordinary autograd: the comparison paths.
  LmHeadTokenLoss token_loss(const at::Tensor& hidden, const at::Tensor& targets, const TokenLossFn& loss_fn,
                             double temperature = 1.0, bool with_entropy = false) const;
  // Activation checkpointing (model.gradient_checkpointing): when on, a forward that differentiates
  // with respect to the weights and has no cache keeps only each decoder layer's input and
  // recomputes the layer in the backward (the same ops, so the same loss and gradients).
  void set_gradient_checkpointing(bool on) { gradient_checkpointing_ = on; }
  bool gradient_checkpointing() const { return gradient_checkpointing_; }
  // model.fused_training_ops (default on): forwards that differentiate run kernels' fused RMSNorm,
  // add + RMSNorm, RoPE and SiLU * up with their fused backward, as forwards without gradients always
  // do (families with Llama's rounding; kernels/ops.h). Off: the eager ATen ops and autograd's
  // backward. The same forward values; gradients equal to the dtype's rounding.
  void set_fused_training_ops(bool on) { fused_training_ops_ = on; }
  bool fused_training_ops() const { return fused_training_ops_; }
  // LM head weight [vocab, hidden] (the embedding when tied): for fused hidden -> log-prob kernels.
  const at::Tensor& lm_head_weight() const { return config_.tie_word_embeddings ? embed_tokens_ : lm_head_; }

  // HF name -> tensor (shared storage: writing into a returned tensor writes the model). The tied
  // LM head is not listed (HF files omit lm_head.weight when tied).
  std::map<std::string, at::Tensor> named_parameters() const;
  std::vector<at::Tensor> parameters() const;
  void set_requires_grad(bool requires_grad);
  int64_t num_parameters() const;

  // Moves/casts every weight (in place on this object; requires_grad is kept), then re-fuses.
  void to(at::Device device, std::optional<at::ScalarType> dtype = std::nullopt);
  // Rebuilds each layer's fused q/k/v and gate/up storage from the current weights and makes the
  // weights its slices (TransformerLayer). Construction, to() and clone() call it; call it again
  // after replacing weight tensors by hand. A meta-device model is left unfused.
  void fuse_projections();
  Transformer clone() const;
  // Normal(0, initializer_range) for projections and embeddings, ones for norms, zeros for biases
  // and the pad token's embedding row (as transformers' _init_weights). Deterministic in `seed`.
  void init_weights(uint64_t seed);

  // LoRA (model/lora.h). The adapter's scaling and dropout; every layer's adapters live in
  // TransformerLayer::lora. has_lora(): some projection has an adapter.
  struct LoraScale {
    double scaling = 0.0;  // lora_alpha / r (or / sqrt(r) with rsLoRA)
    double dropout = 0.0;  // on the adapter's input, in forwards that record gradients
  };
  bool has_lora() const;
  const LoraScale& lora_scale() const { return lora_scale_; }
  void set_lora_scale(LoraScale scale) { lora_scale_ = scale; }
  // PEFT name -> adapter tensor (base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight ...).
  std::map<std::string, at::Tensor> lora_parameters() const;
  // What training updates: the adapter's tensors when the model has one (the base stays frozen),
  // else named_parameters().
  std::map<std::string, at::Tensor> trainable_parameters() const;
  // The same model with the adapter disabled: shares every base tensor (no copy), has no adapter.
  // The frozen reference of KL / DPO under LoRA, as TRL's disabled-adapter reference.
  Transformer without_lora() const;

  const ModelConfig& config() const { return config_; }
  ModelConfig& mutable_config() { return config_; }
  at::ScalarType dtype() const { return embed_tokens_.scalar_type(); }
  at::Device device() const { return embed_tokens_.device(); }

  // Direct access for the HF adapter and tests.
  at::Tensor embed_tokens_;          // [vocab, hidden]
  std::vector<TransformerLayer> layers_;
  at::Tensor norm_;                  // [hidden]
  at::Tensor lm_head_;               // [vocab, hidden]; undefined when tied

 private:
  ModelConfig config_;
  LoraScale lora_scale_;
  at::Tensor inv_freq_;  // [head_dim / 2] fp32 on the weights' device, rope scaling applied
  at::Tensor local_inv_freq_;  // the sliding-window layers' (ModelConfig::local_rope_theta); else undefined
  bool gradient_checkpointing_ = false;
  bool fused_training_ops_ = true;
};

// Decode attention with grouped-query heads: q [B, H, 1, D], k / v [B, KV, S, D], mask
// [B, 1, 1, S] bool (or nullopt). The G = H / KV query heads that share a KV head are folded into
// the query length — q [B, KV, G, D] against the KV heads as they are — so no backend expands k / v,
// and CUDA's memory-efficient kernel (masks, but no enable_gqa) stays eligible. Same values as SDPA
// with enable_gqa: head h reads KV head h / G, as transformers' repeat_kv does. Returns [B, H, 1, D].
at::Tensor grouped_decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const std::optional<at::Tensor>& mask, double scale);
// RMSNorm exactly as transformers computes it: in fp32, cast back before the weight multiply (Llama),
// or after it with weight_in_fp32 (OLMo2).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_in_fp32 = false,
                    double weight_offset = 0);
// RoPE inverse frequencies [head_dim / 2] (fp32, CPU) with the config's rope scaling applied.
at::Tensor rope_inv_freq(const ModelConfig& config);

}  // namespace scorch
