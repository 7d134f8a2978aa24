// scorch's custom ops, as plain C++ functions (DESIGN.md "Kernels contract").
// Each call goes through the PyTorch dispatcher, so it picks the CPU reference or the CUDA kernel
// from the device of its inputs. token_logprobs, lm_head_logprobs and the transformer layer's fused
// ops (fused_rms_norm, fused_add_rms_norm, fused_rope, silu_and_mul, silu_mul) are differentiable
// (autograd registration); group_advantages and sample_tokens have no gradient; rope_kv_write and
// decode_attention are inference-only.
// The same ops are torch.ops.scorch.* in Python once libscorch_ops.so is loaded (kernels/README.md).
// This header is deliberately light: it must stay cheap for every trainer file that includes it.
#pragma once
#include <ATen/core/Tensor.h>
#include <functional>
#include <optional>
#include <string>
#include <tuple>

namespace scorch {

// Per-token log-probabilities of the targets under softmax(logits / temperature), fused:
// one pass over each row (online max / sum-exp in fp32), no fp32 copy of the logits, and a backward
// that recomputes the softmax from the saved per-row log-sum-exp and writes the gradient directly in
// the logits' dtype (the only [N, V] allocation of forward + backward is that gradient).
//   logits  [N, V] bf16 | fp16 | fp32, last dimension contiguous (rows may be strided)
//   targets [N] int64; a target < 0 (the ignore index -100) gives logp 0 and no logp gradient
// Returns
//   logp    [N] fp32  log softmax(logits / T)[target]
//   entropy [N] fp32  -sum_v p log p of softmax(logits / T) when with_entropy, else an empty tensor.
//           Entropy does not depend on the target, so it is computed (and differentiated) for every
//           row, ignored rows included: masking it is the caller's business, as for any per-token value.
// Errors: temperature <= 0, a non-contiguous last dimension, V == 0, targets of the wrong shape or
// dtype, a target >= V (on CUDA such a row gives a NaN logp instead: checking would need a sync).
// Differentiable once (its backward is not itself differentiable: no double backward).
std::tuple<at::Tensor, at::Tensor> token_logprobs(const at::Tensor& logits, const at::Tensor& targets,
                                                  double temperature = 1.0, bool with_entropy = false);

// The same log-probabilities (and entropy) straight from the final hidden states and the LM head,
// never holding the [N, V] logits: lm_head_logprobs(hidden, weight, targets) equals
// token_logprobs(hidden @ weight^T, targets) up to floating-point reassociation. The tokens are
// taken `chunk` rows at a time (0 = automatic: about 2^25 logits per chunk); each chunk's logits are
// one GEMM, reduced by token_logprobs' kernels and dropped; the backward recomputes them chunk by
// chunk and returns grad_hidden and grad_weight (the latter summed over chunks in fp32). Memory:
// two chunks of logits instead of several [N, V] tensors. Any device ATen runs GEMMs on.
//   hidden  [N, H] bf16 | fp16 | fp32
//   weight  [V, H] the LM head (the embedding when tied), hidden's dtype and device
//   targets [N] int64; < 0 = ignored (logp 0), as token_logprobs
//   logit_softcap c > 0: the logits are c tanh(z / c) (before the temperature); 0 = none
// Returns logp [N] fp32 and entropy [N] fp32 (empty unless with_entropy), as token_logprobs.
// Differentiable once, with respect to hidden and weight.
std::tuple<at::Tensor, at::Tensor> lm_head_logprobs(const at::Tensor& hidden, const at::Tensor& weight,
                                                    const at::Tensor& targets, double temperature = 1.0,
                                                    bool with_entropy = false, int64_t chunk = 0,
                                                    double logit_softcap = 0.0);

// A loss that is a sum of per-token terms, L = Σ_t ℓ_t(logp_t, entropy_t), over the tokens of
// lm_head_logprobs(hidden, weight, targets), differentiated in the forward (the trick of Liger's
// fused linear cross-entropy, for any token-separable loss): while each chunk's logits are at hand,
// the chunk's ℓ is evaluated and differentiated with respect to its logp / entropy (autograd on the
// [R] values), turned into the logits' gradient and from there into grad_hidden and grad_weight.
// Three GEMMs per chunk for a trained weight (eager's count: forward, grad_hidden, grad_weight) and
// two for a frozen one, instead of lm_head_logprobs' recomputing backward (four); the backward only
// scales the stored gradients by the loss's upstream gradient.
//   loss_fn(logp [R] fp32, entropy [R] fp32 or empty, begin, end) -> a scalar: the terms of tokens
//   [begin, end) of the flattened N, built from differentiable ATen ops on logp and entropy (both
//   leaves requiring grad) and any constants sliced to [begin, end). It is called once per chunk, in
//   order, so it must be separable: a term may depend on its own token only (a per-token mask,
//   advantage, reference log-prob or a fixed normaliser are fine; a sequence mean of logp, a batch
//   quantile of the entropy are not -- use lm_head_logprobs for those).
// Returns (loss: a 0-dim tensor of loss_fn's dtype, differentiable with respect to hidden and weight;
// logp [N] fp32 and entropy [N] fp32 (empty unless with_entropy), both without gradient).
// Under no grad (or when neither input requires grad) the loss is evaluated and nothing is stored.
// Memory: grad_weight [V, H] (fp32 while summing, then weight's dtype) and grad_hidden [N, H] are held
// from the forward to the backward; the logits as in lm_head_logprobs (one chunk at a time).
// Errors: as lm_head_logprobs; loss_fn returning anything but a one-element floating tensor.
using TokenLossFn =
    std::function<at::Tensor(const at::Tensor& logp, const at::Tensor& entropy, int64_t begin, int64_t end)>;
struct LmHeadTokenLoss {
  at::Tensor loss;     // 0-dim, differentiable
  at::Tensor logp;     // [N] fp32, no gradient
  at::Tensor entropy;  // [N] fp32 or empty, no gradient
};
LmHeadTokenLoss lm_head_token_loss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                   const TokenLossFn& loss_fn, double temperature = 1.0, bool with_entropy = false,
                                   int64_t chunk = 0, double logit_softcap = 0.0);

