#!/usr/bin/env python3
"""Benchmark scorch's fused ops against the eager PyTorch formulas they replace, in one process.

Loads libscorch_ops.so with torch.ops.load_library and prints markdown tables.

--bench decode (the inference-only decode-step ops, at decode shapes: batch 1 / 8 / 32 / 64 rows of
Qwen2.5-0.5B's hidden size 896, intermediate size 4864, 14 query heads of 64): per call, each fused
op against transformers' ATen composition (modeling_llama, written as there):
  fused_rms_norm(x, w, eps)        vs  w * (x.float() * rsqrt(x.float().pow(2).mean(-1) + eps)).to(dtype)
  fused_add_rms_norm(h, d, w, eps) vs  the residual add, then that
  fused_rope(q, cos, sin)          vs  q * cos + rotate_half(q) * sin   (q a strided view, as in the model)
  silu_and_mul(gu)                 vs  silu(gu[..., :I]) * gu[..., I:]
  decode_attention(qkv, ...)       vs  rope_kv_write + SDPA (GQA 14/2, 192 cache slots) + the transposing copy
On CUDA twice: eager (back-to-back calls, so launch overhead counts, as in an eager decode step) and
replayed from a CUDA graph (the kernels alone).

--bench token_logprobs: for each (N, V), the time and effective bandwidth of the forward and of
forward+backward for
  scorch   torch.ops.scorch.token_logprobs(logits, targets)          (bf16 in, fp32 logp out)
  eager    torch.log_softmax(logits.float(), -1).gather(1, targets)   (the usual TRL-style code)
both measured in the same run, their ratio, the peak extra memory (CUDA caching allocator), and on
CUDA the HBM bound: bytes that must move (fwd: read the logits once; fwd+bwd: read them twice and
write the gradient once) / measured device-to-device copy bandwidth.

  python tools/bench/kernels/bench_kernels.py --device cuda [--lib build/libscorch_ops.so]   (both)
  python tools/bench/kernels/bench_kernels.py --device cpu --bench decode
"""
import argparse
import datetime
import os
import pathlib
import time

import torch

