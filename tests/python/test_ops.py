"""torch.ops.scorch.* from Python: loads libscorch_ops.so (path in SCORCH_OPS_LIBRARY, set by ctest)
and checks the ops against torch's own formulas on CPU — the loading path the benchmarks rely on."""
import math
import os

import pytest
import torch

LIB = os.environ.get("SCORCH_OPS_LIBRARY")
if not LIB:
    pytest.skip("SCORCH_OPS_LIBRARY is not set (ctest sets it to build/libscorch_ops.so)", allow_module_level=True)
torch.ops.load_library(LIB)
ops = torch.ops.scorch


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,v", [(1, 1), (4, 7), (33, 1000), (2, 32000)])
@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.3])
def test_token_logprobs_matches_torch_log_softmax(dtype, n, v, temperature):
    torch.manual_seed(0)
    logits = (torch.randn(n, v) * 3).to(dtype)
    targets = torch.randint(0, v, (n,))
    targets[::3] = -100
    logp, entropy = ops.token_logprobs(logits, targets, temperature, True)
    log_p = torch.log_softmax(logits.double() / temperature, -1)
    ref = log_p.gather(1, targets.clamp_min(0)[:, None]).squeeze(1) * (targets >= 0)
    ref_entropy = -(log_p.exp() * log_p).sum(-1)
    assert logp.dtype == torch.float32 and entropy.dtype == torch.float32
    torch.testing.assert_close(logp.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy, rtol=1e-5, atol=1e-5)


def test_token_logprobs_backward_matches_autograd_of_log_softmax():
    torch.manual_seed(1)
    base = torch.randn(16, 257)
    targets = torch.randint(0, 257, (16,))
    targets[3] = -100
    z = base.clone().requires_grad_()
    logp, entropy = ops.token_logprobs(z, targets, 0.9, True)
    (logp.sum() + 0.5 * entropy.sum()).backward()
    z64 = base.double().requires_grad_()
    log_p = torch.log_softmax(z64 / 0.9, -1)
    ref = (log_p.gather(1, targets.clamp_min(0)[:, None]).squeeze(1) * (targets >= 0)).sum()
    (ref - 0.5 * (log_p.exp() * log_p).sum()).backward()
    torch.testing.assert_close(z.grad.double(), z64.grad, rtol=1e-5, atol=1e-6)


def test_token_logprobs_rejects_a_non_contiguous_last_dimension():
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.token_logprobs(torch.randn(50, 4).t(), torch.zeros(4, dtype=torch.long), 1.0, False)



def _lm_head_reference(hidden, weight, targets, temperature, softcap):
    """float64 log_softmax of the full product: (logp [N], entropy [N]) with graph for autograd."""
    z = hidden @ weight.t()
    if softcap > 0:
        z = softcap * torch.tanh(z / softcap)
    log_p = torch.log_softmax(z / temperature, -1)
    logp = log_p.gather(1, targets.clamp_min(0)[:, None]).squeeze(1) * (targets >= 0)
    return logp, -(log_p.exp() * log_p).sum(-1)