// Group-relative advantages (ALGORITHMS.md §4) for rewards laid out group by group:
//   rewards [B * G] fp32, group_size G (the G completions of one prompt are adjacent).
// mode
//   "grpo"         A = r - mean_group, divided according to `scale` (TRL's scale_rewards):
//                  "group" (default) by (unbiased group std + eps), "batch" by (unbiased std of all
//                  rewards in the batch + eps), "none" not at all.
//   "dr_grpo"      A = r - mean_group (never scaled; `scale` is not used).
//   "rloo"         A = r - mean of the other rewards of the group (never scaled).
//   "reinforce_pp" A = (r - mean_group) / (unbiased batch std of the group-centred values + eps).
// NaN rewards (unscorable samples) are left out of every statistic and get advantage 0; a group with
// fewer than two valid rewards (a singleton group, G = 1) gives advantage 0 to all its samples.
// Returns
//   advantages [B * G] fp32
//   group_mean [B] fp32  mean of the group's valid rewards (NaN when it has none)
//   group_std  [B] fp32  unbiased std of the group's valid rewards (0 with one valid reward,
//                        NaN with none) — what TRL logs as reward_std
//   zero_std   [B] bool  std <= 1e-8 or fewer than two valid rewards: the group teaches nothing
//                        (its mean is TRL's frac_reward_zero_std)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> group_advantages(
    const at::Tensor& rewards, int64_t group_size, const std::string& mode = "grpo", double eps = 1e-4,
    const std::string& scale = "group");

// --- Fused ops of the transformer layer (decode step and training) --------------------------------
// Each replaces an ATen composition of transformers' modeling_llama (one kernel instead of 2 to 9)
// and reproduces its rounding: every intermediate that PyTorch rounds to the tensor dtype is rounded
// here at the same point, in fp32 arithmetic, with the same functions (CPU: ATen's CPU kernels',
// rsqrt = 1 / sqrt and Sleef's exp; CUDA: ATen's CUDA kernels', rsqrtf and expf). fused_rope equals
// the composition bit for bit, silu_and_mul too (on CPU up to a rare ulp, see there); the RMS norms
// sum the squares in another order, so the mean may differ by an ulp of fp32: bf16 / fp16 results
// then differ on a small fraction of elements (measured on CPU: none of 3e5 in bf16, 4e-5 of fp16
// elements, by <= 2 ulp), fp32 ones by a few ulp (on ~18% of elements; both are ~1e-7 from float64).
// Backward (fused_rms_norm, fused_add_rms_norm, fused_rope, silu_and_mul, silu_mul): one op per
// fused op (fused_rms_norm_backward, fused_rope_backward, silu_mul_backward, registered for CPU and
// CUDA) computes the gradients in fp32 from the saved inputs and rounds each once to the dtype --
// the float64 formula's gradient up to that rounding, not the eager composition's bits (autograd
// rounds there after every op). Formulas at each op. Differentiable once (no double backward).
// With grad mode off, or no input requiring grad, no autograd node is recorded (as in generation).
// rope_kv_write and decode_attention are inference only: with grad mode enabled and an input that
// requires grad they throw (call them under torch.no_grad() / at::NoGradGuard / at::InferenceMode).
// Outputs are new contiguous tensors of the inputs' dtype and device. dtypes: bf16 | fp16 | fp32,
// the same for every tensor argument of a call; all arguments on one device. The CUDA kernels run on
// the current stream, never synchronise and allocate nothing but their outputs (graph-capturable).

