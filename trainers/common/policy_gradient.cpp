// The policy-gradient core (policy_gradient.h has the row layout).
#include "trainers/common/policy_gradient.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <stdexcept>

#include "config/config.h"
#include "model/transformer.h"
#include "trainers/common/policy_loss.h"

namespace scorch::trainers {

namespace {

constexpr int64_t kMaxPackedRow = 2048;

// The layout of rows with real lengths `lengths` and prompt lengths `prompts`, completions up to C
// tokens: `padded` [R, S] (on the device) as it is, or packed from the flat host copy `ids`.
RowLayout make_layout(const std::vector<int64_t>& ids, const at::Tensor& padded, const std::vector<int64_t>& lengths,
                      const std::vector<int64_t>& prompts, int64_t C, int64_t pad_id, bool pack) {
  const int64_t R = padded.size(0), S = padded.size(1);
  std::vector<std::vector<int64_t>> plan;
  // The block-diagonal mask is a dense [Q, 1, T, T] (additive in the forward): past rows of 2,048
  // tokens it would cost more memory than the padding it saves, and long rows are attention-bound.
  if (pack && 2 * S <= kMaxPackedRow) {
    // First fit, longest first, into rows of twice the longest row's length (the order of the rows
    // in the forward does not matter: `where` maps them back). Measured by tools/bench/grpo
    // bench_pack on the quickstart shape: rows of 1x the longest leave 21% padding (1.24x faster
    // than padded), 2x leave 5% (1.37x), 4x leave 3% but the masked attention grows (1.16x).
    std::vector<int64_t> order(static_cast<size_t>(R));
    for (int64_t r = 0; r < R; ++r) order[static_cast<size_t>(r)] = r;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return lengths[static_cast<size_t>(a)] > lengths[static_cast<size_t>(b)];
    });
    std::vector<int64_t> room;
    for (int64_t r : order) {
      const int64_t len = lengths[static_cast<size_t>(r)];
      size_t q = 0;
      while (q < room.size() && room[q] < len) ++q;
      if (q == room.size()) {
        plan.emplace_back();
        room.push_back(2 * S);
      }
      plan[q].push_back(r);
      room[q] -= len;
    }
  }
  RowLayout out;
  out.packed = !plan.empty() && static_cast<int64_t>(plan.size()) < R;
  if (!out.packed) {
    plan.clear();
    for (int64_t r = 0; r < R; ++r) plan.push_back({r});
  }
  const int64_t Q = static_cast<int64_t>(plan.size());
  int64_t T = S;
  if (out.packed) {
    T = 1;
    for (const auto& row : plan) {
      int64_t used = 0;
      for (int64_t r : row) used += lengths[static_cast<size_t>(r)];
      T = std::max(T, used);
    }
  }
  // Completion token j of row r is predicted by the hidden state at P − 1 + j of its row; past the
  // row's tokens (no target there) the row's last one stands in.
  std::vector<int64_t> where(static_cast<size_t>(R * C), 0);
  for (int64_t q = 0; q < Q; ++q) {
    int64_t offset = 0;
    for (int64_t r : plan[static_cast<size_t>(q)]) {
      const int64_t len = lengths[static_cast<size_t>(r)], P = prompts[static_cast<size_t>(r)];
      for (int64_t j = 0; j < C; ++j) {
        const int64_t t = std::min(std::max<int64_t>(P - 1 + j, 0), std::max<int64_t>(len - 1, 0));
        where[static_cast<size_t>(r * C + j)] = q * T + offset + t;
      }
      offset += len;
    }
  }
  const c10::Device device = padded.device();
  const auto lng = at::TensorOptions().dtype(at::kLong);
  out.where = at::from_blob(where.data(), {R, C}, lng).clone().to(device);
  out.slots = Q * T;
  if (!out.packed) {
    out.input_ids = padded;
    out.positions = at::arange(S, lng.device(device)).unsqueeze(0).expand({R, S});
    return out;
  }
  std::vector<int64_t> qids(static_cast<size_t>(Q * T), pad_id), pos(static_cast<size_t>(Q * T), 0),
      seg(static_cast<size_t>(Q * T), -1);
  for (int64_t q = 0; q < Q; ++q) {
    int64_t offset = 0;
    for (int64_t r : plan[static_cast<size_t>(q)]) {
      for (int64_t t = 0; t < lengths[static_cast<size_t>(r)]; ++t) {
        const size_t at = static_cast<size_t>(q * T + offset + t);
        qids[at] = ids[static_cast<size_t>(r * S + t)];
        pos[at] = t;
        seg[at] = r;
      }
      offset += lengths[static_cast<size_t>(r)];
    }
  }
  out.input_ids = at::from_blob(qids.data(), {Q, T}, lng).clone().to(device);
  out.positions = at::from_blob(pos.data(), {Q, T}, lng).clone().to(device);
  // Block-diagonal causal: token i sees j iff same row of the batch and j <= i.
  const at::Tensor s = at::from_blob(seg.data(), {Q, T}, lng).clone().to(device);
  const at::Tensor same = s.unsqueeze(2).eq(s.unsqueeze(1)) & s.unsqueeze(2).ge(0);
  const at::Tensor causal = at::ones({T, T}, at::TensorOptions().dtype(at::kBool).device(device)).tril();
  out.attention = (same & causal.unsqueeze(0)).unsqueeze(1);
  return out;
}

}  // namespace