# V not a multiple of the chunk, N = 1, a chunk larger than N, temperature != 1, soft cap.
@pytest.mark.parametrize("n,h,v,chunk", [(1, 8, 11, 4), (37, 16, 1000, 8), (20, 12, 257, 0), (9, 8, 50, 64)])
@pytest.mark.parametrize("temperature,softcap", [(1.0, 0.0), (0.7, 0.0), (1.3, 5.0)])
def test_lm_head_logprobs_forward_and_backward_match_float64_log_softmax(n, h, v, chunk, temperature, softcap):
    torch.manual_seed(3)
    hidden = torch.randn(n, h)
    weight = torch.randn(v, h) * 0.7
    targets = torch.randint(0, v, (n,))
    targets[1::4] = -100
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    logp, entropy = ops.lm_head_logprobs(x, w, targets, temperature, True, chunk, softcap)
    assert logp.dtype == torch.float32 and entropy.dtype == torch.float32
    gl, ge = torch.randn(n), torch.randn(n)
    ((logp * gl).sum() + (entropy * ge).sum()).backward()
    x64 = hidden.double().requires_grad_()
    w64 = weight.double().requires_grad_()
    ref_logp, ref_entropy = _lm_head_reference(x64, w64, targets, temperature, softcap)
    ((ref_logp * gl.double()).sum() + (ref_entropy * ge.double()).sum()).backward()
    torch.testing.assert_close(logp.double(), ref_logp.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w.grad.double(), w64.grad, rtol=1e-4, atol=1e-5)
    # Only log-probs reach the loss: the entropy term must be absent, not zero-filled wrongly.
    x.grad = None
    w.grad = None
    logp2, _ = ops.lm_head_logprobs(x, w, targets, temperature, False, chunk, softcap)
    logp2.sum().backward()
    x64.grad = None
    w64.grad = None
    _lm_head_reference(x64, w64, targets, temperature, softcap)[0].sum().backward()
    torch.testing.assert_close(w.grad.double(), w64.grad, rtol=1e-4, atol=1e-5)


# A frozen weight (LoRA's base, no gradient wanted): the forward saves E = softmax @ W and the
# backward is g (W[target] - E) / T. Checked against float64 autograd, with -100 targets, with the
# entropy's gradient too (that takes the recomputing path), in fp32 and bf16.
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("entropy_grad", [False, True])
def test_lm_head_logprobs_frozen_weight_gradient_matches_float64(dtype, tol, temperature, entropy_grad):
    torch.manual_seed(5)
    n, h, v = 23, 16, 301
    hidden = torch.randn(n, h).to(dtype)
    weight = (torch.randn(v, h) * 0.7).to(dtype)
    targets = torch.randint(0, v, (n,))
    targets[2::5] = -100
    x = hidden.clone().requires_grad_()
    logp, entropy = ops.lm_head_logprobs(x, weight, targets, temperature, True, 7, 0.0)
    gl, ge = torch.randn(n), torch.randn(n)
    loss = (logp * gl).sum() + ((entropy * ge).sum() if entropy_grad else 0.0)
    loss.backward()
    x64 = hidden.double().requires_grad_()
    ref_logp, ref_entropy = _lm_head_reference(x64, weight.double(), targets, temperature, 0.0)
    ((ref_logp * gl.double()).sum() + ((ref_entropy * ge.double()).sum() if entropy_grad else 0.0)).backward()
    torch.testing.assert_close(logp.double(), ref_logp.detach(), rtol=tol, atol=tol)
    rel = (x.grad.double() - x64.grad).norm() / x64.grad.norm()
    assert rel < tol, rel
    assert x.grad[2::5].abs().max() > 0 if entropy_grad else x.grad[2::5].abs().max() == 0


