// What the decode-step ops (fused_rms_norm, fused_add_rms_norm, fused_rope, silu_and_mul) are checked
// against, on any device: transformers' ATen compositions written exactly as modeling_llama writes
// them (the rounding to reproduce), the float64 formulas (the accuracy), and an ulp comparison.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace scorch::test {

// LlamaRMSNorm.forward:
//   hidden_states = hidden_states.to(torch.float32)
//   variance = hidden_states.pow(2).mean(-1, keepdim=True)
//   hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
//   return self.weight * hidden_states.to(input_dtype)
inline at::Tensor hf_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  at::Tensor h = x.to(at::kFloat);
  const at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(x.scalar_type());
}

// rotate_half + apply_rotary_pos_emb (for one of q / k).
inline at::Tensor hf_rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}
inline at::Tensor hf_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return x * cos + hf_rotate_half(x) * sin;
}

// LlamaMLP's act_fn(gate_proj(x)) * up_proj(x), with gate and up as the two halves of one tensor.
inline at::Tensor hf_silu_and_mul(const at::Tensor& gu) {
  const int64_t inter = gu.size(-1) / 2;
  return at::silu(gu.narrow(-1, 0, inter)) * gu.narrow(-1, inter, inter);
}

// The formulas in float64 on the (already rounded) inputs.
inline at::Tensor rms_norm_f64(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor h = x.to(at::kDouble);
  return weight.to(at::kDouble) * h * at::rsqrt(h.pow(2).mean(-1, true) + eps);
}
inline at::Tensor rope_f64(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const at::Tensor x64 = x.to(at::kDouble);
  return x64 * cos.to(at::kDouble) + hf_rotate_half(x64) * sin.to(at::kDouble);
}
inline at::Tensor silu_and_mul_f64(const at::Tensor& gu) {
  const at::Tensor g = gu.to(at::kDouble), u = g.narrow(-1, g.size(-1) / 2, g.size(-1) / 2);
  const at::Tensor gate = g.narrow(-1, 0, g.size(-1) / 2);
  return gate / (1.0 + at::exp(-gate)) * u;
}

// Grouped-query attention of one query per row in float64, from the formula (no SDPA): q [B, H, 1, D],
// k / v [B, KV, S, D] (query head h reads KV head h / (H / KV)), mask additive [B or 1, 1, 1, S] or
// undefined; returns [B, 1, H * D] as decode_attention lays it out.
inline at::Tensor decode_attention_f64(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       const at::Tensor& mask, double scale) {
  const int64_t B = q.size(0), H = q.size(1), D = q.size(3), KV = k.size(1);
  const at::Tensor q64 = q.to(at::kDouble).reshape({B, KV, H / KV, D});             // [B, KV, G, D]
  at::Tensor scores = at::matmul(q64, k.to(at::kDouble).transpose(2, 3)) * scale;  // [B, KV, G, S]
  if (mask.defined()) scores = scores + mask.to(at::kDouble);                      // [B|1, 1, 1, S] broadcasts
  const at::Tensor w = at::softmax(scores, -1);
  return at::matmul(w, v.to(at::kDouble)).reshape({B, 1, H * D});
}

// How far apart two tensors of one floating dtype are, in units in the last place of that dtype.
struct UlpDiff {
  int64_t differing = 0;  // elements that are not bit-identical (up to the sign of zero)
  int64_t max_ulps = 0;   // largest distance between representable values
  int64_t numel = 0;
  double fraction() const { return numel ? static_cast<double>(differing) / static_cast<double>(numel) : 0.0; }
  std::string str() const {
    return std::to_string(differing) + " of " + std::to_string(numel) + " elements differ, by at most " +
           std::to_string(max_ulps) + " ulp";
  }
};

// Sign-magnitude bits as a monotone integer: consecutive representable values are consecutive integers.
inline at::Tensor ordered_bits(const at::Tensor& t) {
  const at::Tensor c = t.cpu().contiguous();
  at::Tensor bits, magnitude, negative;
  if (c.scalar_type() == at::kFloat) {
    bits = c.view(at::kInt).to(at::kLong);
    magnitude = bits.bitwise_and(0x7fffffffLL);
    negative = bits < 0;
  } else {
    bits = c.view(at::kShort).to(at::kLong).bitwise_and(0xffffLL);
    magnitude = bits.bitwise_and(0x7fffLL);
    negative = bits >= 0x8000LL;
  }
  return at::where(negative, -magnitude, magnitude);
}

inline UlpDiff ulp_diff(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes(), "ulp_diff: ", a.scalar_type(),
              a.sizes(), " vs ", b.scalar_type(), b.sizes());
  UlpDiff d;
  d.numel = a.numel();
  if (d.numel == 0) return d;
  const at::Tensor dist = (ordered_bits(a) - ordered_bits(b)).abs();
  d.differing = (dist > 0).sum().item<int64_t>();
  d.max_ulps = dist.max().item<int64_t>();
  return d;
}

}  // namespace scorch::test