PackedRows pack_rows(const std::vector<RowTokens>& rows, int64_t pad_id, c10::Device device, bool pack) {
  const int64_t R = static_cast<int64_t>(rows.size());
  int64_t S = 1, C = 1;
  for (const RowTokens& r : rows) {
    const int64_t P = static_cast<int64_t>(r.prompt->size()), L = static_cast<int64_t>(r.completion->size());
    S = std::max(S, P + L), C = std::max(C, L);
  }
  std::vector<int64_t> ids(static_cast<size_t>(R * S), pad_id), plen(static_cast<size_t>(R)),
      cids(static_cast<size_t>(R * C), -100), lengths(static_cast<size_t>(R));
  PackedRows out;
  for (int64_t i = 0; i < R; ++i) {
    const RowTokens& r = rows[static_cast<size_t>(i)];
    const auto& p = *r.prompt;
    const auto& c = *r.completion;
    if (r.generated && !r.generated->empty() && r.generated->size() != c.size()) {
      throw std::invalid_argument("pack_rows: generated size");
    }
    std::copy(p.begin(), p.end(), ids.begin() + i * S);
    std::copy(c.begin(), c.end(), ids.begin() + i * S + static_cast<int64_t>(p.size()));
    plen[static_cast<size_t>(i)] = static_cast<int64_t>(p.size());
    lengths[static_cast<size_t>(i)] = static_cast<int64_t>(p.size() + c.size());
    for (size_t j = 0; j < c.size(); ++j) {
      const bool generated = !r.generated || r.generated->empty() || (*r.generated)[j];
      if (generated) cids[static_cast<size_t>(i * C) + j] = c[j];
    }
    out.tokens += static_cast<int64_t>(p.size() + c.size());
  }
  const auto lng = at::TensorOptions().dtype(at::kLong);
  out.input_ids = at::from_blob(ids.data(), {R, S}, lng).clone().to(device);
  out.prompt_lengths = at::from_blob(plen.data(), {R}, lng).clone().to(device);
  out.completion_ids = at::from_blob(cids.data(), {R, C}, lng).clone().to(device);
  out.layout = make_layout(ids, out.input_ids, lengths, plen, C, pad_id, pack);
  return out;
}