// RMSNorm (transformers' LlamaRMSNorm / Qwen2RMSNorm):
//   h = fp32(x);  r = rsqrt(mean(h * h over the last dim) + eps);  y = weight * dtype(h * r)
// i.e. `weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)`, the product
// with the weight rounded to the dtype (fp32 sum of squares on CUDA, float64 on CPU).
//   x      [..., N] (any strides; a non-collapsible layout is copied first), N >= 1
//   weight [N]
// Returns y [..., N]. Errors: a weight of the wrong shape, mixed dtypes or devices, another dtype,
// a 0-dim x, eps < 0 or not finite.
// Backward (r recomputed from x as the forward computes it, gw = w dy, all in fp32):
//   grad_x = r (gw - h r^2 mean(gw h)),  grad_weight = sum over rows of dy dtype(h r)
// grad_weight is summed in fp32 in a fixed order (per block of rows, then the blocks in order): the
// same bits on every run, whatever the number of threads.
at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// The residual add followed by the next RMSNorm (decoder layer: h = h + attn(...); norm(h)):
//   sum = dtype(fp32(h) + fp32(delta));  y = fused_rms_norm(sum, weight, eps)
//   h, delta [..., N] the same shape (no broadcasting);  weight [N]
// Returns (sum [..., N], y [..., N]). Errors: as fused_rms_norm, and delta's shape differing from h's.
// Backward: grad_h = grad_delta = grad_sum + fused_rms_norm's grad_x of the sum (one pass, one rounding).
std::tuple<at::Tensor, at::Tensor> fused_add_rms_norm(const at::Tensor& h, const at::Tensor& delta,
                                                      const at::Tensor& weight, double eps);

// Rotary position embedding (transformers' apply_rotary_pos_emb for one of q / k):
//   out = x * cos + rotate_half(x) * sin,  rotate_half(x) = cat(-x[..., D/2:], x[..., :D/2])
// with both products and the sum rounded to the dtype, as the eager bf16 ops do.
//   x        [B, M, T, D], D even; any strides on dims 0..2 (e.g. a narrow of a transposed
//            projection), stride 1 on the last dim
//   cos, sin [B, 1, T, D] (dims 0 and 2 may also be 1, broadcast); any strides on dims 0..2
//            (expanded views with stride 0 are fine), stride 1 on the last dim
// Returns out [B, M, T, D] contiguous. Errors: wrong ranks or sizes, an odd D, a last-dim stride != 1,
// mixed dtypes or devices.
// Backward with respect to x only: with g = d loss / d out, c / s the tables, halves 1 = [:D/2], 2 = [D/2:]
//   dx1 = g1 c1 + g2 s2,  dx2 = g2 c2 - g1 s1   (in fp32; the halves of sin need not be equal)
// cos / sin are constant tables (the model's buffers): tables that require grad are an error.
at::Tensor fused_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// The gated MLP activation (LlamaMLP: down(act(gate(x)) * up(x)) with gate and up fused in one matmul):
//   g = gu[..., :I], u = gu[..., I:];  out = dtype(dtype(silu(g)) * u),  silu(g) = g / (1 + exp(-g))
// i.e. `torch.nn.functional.silu(g) * u` in the dtype. CUDA: ATen's arithmetic (expf, IEEE division).
// CPU: as ATen's CPU silu, Sleef's exp on whole steps of two AVX2 / AVX-512 vectors from the start of
// each row (the width ATen runs at; ATEN_CPU_CAPABILITY is honoured) and std::exp on the rest of the
// row. Only where ATen's threads split a row mid-way can an element get the other exp, and an fp32
// result then differ by one ulp (measured: bit-equal in all three dtypes at every capability).
//   gu [..., 2I], I >= 1 (any strides; a non-collapsible layout is copied first)
// Returns out [..., I]. Errors: an odd or zero last dimension, a 0-dim gu, another dtype.
// Backward: silu_mul's, on the two halves (the gradient [..., 2I] = cat(grad_gate, grad_up)).
at::Tensor silu_and_mul(const at::Tensor& gu);

