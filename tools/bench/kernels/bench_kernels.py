#!/usr/bin/env python3
"""Benchmark scorch's fused token_logprobs against the eager PyTorch formula, in one process.

Loads libscorch_ops.so with torch.ops.load_library and prints a markdown table: for each (N, V),
the time and effective bandwidth of the forward and of forward+backward for
  scorch   torch.ops.scorch.token_logprobs(logits, targets)          (bf16 in, fp32 logp out)
  eager    torch.log_softmax(logits.float(), -1).gather(1, targets)   (the usual TRL-style code)
both measured in the same run, their ratio, the peak extra memory (CUDA caching allocator), and on
CUDA the HBM bound: bytes that must move (fwd: read the logits once; fwd+bwd: read them twice and
write the gradient once) / measured device-to-device copy bandwidth.

  python tools/bench/kernels/bench_kernels.py --device cuda [--lib build/libscorch_ops.so]
  python tools/bench/kernels/bench_kernels.py --device cpu
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


def main():
    args = parse_args()
    if not pathlib.Path(args.lib).exists():
        raise SystemExit(f"{args.lib} does not exist: build the scorch_ops target first, or pass --lib")
    torch.ops.load_library(args.lib)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device")
    ns = args.n or ([4096, 16384] if device == "cuda" else [512, 2048])
    vs = args.v or ([32000, 151936] if device == "cuda" else [32000])
    iters = args.iters or (20 if device == "cuda" else 3)
    dtype = getattr(torch, args.dtype)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
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


if __name__ == "__main__":
    main()