PolicyBatch pack_policy_batch(const std::vector<PolicyRow>& rows, int64_t pad_id, c10::Device device, bool pack) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t C = 1;
  bool per_token = false;
  std::vector<RowTokens> tokens;
  for (const PolicyRow& r : rows) {
    C = std::max(C, static_cast<int64_t>(r.completion.size()));
    per_token |= r.advantages.size() != 1;
    tokens.push_back({r.prompt, &r.completion, &r.generated});
  }
  std::vector<uint8_t> mask(static_cast<size_t>(B * C), 0);
  std::vector<float> rlp(static_cast<size_t>(B * C), 0.0f), adv(static_cast<size_t>(per_token ? B * C : B), 0.0f),
      kl(static_cast<size_t>(B * C), 0.0f);
  bool any_kl = false;
  for (int64_t i = 0; i < B; ++i) {
    const PolicyRow& r = rows[static_cast<size_t>(i)];
    const size_t L = r.completion.size();
    auto check_size = [&](size_t n, bool may_be_empty, const char* what) {
      if (n != L && !(may_be_empty && n == 0)) throw std::invalid_argument(std::string("pack_policy_batch: ") + what + " size");
    };
    check_size(r.generated.size(), true, "generated");
    check_size(r.train.size(), true, "train");
    check_size(r.logprobs.size(), false, "logprobs");
    check_size(r.kl_coef.size(), true, "kl_coef");
    if (r.advantages.size() != 1) check_size(r.advantages.size(), false, "advantages");
    any_kl |= !r.kl_coef.empty();
    if (!per_token) adv[static_cast<size_t>(i)] = r.advantages[0];
    for (size_t j = 0; j < L; ++j) {
      const size_t at = static_cast<size_t>(i * C) + j;
      const bool generated = r.generated.empty() || r.generated[j];
      mask[at] = generated && (r.train.empty() || r.train[j]);
      rlp[at] = r.logprobs[j];
      if (per_token) adv[at] = r.advantages.size() == 1 ? r.advantages[0] : r.advantages[j];
      if (!r.kl_coef.empty()) kl[at] = r.kl_coef[j];
    }
  }
  PackedRows packed = pack_rows(tokens, pad_id, device, pack);
  PolicyBatch b;
  b.layout = std::move(packed.layout);
  b.tokens = packed.tokens;
  b.input_ids = std::move(packed.input_ids);
  b.prompt_lengths = std::move(packed.prompt_lengths);
  b.completion_ids = std::move(packed.completion_ids);
  b.completion_mask = at::from_blob(mask.data(), {B, C}, at::kByte).clone().to(device).to(at::kBool);
  b.rollout_logp = at::from_blob(rlp.data(), {B, C}, at::kFloat).clone().to(device);
  b.advantages = (per_token ? at::from_blob(adv.data(), {B, C}, at::kFloat) : at::from_blob(adv.data(), {B}, at::kFloat))
                     .clone()
                     .to(device);
  if (any_kl) b.kl_coef = at::from_blob(kl.data(), {B, C}, at::kFloat).clone().to(device);
  return b;
}

void add_padding_metrics(const std::vector<PolicyBatch>& batches, std::map<std::string, double>& m) {
  double tokens = 0, slots = 0, padded = 0;
  for (const PolicyBatch& b : batches) {
    tokens += static_cast<double>(b.tokens);
    slots += static_cast<double>(b.layout.slots);
    padded += static_cast<double>(b.input_ids.numel());
  }
  if (slots <= 0 || padded <= 0) return;
  m["forward/padding"] = 1.0 - tokens / slots;
  m["forward/padding_unpacked"] = 1.0 - tokens / padded;
}