// The same activation with gate and up as two tensors (the training forward projects them apart):
//   out = dtype(dtype(silu(gate)) * up), bit-equal to `at::silu(gate) * up` as silu_and_mul is (a
//   contiguous gate is taken as one flat array, as at::silu does: the vector exp from its start).
//   gate, up [..., I] the same shape (any strides; a non-collapsible layout is copied first)
// Backward, s = sigmoid(gate) in fp32:
//   grad_gate = dy up s (1 + gate (1 - s)),  grad_up = dy silu(gate)
// Errors: shapes differing, a 0-dim gate, mixed or other dtypes, mixed devices.
at::Tensor silu_mul(const at::Tensor& gate, const at::Tensor& up);

// The attention input of one decode step, fused: qkv [B, H + 2 KV, 1, D] (the q/k/v projection of
// one token per row, heads as one dimension, any strides but a contiguous last one), cos / sin
// [B, 1, 1, D] (B may be 1). Returns q = fused_rope(qkv[:, :H]) as [B, H, 1, D] and writes
// fused_rope(qkv[:, H:H+KV]) to k_cache[:, :, slot] and qkv[:, H+KV:] to v_cache[:, :, slot]
// (caches contiguous [B, KV, slots, D], the dtype of qkv): what fused_rope plus two index_copy_
// calls do, bit for bit, in one kernel. slot is one int64 on the device, read there (so a CUDA
// graph can replay the call for every step); on CUDA a slot outside the cache writes nothing, on
// the CPU it is an error. Inference only.
at::Tensor rope_kv_write(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& k_cache,
                         at::Tensor& v_cache, const at::Tensor& slot, int64_t q_heads);

// One decode step's attention after the q/k/v projection, fused: rope_kv_write (q and k roped, k and v
// written to the caches at slot), then softmax(q k^T * scale + mask) v over every slot of the caches,
// grouped-query (query head h reads KV head h / (q_heads / KV)); returns [B, 1, q_heads * D], the
// layout the output projection reads. The same as
//   q = rope_kv_write(qkv, cos, sin, k_cache, v_cache, slot, q_heads);
//   at::scaled_dot_product_attention(q, k_cache, v_cache, mask, 0, false, scale, /*enable_gqa=*/true)
//       .transpose(1, 2).reshape({B, 1, q_heads * D})
// which is what the CPU runs. CUDA: one kernel per step -- every block ropes its group's q heads and
// its KV head's new key itself (the slot's key and value come from there, not from the cache, so no
// block waits for another's write), scores a range of slots into shared memory in fp32, softmax and
// P.V in fp32; when B * KV blocks would leave SMs idle the slots are split over more blocks and a
// second small kernel merges the partial softmaxes (flash-decoding). Rounded to the dtype once, at the
// end (SDPA's math path rounds its scores and weights to the dtype too; the kernels agree to the
// dtype's rounding, checked against float64 by the GPU tests). A row whose every slot is masked gets
// zeros on CUDA (the engine never makes one: a row always sees its own new slot).
//   mask  additive [B, 1, 1, slots] (B may be 1) in qkv's dtype (0 or -inf), or none
// Errors: as rope_kv_write; q_heads not a multiple of KV; more than 16 query heads per KV head; a head
// dimension above 256. Inference only.
at::Tensor decode_attention(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& k_cache,
                            at::Tensor& v_cache, const at::Tensor& slot, const std::optional<at::Tensor>& mask,
                            int64_t q_heads, double scale);

// One token per row drawn from softmax(logits / temperature) by inverse-CDF sampling with the
// given uniforms: the weights w_i = exp((x_i - max) / T), token = the first i whose float64 running
// sum of w exceeds u * sum(w) (u * sum kept just below the sum, so a token of weight 0 -- a -inf
// logit -- is never drawn). Fused: the logits are read at most three times in their own dtype and no
// [N, V] temporary is made (CPU: a sequential float64 sum per row; CUDA: one block per row, tile
// sums in float64; the two agree except where u lies on a boundary up to fp32 weight rounding).
// The log-probability of the drawn token is token_logprobs(logits, tokens, temperature).
//   logits   [N, V] bf16 | fp16 | fp32, last dimension contiguous (rows may be strided)
//   uniforms [N] float64 in [0, 1), on the logits' device
// Returns tokens [N] int64; -1 for a row that holds a NaN or +inf, or only -inf (no host check on
// CUDA). Errors: temperature <= 0, shapes, dtypes, devices; on CUDA a vocabulary above 1,507,328.
at::Tensor sample_tokens(const at::Tensor& logits, const at::Tensor& uniforms, double temperature);
// The largest double below 1: inverse-CDF draws cap u * total at total * kSampleBelowOne, so the
// target stays inside the last token of positive weight (sample_tokens and the composed sampler).
constexpr double kSampleBelowOne = 1.0 - 0x1p-52;

}  // namespace scorch