def test_lm_head_logprobs_tied_weights_sum_both_gradients():
    # Tied embeddings: the LM head is the embedding table, so the weight gets the embedding's and the
    # head's gradients together.
    torch.manual_seed(4)
    emb = torch.randn(23, 8)
    ids = torch.randint(0, 23, (2, 6))
    targets = torch.randint(0, 23, (12,))
    e = emb.clone().requires_grad_()
    hidden = torch.tanh(e[ids].reshape(12, 8) * 1.5)
    logp, _ = ops.lm_head_logprobs(hidden, e, targets, 1.0, False, 5, 0.0)
    logp.sum().backward()
    e64 = emb.double().requires_grad_()
    ref, _ = _lm_head_reference(torch.tanh(e64[ids].reshape(12, 8) * 1.5), e64, targets, 1.0, 0.0)
    ref.sum().backward()
    torch.testing.assert_close(logp.double(), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(e.grad.double(), e64.grad, rtol=1e-4, atol=1e-5)


def test_lm_head_logprobs_bf16_matches_float64_of_the_rounded_inputs():
    torch.manual_seed(5)
    hidden = torch.randn(40, 64).bfloat16()
    weight = (torch.randn(3001, 64) * 0.2).bfloat16()
    targets = torch.randint(0, 3001, (40,))
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()
    logp, entropy = ops.lm_head_logprobs(x, w, targets, 0.9, True, 16, 0.0)
    (logp.sum() + 0.1 * entropy.sum()).backward()
    assert x.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.bfloat16
    x64 = hidden.double().requires_grad_()
    w64 = weight.double().requires_grad_()
    ref_logp, ref_entropy = _lm_head_reference(x64, w64, targets, 0.9, 0.0)
    (ref_logp.sum() + 0.1 * ref_entropy.sum()).backward()
    # The logits are rounded to bf16 (as model.logits() then token_logprobs): ~2^-8 relative per logit.
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()
    assert rel(logp, ref_logp.detach()) < 1e-2
    assert rel(x.grad, x64.grad) < 2e-2
    assert rel(w.grad, w64.grad) < 2e-2
    # And exactly the unfused bf16 path's values: the same bf16 logits reduced by the same kernel.
    unfused, _ = ops.token_logprobs(hidden @ weight.t(), targets, 0.9, False)
    torch.testing.assert_close(logp, unfused, rtol=0, atol=0)


def test_lm_head_logprobs_gradient_by_finite_differences():
    torch.manual_seed(6)
    hidden = torch.randn(3, 4)
    weight = torch.randn(9, 4)
    targets = torch.tensor([2, -100, 8])
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_()

    def loss(hh, ww):
        lp, ent = ops.lm_head_logprobs(hh, ww, targets, 0.8, True, 2, 3.0)
        return (lp * torch.tensor([1.0, 2.0, -0.5])).sum() + 0.3 * ent.sum()

    loss(x, w).backward()
    eps = 1e-2
    for t, grad in ((hidden, x.grad), (weight, w.grad)):
        for i in range(t.numel()):
            plus, minus = t.clone(), t.clone()
            plus.view(-1)[i] += eps
            minus.view(-1)[i] -= eps
            args_p = (plus, weight) if t is hidden else (hidden, plus)
            args_m = (minus, weight) if t is hidden else (hidden, minus)
            fd = (loss(*args_p).item() - loss(*args_m).item()) / (2 * eps)
            assert abs(fd - grad.view(-1)[i].item()) < 2e-3 * max(1.0, abs(fd)), (i, fd, grad.view(-1)[i].item())


def test_lm_head_logprobs_rejects_bad_inputs():
    h, w, t = torch.randn(4, 8), torch.randn(10, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(RuntimeError, match="does not match hidden"):
        ops.lm_head_logprobs(h, torch.randn(10, 7), t)
    with pytest.raises(RuntimeError, match="one dtype"):
        ops.lm_head_logprobs(h, w.bfloat16(), t)
    with pytest.raises(RuntimeError, match="targets must be"):
        ops.lm_head_logprobs(h, w, torch.zeros(3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="chunk must be"):
        ops.lm_head_logprobs(h, w, t, 1.0, False, -1)
    with pytest.raises(RuntimeError, match="out of range"):
        ops.lm_head_logprobs(h, w, torch.full((4,), 10, dtype=torch.long))


def test_group_advantages_grpo_matches_trl_formula():
    torch.manual_seed(2)
    rewards = torch.randn(6 * 8)
    adv, mean, std, zero = ops.group_advantages(rewards, 8, "grpo", 1e-4, "group")
    g = rewards.view(-1, 8)
    ref = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).flatten()
    torch.testing.assert_close(adv, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(std, g.std(1), rtol=1e-5, atol=1e-6)
    assert zero.dtype == torch.bool and not zero.any()


def test_group_advantages_defaults_and_nan_rewards():
    rewards = torch.tensor([1.0, math.nan, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv, mean, std, zero = ops.group_advantages(rewards, 4)  # grpo, eps 1e-4, scale group
    assert adv[1].item() == 0.0 and torch.all(adv[4:] == 0)
    assert zero.tolist() == [False, True]
    assert mean[0].item() == pytest.approx(2 / 3)


# --- the layer ops: torch.ops.scorch.* against transformers' compositions ----------------------------

def hf_rms_norm(x, weight, eps):
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def hf_rope(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_decode_ops_match_the_torch_compositions(dtype):
    torch.manual_seed(3)
    x, delta = torch.randn(8, 896).to(dtype), torch.randn(8, 896).to(dtype)
    w = (1 + 0.5 * torch.randn(896)).to(dtype)
    proj = torch.randn(2, 5, 18 * 64).to(dtype)
    q = proj.view(2, 5, 18, 64).transpose(1, 2)[:, :14]  # strided, as the model's q
    cos, sin = torch.randn(2, 1, 5, 64).to(dtype), torch.randn(2, 1, 5, 64).to(dtype)
    gu = (3 * torch.randn(4, 2 * 4864)).to(dtype)
    with torch.no_grad():
        y = ops.fused_rms_norm(x, w, 1e-6)
        s, y2 = ops.fused_add_rms_norm(x, delta, w, 1e-6)
        rope = ops.fused_rope(q, cos, sin)
        act = ops.silu_and_mul(gu)
    # The mean of squares is summed in another order: bf16 within one ulp (rare), fp32 within a few.
    ref = hf_rms_norm(x, w, 1e-6)
    torch.testing.assert_close(y, ref)
    assert (y != ref).float().mean().item() < (1.0 if dtype == torch.float32 else 2e-3)
    assert torch.equal(s, x + delta)
    assert torch.equal(y2, ops.fused_rms_norm(x + delta, w, 1e-6))
    assert rope.is_contiguous() and torch.equal(rope, hf_rope(q, cos, sin))
    ref_act = torch.nn.functional.silu(gu[:, :4864]) * gu[:, 4864:]
    torch.testing.assert_close(act, ref_act)
    assert (act != ref_act).float().mean().item() < 2e-2


def test_layer_ops_are_differentiable_from_python():
    torch.manual_seed(5)
    x, w = torch.randn(3, 16, requires_grad=True), (1 + 0.3 * torch.randn(16)).requires_grad_()
    gate, up = torch.randn(3, 16, requires_grad=True), torch.randn(3, 16, requires_grad=True)
    dy, dact = torch.randn(3, 16), torch.randn(3, 16)
    (ops.fused_rms_norm(x, w, 1e-6) * dy).sum().backward()
    (ops.silu_mul(gate, up) * dact).sum().backward()
    x64, w64, g64, u64 = (t.detach().double().requires_grad_() for t in (x, w, gate, up))
    (hf_rms_norm(x64, w64, 1e-6) * dy.double()).sum().backward()
    (torch.nn.functional.silu(g64) * u64 * dact.double()).sum().backward()
    for got, want in ((x.grad, x64.grad), (w.grad, w64.grad), (gate.grad, g64.grad), (up.grad, u64.grad)):
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="cos / sin require grad"):
        ops.fused_rope(torch.randn(1, 2, 3, 8), torch.randn(1, 1, 3, 8, requires_grad=True), torch.randn(1, 1, 3, 8))
    with torch.no_grad():
        assert not ops.fused_rms_norm(x, w, 1e-6).requires_grad
    with torch.inference_mode():
        assert ops.silu_and_mul(x).shape == (3, 8)


def test_decode_ops_reject_bad_shapes():
    with pytest.raises(RuntimeError, match=r"weight must be \[N\] = \[8\]"):
        ops.fused_rms_norm(torch.randn(2, 8), torch.ones(7), 1e-6)
    with pytest.raises(RuntimeError, match="must be even"):
        ops.fused_rope(torch.randn(1, 2, 3, 7), torch.randn(1, 1, 3, 7), torch.randn(1, 1, 3, 7))
    with pytest.raises(RuntimeError, match="even"):
        ops.silu_and_mul(torch.randn(2, 5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sample_tokens_is_the_first_token_past_u_of_the_cumulative_softmax(dtype):
    g = torch.Generator().manual_seed(4)
    logits = (torch.randn(32, 500, generator=g) * 3).to(dtype)
    u = torch.rand(32, generator=g, dtype=torch.float64)
    tokens = torch.ops.scorch.sample_tokens(logits, u, 0.8)
    cdf = torch.softmax(logits.double() / 0.8, -1).cumsum(-1)
    ref = torch.searchsorted(cdf, u.unsqueeze(-1), right=True).squeeze(-1)
    differ = (tokens != ref).nonzero().flatten().tolist()
    # fp32 weights may move a token only where u sits on a boundary of the float64 reference
    for b in differ:
        assert abs(int(tokens[b]) - int(ref[b])) == 1
        assert abs(float(cdf[b, min(int(tokens[b]), int(ref[b]))]) - float(u[b])) < 1e-6
    assert len(differ) <= 1
    masked = torch.tensor([[float("-inf"), 1.0, float("-inf"), 2.0]])
    assert torch.ops.scorch.sample_tokens(masked, torch.zeros(1, dtype=torch.float64), 1.0).item() == 1
    with pytest.raises(RuntimeError, match="uniforms must be float64"):
        torch.ops.scorch.sample_tokens(logits, u.float(), 1.0)


def test_rope_kv_write_equals_rope_and_two_index_copies():
    g = torch.Generator().manual_seed(9)
    B, H, KV, D, S = 2, 4, 2, 8, 6
    qkv = torch.randn(B, 1, H + 2 * KV, D, generator=g).transpose(1, 2)  # [B, H + 2KV, 1, D], strided
    cos, sin = torch.randn(B, 1, 1, D, generator=g), torch.randn(B, 1, 1, D, generator=g)
    k, v = torch.randn(B, KV, S, D, generator=g), torch.randn(B, KV, S, D, generator=g)
    k_ref, v_ref = k.clone(), v.clone()
    slot = torch.tensor([3])
    with torch.no_grad():
        q = torch.ops.scorch.rope_kv_write(qkv, cos, sin, k, v, slot, H)
    qk = hf_rope(qkv[:, :H + KV], cos, sin)
    k_ref.index_copy_(2, slot, qk[:, H:])
    v_ref.index_copy_(2, slot, qkv[:, H + KV:])
    assert torch.equal(q, qk[:, :H])
    assert torch.equal(k, k_ref) and torch.equal(v, v_ref)


def test_decode_attention_equals_rope_kv_write_then_grouped_sdpa():
    g = torch.Generator().manual_seed(10)
    B, H, KV, D, S = 2, 6, 2, 8, 7
    qkv = torch.randn(B, 1, H + 2 * KV, D, generator=g).transpose(1, 2)
    cos, sin = torch.randn(B, 1, 1, D, generator=g), torch.randn(B, 1, 1, D, generator=g)
    k, v = torch.randn(B, KV, S, D, generator=g), torch.randn(B, KV, S, D, generator=g)
    k_ref, v_ref = k.clone(), v.clone()
    slot = torch.tensor([4])
    mask = torch.zeros(B, 1, 1, S).masked_fill_(torch.arange(S) > 4, float("-inf"))
    with torch.no_grad():
        out = torch.ops.scorch.decode_attention(qkv, cos, sin, k, v, slot, mask, H, D ** -0.5)
        q = torch.ops.scorch.rope_kv_write(qkv, cos, sin, k_ref, v_ref, slot, H)
    # the formula by hand: query head h reads KV head h // (H // KV)
    kx, vx = k_ref.repeat_interleave(H // KV, 1), v_ref.repeat_interleave(H // KV, 1)
    w = torch.softmax(q.double() @ kx.double().transpose(2, 3) * D ** -0.5 + mask.double(), -1)
    expect = (w @ vx.double()).transpose(1, 2).reshape(B, 1, H * D)
    assert out.shape == (B, 1, H * D)
    assert torch.equal(k, k_ref) and torch.equal(v, v_ref)
    assert (out.double() - expect).abs().max() / expect.abs().max() < 1e-5


# lm_head_logprob_loss: Σ c_t logp_t with the gradients taken in the forward (lm_head_token_loss's
# torch op); against float64 autograd of the full product, trained and frozen weight, soft cap,
# temperature, -100 targets, V not a multiple of the chunk, N = 1, bf16.
@pytest.mark.parametrize("n,h,v,chunk", [(1, 8, 11, 4), (37, 16, 1000, 8), (20, 12, 257, 0)])
@pytest.mark.parametrize("temperature,softcap", [(1.0, 0.0), (0.7, 0.0), (1.3, 5.0)])
@pytest.mark.parametrize("frozen", [False, True])
def test_lm_head_logprob_loss_matches_float64(n, h, v, chunk, temperature, softcap, frozen):
    torch.manual_seed(11)
    hidden = torch.randn(n, h)
    weight = torch.randn(v, h) * 0.5
    targets = torch.randint(0, v, (n,))
    targets[1::4] = -100
    coef = torch.randn(n)
    x = hidden.clone().requires_grad_()
    w = weight.clone().requires_grad_(not frozen)
    loss, logp = ops.lm_head_logprob_loss(x, w, targets, coef, temperature, chunk, softcap)
    assert loss.dim() == 0 and not logp.requires_grad
    (2.5 * loss).backward()  # the upstream gradient scales the stored ones
    x64 = hidden.double().requires_grad_()
    w64 = weight.double().requires_grad_(not frozen)
    ref_logp, _ = _lm_head_reference(x64, w64, targets, temperature, softcap)
    ref = (coef.double() * ref_logp).sum()
    (2.5 * ref).backward()
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logp.double(), ref_logp.detach(), rtol=1e-5, atol=1e-5)
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()
    assert rel(x.grad, x64.grad) < 1e-5
    assert (w.grad is None) if frozen else rel(w.grad, w64.grad) < 1e-5
    assert x.grad[1::4].abs().max() == 0 if n > 1 else True  # ignored targets: no gradient


def test_lm_head_logprob_loss_equals_lm_head_logprobs_in_bf16_and_under_no_grad():
    torch.manual_seed(12)
    hidden = torch.randn(40, 64).bfloat16()
    weight = (torch.randn(3001, 64) * 0.2).bfloat16()
    targets = torch.randint(0, 3001, (40,))
    coef = -torch.ones(40)
    grads = []
    for fused in (True, False):
        x, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        if fused:
            loss, logp = ops.lm_head_logprob_loss(x, w, targets, coef, 0.9, 16, 0.0)
        else:
            logp, _ = ops.lm_head_logprobs(x, w, targets, 0.9, False, 16, 0.0)
            loss = (coef * logp).sum()
        loss.backward()
        grads.append((loss.detach(), logp.detach(), x.grad, w.grad))
    (la, pa, xa, wa), (lb, pb, xb, wb) = grads
    torch.testing.assert_close(pa, pb, rtol=0, atol=0)  # the same bf16 logits through the same kernel
    torch.testing.assert_close(la, lb, rtol=1e-6, atol=1e-6)
    assert xa.dtype == torch.bfloat16 and wa.dtype == torch.bfloat16
    rel = lambda a, b: ((a.double() - b.double()).norm() / b.double().norm()).item()
    assert rel(xa, xb) < 1e-2 and rel(wa, wb) < 1e-2  # bf16 rounding of the same fp32 sums
    with torch.no_grad():
        loss, logp = ops.lm_head_logprob_loss(hidden, weight, targets, coef, 0.9, 16, 0.0)
    torch.testing.assert_close(logp, pa, rtol=0, atol=0)
    assert not loss.requires_grad


def test_lm_head_logprob_loss_rejects_bad_coefficients():
    h, w, t = torch.randn(4, 8), torch.randn(10, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(RuntimeError, match="coefficients must be"):
        ops.lm_head_logprob_loss(h, w, t, torch.ones(3))
    with pytest.raises(RuntimeError, match="does not match hidden"):
        ops.lm_head_logprob_loss(h, torch.randn(10, 7), t, torch.ones(4))
