#!/usr/bin/env python3
"""The fused layer ops' forward + backward against their eager compositions with autograd, on the
CPU, in the same run: RMSNorm, add + RMSNorm, RoPE of a transposed q view, SiLU * up, at
Qwen2.5-0.5B widths (hidden 896, 14 heads of 64, intermediate 4864) over --tokens tokens.

    tools/bench/kernels/bench_train_ops.py [--lib build/libscorch_ops.so] [--threads 1 2] [--tokens 2048]

Median of --repeats timed calls after one warm-up; ms per forward + backward."""
import argparse
import os
import statistics
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def hf_rms_norm(x, w, eps=1e-6):
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return w * h.to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), -1)


def timed(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=os.path.join(ROOT, "build", "libscorch_ops.so"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.ops.load_library(a.lib)
    ops = torch.ops.scorch
    B, T = 4, a.tokens // 4
    hidden, inter, heads, dim = 896, 4864, 14, 64
    print(f"{'threads':>7} {'dtype':<9} {'op':<13} {'fused ms':>9} {'eager ms':>9} {'speed-up':>8}")
    for threads in a.threads:
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.bfloat16):
            def leaf(*shape, scale=1.0):
                return (torch.randn(*shape) * scale).to(dtype).requires_grad_()
            x, delta = leaf(B, T, hidden), leaf(B, T, hidden)
            w = (1 + 0.1 * torch.randn(hidden)).to(dtype).requires_grad_()
            dy = torch.randn(B, T, hidden).to(dtype)
            qp = leaf(B, T, heads * dim)
            cos, sin = torch.randn(B, 1, T, dim).to(dtype), torch.randn(B, 1, T, dim).to(dtype)
            dq = torch.randn(B, heads, T, dim).to(dtype)
            gate, up = leaf(B, T, inter, scale=3.0), leaf(B, T, inter)
            dact = torch.randn(B, T, inter).to(dtype)
            q_of = lambda: qp.view(B, T, heads, dim).transpose(1, 2)  # noqa: E731
            cases = {
                "rms_norm": (lambda: ops.fused_rms_norm(x, w, 1e-6).backward(dy),
                             lambda: hf_rms_norm(x, w).backward(dy)),
                "add_rms_norm": (lambda: torch.autograd.backward(ops.fused_add_rms_norm(x, delta, w, 1e-6), (dy, dy)),
                                 lambda: (lambda s: torch.autograd.backward((s, hf_rms_norm(s, w)), (dy, dy)))(x + delta)),
                "rope q": (lambda: ops.fused_rope(q_of(), cos, sin).backward(dq),
                           lambda: (lambda q: (q * cos + rotate_half(q) * sin).backward(dq))(q_of())),
                "silu_mul": (lambda: ops.silu_mul(gate, up).backward(dact),
                             lambda: (torch.nn.functional.silu(gate) * up).backward(dact)),
            }
            for name, (fused, eager) in cases.items():
                tf, te = timed(fused, a.repeats), timed(eager, a.repeats)
                print(f"{threads:>7} {str(dtype)[6:]:<9} {name:<13} {tf:>9.2f} {te:>9.2f} {te / tf:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