REPO = pathlib.Path(__file__).resolve().parents[3]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--lib", default=os.environ.get("SCORCH_OPS_LIBRARY", str(REPO / "build" / "libscorch_ops.so")))
    p.add_argument("--n", type=int, nargs="*", help="token counts (default: 4096 16384 on cuda, 512 2048 on cpu)")
    p.add_argument("--v", type=int, nargs="*", help="vocabulary sizes (default: 32000 151936 on cuda, 32000 on cpu)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 20 cuda, 3 cpu)")
    p.add_argument("--entropy", action="store_true", help="also compute the entropy (both methods)")
    p.add_argument("--bench", choices=["all", "decode", "token_logprobs"], default="all",
                   help="which table(s): the decode-step ops, token_logprobs, or both (default, decode first)")
    p.add_argument("--batch", type=int, nargs="*", help="decode rows (default: 1 8 32 64)")
    return p.parse_args()


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, iters, warmup=2):
    """Median seconds per call of fn()."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def peak_extra_bytes(fn, device):
    """Peak bytes allocated during fn() beyond those allocated before (CUDA only)."""
    if device != "cuda":
        return None
    fn()  # warm the allocator's pools so the measurement sees steady state
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def copy_bandwidth(device):
    """Device-to-device copy bandwidth in bytes/s (read + write), the practical HBM limit."""
    x = torch.empty(256 * 2**20, dtype=torch.float32, device=device)  # 1 GiB
    y = torch.empty_like(x)
    seconds = timeit(lambda: y.copy_(x), device, iters=10)
    return 2 * x.numel() * x.element_size() / seconds


def scorch_fwd(logits, targets, entropy):
    with torch.no_grad():
        return torch.ops.scorch.token_logprobs(logits, targets, 1.0, entropy)


def eager_fwd(logits, targets, entropy):
    with torch.no_grad():
        log_p = torch.log_softmax(logits.float(), -1)
        out = log_p.gather(1, targets[:, None]).squeeze(1)
        return (out, -(log_p.exp() * log_p).sum(-1)) if entropy else (out,)


def scorch_fwd_bwd(logits, targets, entropy):
    logits.grad = None
    logp, h = torch.ops.scorch.token_logprobs(logits, targets, 1.0, entropy)
    (logp.sum() + (h.sum() if entropy else 0)).backward()


def eager_fwd_bwd(logits, targets, entropy):
    logits.grad = None
    log_p = torch.log_softmax(logits.float(), -1)
    loss = log_p.gather(1, targets[:, None]).sum()
    if entropy:
        loss = loss - (log_p.exp() * log_p).sum()
    loss.backward()


def fmt_rate(bytes_per_second):
    gb = bytes_per_second / 1e9
    return f"{gb:.0f}" if gb >= 100 else f"{gb:.2g}"


def fmt_bytes(b):
    return "-" if b is None else f"{b / 2**20:.0f} MiB"


# --- decode-step ops -----------------------------------------------------------------------------

HIDDEN, INTERMEDIATE, HEADS, KV_HEADS, HEAD_DIM, EPS = 896, 4864, 14, 2, 64, 1e-6  # Qwen2.5-0.5B
SLOTS = 192  # cache slots of a 64-prompt + 128-token decode


def hf_rms_norm(x, weight, eps):
    h = x.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + eps)
    return weight * h.to(x.dtype)


def hf_rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def hf_rope(x, cos, sin):
    return x * cos + hf_rotate_half(x) * sin


def hf_silu_and_mul(gu):
    i = gu.shape[-1] // 2
    return torch.nn.functional.silu(gu[..., :i]) * gu[..., i:]


def decode_cases(batch, device, dtype):
    """(op, input shape, ATen kernels of the composition, fused fn, composition fn) at `batch` rows."""
    g = torch.Generator(device="cpu").manual_seed(batch)
    rnd = lambda *shape: torch.randn(*shape, generator=g).to(device=device, dtype=dtype)  # noqa: E731
    x, delta, w = rnd(batch, HIDDEN), rnd(batch, HIDDEN), 1 + 0.1 * rnd(HIDDEN)
    # q as the model makes it: the fused qkv projection [B, 1, (M + 2K) * D], heads, transposed, narrowed.
    proj = rnd(batch, 1, (HEADS + 2 * KV_HEADS) * HEAD_DIM)
    q = proj.view(batch, 1, HEADS + 2 * KV_HEADS, HEAD_DIM).transpose(1, 2)[:, :HEADS]
    cos, sin = rnd(batch, 1, 1, HEAD_DIM), rnd(batch, 1, 1, HEAD_DIM)
    gu = rnd(batch, 2 * INTERMEDIATE)
    ops = torch.ops.scorch
    to_float = 0 if dtype == torch.float32 else 2  # .to(float32) and .to(dtype) are no-ops in fp32
    return [
        ("fused_rms_norm", f"{batch}x{HIDDEN}", 6 + to_float,
         lambda: ops.fused_rms_norm(x, w, EPS), lambda: hf_rms_norm(x, w, EPS)),
        ("fused_add_rms_norm", f"{batch}x{HIDDEN}", 7 + to_float,
         lambda: ops.fused_add_rms_norm(x, delta, w, EPS), lambda: hf_rms_norm(x + delta, w, EPS)),
        ("fused_rope", f"{batch}x{HEADS}x1x{HEAD_DIM}", 5,
         lambda: ops.fused_rope(q, cos, sin), lambda: hf_rope(q, cos, sin)),
        ("silu_and_mul", f"{batch}x{2 * INTERMEDIATE}", 2,
         lambda: ops.silu_and_mul(gu), lambda: hf_silu_and_mul(gu)),
        ("decode_attention", f"{batch}x{HEADS}/{KV_HEADS}x{SLOTS}x{HEAD_DIM}", "3+",
         *decode_attention_pair(batch, device, dtype, rnd)),
    ]


def decode_attention_pair(batch, device, dtype, rnd):
    """decode_attention (RoPE + cache write + GQA attention over SLOTS slots, one kernel on CUDA) and
    what the static decode step runs without it: rope_kv_write, SDPA (on CUDA the query heads of a KV
    head folded into the query length, on the CPU enable_gqa), the transposing copy."""
    ops = torch.ops.scorch
    qkv = rnd(batch, 1, (HEADS + 2 * KV_HEADS) * HEAD_DIM).view(batch, 1, HEADS + 2 * KV_HEADS, HEAD_DIM).transpose(1, 2)
    cos, sin = rnd(batch, 1, 1, HEAD_DIM), rnd(batch, 1, 1, HEAD_DIM)
    k, v = rnd(batch, KV_HEADS, SLOTS, HEAD_DIM), rnd(batch, KV_HEADS, SLOTS, HEAD_DIM)
    slot = torch.tensor([SLOTS - 1], device=device)
    mask = torch.zeros(batch, 1, 1, SLOTS, device=device, dtype=dtype)
    mask[..., : SLOTS // 8] = float("-inf")  # left padding
    scale = HEAD_DIM ** -0.5

    def fused():
        return ops.decode_attention(qkv, cos, sin, k, v, slot, mask, HEADS, scale)

    def composed():
        q = ops.rope_kv_write(qkv, cos, sin, k, v, slot, HEADS)
        if device == "cuda":
            a = torch.nn.functional.scaled_dot_product_attention(
                q.reshape(batch, KV_HEADS, HEADS // KV_HEADS, HEAD_DIM), k, v, attn_mask=mask, scale=scale)
            a = a.reshape(batch, HEADS, 1, HEAD_DIM)
        else:
            a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=True)
        return a.transpose(1, 2).reshape(batch, 1, HEADS * HEAD_DIM)

    return fused, composed


def per_call_seconds(fn, device, min_seconds=0.02, repeats=5):
    """Median over `repeats` of the time per call of a loop of back-to-back calls of fn()."""
    fn()
    sync(device)
    calls = 1
    while True:  # enough calls per loop that timer and sync overhead vanish
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        if time.perf_counter() - t0 >= min_seconds or calls >= 1 << 16:
            break
        calls *= 2
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        times.append((time.perf_counter() - t0) / calls)
    times.sort()
    return times[len(times) // 2]


def graph_seconds(fn, calls=50, repeats=5):
    """Per call, fn() captured `calls` times in one CUDA graph and replayed: the GPU time alone."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / calls)
    times.sort()
    del graph
    return times[len(times) // 2]


def bench_decode(args, device, name):
    dtype = getattr(torch, args.dtype)
    batches = args.batch or [1, 8, 32, 64]
    print(f"# decode-step ops — {name}, torch {torch.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, {args.dtype}, per call")
    print()
    cuda = device == "cuda"
    head = "| op | input | ATen kernels | fused us | ATen us | speedup |"
    rule = "|---|---|---|---|---|---|"
    if cuda:
        head += " fused us (graph) | ATen us (graph) | speedup (graph) |"
        rule += "---|---|---|"
    print(head)
    print(rule)
    with torch.inference_mode():
        for batch in batches:
            for op, shape, kernels, fused, composed in decode_cases(batch, device, dtype):
                t_fused, t_aten = per_call_seconds(fused, device), per_call_seconds(composed, device)
                row = (f"| {op} | {shape} | {kernels} | {t_fused * 1e6:.1f} | {t_aten * 1e6:.1f} "
                       f"| {t_aten / t_fused:.1f}x |")
                if cuda:
                    g_fused, g_aten = graph_seconds(fused), graph_seconds(composed)
                    row += f" {g_fused * 1e6:.2f} | {g_aten * 1e6:.2f} | {g_aten / g_fused:.1f}x |"
                print(row, flush=True)
    print()
    print("us = microseconds per call: the median of 5 loops of back-to-back calls (enough for >= 20 ms), "
          "inference mode" + ("; graph = the same calls captured in one CUDA graph and replayed (no launch "
                              "overhead)." if cuda else "."))
    print()


# --- token_logprobs ----------------------------------------------------------------------------------

def bench_token_logprobs(args, device, name):
    ns = args.n or ([4096, 16384] if device == "cuda" else [512, 2048])
    vs = args.v or ([32000, 151936] if device == "cuda" else [32000])
    iters = args.iters or (20 if device == "cuda" else 3)
    dtype = getattr(torch, args.dtype)
    print(f"# token_logprobs benchmark — {name}, torch {torch.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, {args.dtype}, entropy={args.entropy}")
    bandwidth = copy_bandwidth(device) if device == "cuda" else None
    if bandwidth:
        print(f"# measured device copy bandwidth: {bandwidth / 1e9:.0f} GB/s (the HBM bound below uses it)")
    print()
    print("| N | V | pass | scorch ms | scorch GB/s | eager ms | eager GB/s | speedup | % of HBM bound (scorch) "
          "| peak extra scorch | peak extra eager | logits size |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in ns:
        for v in vs:
            torch.manual_seed(0)
            logits = torch.randn(n, v, device=device).to(dtype)
            targets = torch.randint(0, v, (n,), device=device)
            logits_bytes = logits.numel() * logits.element_size()
            for label, reads_writes, fused, eager in (
                ("fwd", 1, scorch_fwd, eager_fwd),
                ("fwd+bwd", 3, scorch_fwd_bwd, eager_fwd_bwd),
            ):
                if label == "fwd+bwd":
                    logits.requires_grad_(True)
                must_move = reads_writes * logits_bytes
                t_fused = timeit(lambda: fused(logits, targets, args.entropy), device, iters)
                t_eager = timeit(lambda: eager(logits, targets, args.entropy), device, iters)
                m_fused = peak_extra_bytes(lambda: fused(logits, targets, args.entropy), device)
                m_eager = peak_extra_bytes(lambda: eager(logits, targets, args.entropy), device)
                bound = f"{100 * (must_move / bandwidth) / t_fused:.0f}%" if bandwidth else "-"
                print(f"| {n} | {v} | {label} | {t_fused * 1e3:.2f} | {fmt_rate(must_move / t_fused)} "
                      f"| {t_eager * 1e3:.2f} | {fmt_rate(must_move / t_eager)} | {t_eager / t_fused:.2f}x | {bound} "
                      f"| {fmt_bytes(m_fused)} | {fmt_bytes(m_eager)} | {fmt_bytes(logits_bytes)} |", flush=True)
                logits.grad = None
            logits.requires_grad_(False)
            del logits, targets
            if device == "cuda":
                torch.cuda.empty_cache()
    print()
    print("GB/s = bytes that must move / time (fwd: logits read once; fwd+bwd: read twice, gradient written "
          "once), for both columns. Peak extra = allocator peak beyond the inputs (CUDA only); in fwd+bwd it "
          "includes the gradient, which is the logits' size.")


def main():
    args = parse_args()
    if not pathlib.Path(args.lib).exists():
        raise SystemExit(f"{args.lib} does not exist: build the scorch_ops target first, or pass --lib")
    torch.ops.load_library(args.lib)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device")
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    if args.bench in ("all", "decode"):
        bench_decode(args, device, name)
    if args.bench in ("all", "token_logprobs"):
        bench_token_logprobs(args, device, name)


if __name__ == "__main__":
    main()