namespace {

// The hidden states [R, C, H] that predict the completion tokens of rows `input_ids` [R, S] whose
// completions start at `prompt_lengths` [R]: completion token j of row r is predicted by the hidden
// state at P_r − 1 + j.
at::Tensor completion_hidden(const Transformer& model, const at::Tensor& input_ids, const at::Tensor& prompt_lengths,
                             int64_t C) {
  const int64_t R = input_ids.size(0), S = input_ids.size(1);
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(input_ids.device());
  const at::Tensor positions = at::arange(S, long_opts).unsqueeze(0).expand({R, S});
  const at::Tensor hidden = model.forward(input_ids, positions);                             // [R, S, H]
  const at::Tensor where =
      (prompt_lengths.unsqueeze(1) - 1 + at::arange(C, long_opts).unsqueeze(0)).clamp_max(S - 1);  // [R, C]
  return hidden.gather(1, where.unsqueeze(-1).expand({R, C, hidden.size(-1)}));                  // [R, C, H]
}

// The same through a row layout (pack_rows).
at::Tensor completion_hidden(const Transformer& model, const RowLayout& layout) {
  const at::Tensor hidden = model.forward(layout.input_ids, layout.positions, layout.attention);  // [Q, T, H]
  const int64_t R = layout.where.size(0), C = layout.where.size(1), H = hidden.size(-1);
  return hidden.reshape({-1, H}).index_select(0, layout.where.reshape({-1})).view({R, C, H});
}

at::Tensor completion_hidden(const Transformer& model, const PolicyBatch& b) {
  if (!b.layout.input_ids.defined()) {
    return completion_hidden(model, b.input_ids, b.prompt_lengths, b.completion_ids.size(1));
  }
  return completion_hidden(model, b.layout);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> completion_token_logprobs(const Transformer& model, const at::Tensor& input_ids,
                                                            const at::Tensor& prompt_lengths,
                                                            const at::Tensor& completion_ids, double temperature,
                                                            bool with_entropy) {
  const at::Tensor h = completion_hidden(model, input_ids, prompt_lengths, completion_ids.size(1));
  return model.token_logprobs(h, completion_ids, temperature, with_entropy);  // [R, C] each
}

std::pair<at::Tensor, at::Tensor> completion_token_logprobs(const Transformer& model, const RowLayout& layout,
                                                            const at::Tensor& completion_ids, double temperature,
                                                            bool with_entropy) {
  return model.token_logprobs(completion_hidden(model, layout), completion_ids, temperature, with_entropy);
}

std::pair<at::Tensor, at::Tensor> completion_logprobs(const Transformer& model, const PolicyBatch& b,
                                                      double temperature, bool with_entropy) {
  return model.token_logprobs(completion_hidden(model, b), b.completion_ids, temperature, with_entropy);
}

PolicyLossOptions policy_loss_options(const Config& c) {
  const auto& g = c.grpo;
  PolicyLossOptions o;
  o.loss_type = g.loss_type;
  o.epsilon_low = g.epsilon;
  o.epsilon_high = g.epsilon_high > 0 ? g.epsilon_high : g.epsilon;
  o.delta = g.delta;
  o.beta = g.beta;
  o.importance_sampling_level = g.importance_sampling_level;
  o.top_entropy_quantile = g.top_entropy_quantile;
  o.entropy_coef = g.entropy_coef;
  o.max_completion_length = c.generation.max_completion_length;
  return o;
}

std::pair<double, at::Tensor> policy_gradient_step(const Transformer& model, const PolicyBatch& b, double temperature,
                                                   const PolicyLossOptions& options, double denominator,
                                                   size_t num_batches, bool compare_rollout, std::map<std::string, double>& m) {
  PolicyLossInputs in;
  in.old_logp = b.old_logp;
  in.ref_logp = b.ref_logp;
  in.kl_coef = b.kl_coef;
  in.advantages = b.advantages;
  in.mask = b.completion_mask;
  at::Tensor logp;
  PolicyLossOutput out;
  if (policy_loss_is_token_separable(options)) {
    // A sum of per-token terms: the LM head differentiates it in the forward (Transformer::token_loss);
    // policy_loss then runs on the detached values for the metrics.
    const PolicyTokenTerms terms = policy_token_terms(in, options);
    const TokenLossFn fn = [&](const at::Tensor& lp, const at::Tensor& ent, int64_t begin, int64_t end) {
      return policy_token_loss(terms, lp, ent, begin, end, options);
    };
    LmHeadTokenLoss r = model.token_loss(completion_hidden(model, b), b.completion_ids, fn, temperature, true);
    (r.loss / denominator).backward();
    logp = r.logp;
    in.logp = r.logp;
    in.entropy = r.entropy;
    {
      at::NoGradGuard no_grad;
      out = policy_loss(in, options, denominator);
    }
    out.numerator = r.loss.detach();
  } else {
    at::Tensor entropy;
    std::tie(logp, entropy) = completion_logprobs(model, b, temperature, true);
    in.logp = logp;
    in.entropy = options.entropy_coef != 0.0 ? entropy : entropy.detach();
    out = policy_loss(in, options, denominator);
    out.loss.backward();
  }

  // Means over the step's micro-batches (each micro-batch's value is TRL's masked batch mean).
  const double n = static_cast<double>(num_batches);
  for (const auto& [k, v] : out.metrics) m[k] += v / n;
  if (compare_rollout) {
    // Rollout vs policy log-probs on the same tokens: kernels, precision and sampler must agree.
    at::NoGradGuard no_grad;
    const at::Tensor valid = b.completion_ids.ge(0);
    const at::Tensor d = (logp.detach() - b.rollout_logp).abs().masked_select(valid).to(at::kDouble);
    if (d.numel() > 0) {
      m["rollout/logprob_diff_mean"] += d.mean().item<double>() / n;
      m["rollout/logprob_diff_max"] = std::max(m["rollout/logprob_diff_max"], d.max().item<double>());
    }
  }
  return {out.numerator.item<double>(), logp.detach()};
}

}  // namespace scorch::trainers
