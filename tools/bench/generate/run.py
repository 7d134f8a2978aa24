#!/usr/bin/env python3
"""Rollout throughput: scorch's GenerationEngine vs transformers' generate() on the same weights.

Builds a random Llama model in transformers, saves it as a HF directory (safetensors), and times
  - scorch_bench_generate (C++, loads that directory) and
  - transformers' model.generate() (same weights, same prompts shape, same thread count)
at several batch sizes with P prompt + N new tokens, temperature-1 sampling, no EOS (every sample
runs N tokens). A second table measures dropping finished rows (compaction) against letting them sit
out masked, on a workload where samples end at varied lengths (every K-th id is a stop id). On CUDA
the main table also shows scorch's eager dynamic decode steps next to its default CUDA-graph steps, a
second table the graph steps without lookahead and with the fused decode attention kernel, and a
per-kernel profile of one step.

  python tools/bench/generate/run.py --build-dir build-rollout [--device cpu --threads 2]
  python tools/bench/generate/run.py --shape qwen2.5-0.5b --device cuda --dtype bfloat16 --batches 64,256
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

SHAPES = {
    # The CPU benchmark model: 4 layers, hidden 256, vocabulary 32k.
    "small": dict(model_type="llama", vocab_size=32000, hidden_size=256, intermediate_size=688,
                  num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                  max_position_embeddings=512, tie_word_embeddings=False),
    # Qwen2.5-0.5B's architecture (random weights).
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1000000.0),
}


def make_model(shape, out_dir, dtype, device):
    from transformers import AutoConfig, AutoModelForCausalLM
    kw = dict(SHAPES[shape])
    model_type = kw.pop("model_type")
    config = AutoConfig.for_model(model_type, rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=None,
                                  pad_token_id=None, **kw)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, torch_dtype=dtype, attn_implementation="sdpa")
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    return model


def bench_hf(model, batch, prompt_len, new_tokens, repeats, device):
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1234 + batch)
    ids = torch.randint(3, vocab, (batch, prompt_len), generator=g).to(device)
    mask = torch.ones_like(ids)
    kw = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
              min_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=mask, **dict(kw, max_new_tokens=4, min_new_tokens=4))
        best = float("inf")
        for r in range(repeats):
            torch.manual_seed(r)
            sync()
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, **kw)
            sync()
            best = min(best, time.perf_counter() - t0)
    generated = (out.shape[1] - prompt_len) * batch
    return dict(seconds=best, generated_tokens=generated, tokens_per_s=generated / best)


def bench_scorch(binary, model_dir, batches, args, extra=()):
    cmd = [binary, "--model", model_dir, "--batch", ",".join(map(str, batches)), "--prompt-len", str(args.prompt_len),
           "--new-tokens", str(args.new_tokens), "--threads", str(args.threads), "--device", args.device,
           "--repeats", str(args.repeats)] + (["--dtype", args.dtype] if args.dtype else []) + list(extra)
    out = subprocess.run(cmd, capture_output=True, text=True)
    # Warnings (a CUDA-graph capture that fell back to eager steps, say) must not go unseen.
    notes = [l for l in out.stderr.splitlines() if l.strip() and "Writing model shards" not in l]
    for line in notes[:6]:
        print(f"# [stderr of {' '.join(extra) or 'default'}] {line[:200]}", flush=True)
    if out.returncode != 0:
        raise RuntimeError(f"scorch_bench_generate {' '.join(extra)} exited {out.returncode}")
    return {r["batch"]: r for r in (json.loads(l) for l in out.stdout.splitlines() if l.startswith("{"))}


def try_bench_scorch(binary, model_dir, batches, args, extra=()):
    """bench_scorch for the optional variants of a GPU run: a failure (an unchecked kernel that
    crashes, say) is printed and gives None, so the rest of the one device run still reports."""
    try:
        return bench_scorch(binary, model_dir, batches, args, extra)
    except RuntimeError as e:
        print(f"# FAILED: {e}", flush=True)
        return None


def bandwidth_bound(model, batch, prompt_len, new_tokens, dtype_bytes):
    """Tokens/s if every decode step only had to read the weights once and the KV cache once,
    at the GPU's measured copy bandwidth."""
    n = 256 * 1024 * 1024
    a = torch.empty(n, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    torch.cuda.synchronize()
    bandwidth = 10 * 2 * a.numel() * 4 / (time.perf_counter() - t0)  # read + write bytes/s
    c = model.config
    weight_bytes = sum(p.numel() for p in model.parameters()) * dtype_bytes
    head_dim = c.hidden_size // c.num_attention_heads
    avg_len = prompt_len + new_tokens / 2
    kv_bytes = c.num_hidden_layers * 2 * c.num_key_value_heads * head_dim * dtype_bytes * batch * avg_len
    step_s = (weight_bytes + kv_bytes) / bandwidth
    return dict(bandwidth_gbs=bandwidth / 1e9, tokens_per_s=batch / step_s)


def short_kernel_name(name, width=100):
    """A CUDA kernel's demangled name without 'void ' and its argument list, cut to `width`."""
    if name.startswith("void ") and name.endswith(")"):
        name, depth = name[5:], 0
        for i in range(len(name) - 1, -1, -1):  # the '(' that matches the final ')'
            depth += (name[i] == ")") - (name[i] == "(")
            if depth == 0:
                name = name[:i] if i > 0 else name
                break
    return name if len(name) <= width else name[:width - 3] + "..."


def print_kernel_profile(batch, prof, timed, label=""):
    """One decode step's device time by kernel (--kernel-profile), beside the step's wall time from the
    timed run: what the device is busy with, and how much of a step it idles."""
    if "kernels" not in prof or prof["device_busy_us_per_step"] <= 0:
        print(f"\n# batch {batch}, {label}: no kernel profile (no decode steps between the two profiled runs, "
              f"or the profiler recorded no device activity)")
        return
    wall_us = 1e6 * timed["decode_s"] / max(timed["decode_steps"], 1)
    busy = prof["device_busy_us_per_step"]
    print(f"\n# batch {batch}{', ' + label if label else ''}: one decode step on the device (CUPTI kernel times; {busy:.1f} us busy of a "
          f"{wall_us:.1f} us step in the timed run, {100 * max(wall_us - busy, 0) / wall_us:.1f}% idle)")
    print(f"{'us/step':>9} {'% busy':>7} {'calls':>6}  kernel")
    for k in prof["kernels"]:
        print(f"{k['us_per_step']:>9.1f} {100 * k['us_per_step'] / busy:>6.1f}% {k['calls_per_step']:>6.1f}  "
              f"{short_kernel_name(k['name'])}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("SCORCH_BUILD_DIR", "build"))
    ap.add_argument("--shape", default="small", choices=sorted(SHAPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="", help="scorch load dtype (default: as stored = the HF model's)")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--stop-every", type=int, default=50, help="compaction table: every K-th id stops (0 = skip)")
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    binary = os.path.join(args.build_dir, "scorch_bench_generate")
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: build it with `ninja -C {args.build_dir} scorch_bench_generate`")
    batches = [int(b) for b in args.batches.split(",")]
    torch_dtype = {"": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16,
                   "float16": torch.float16}[args.dtype]
    dev_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {args.threads} threads"

    with tempfile.TemporaryDirectory(prefix="scorch-bench-generate-") as tmp:
        model = make_model(args.shape, tmp, torch_dtype, args.device)
        ours = bench_scorch(binary, tmp, batches, args)  # decode steps "auto": CUDA graphs on CUDA
        # On CUDA also the eager dynamic steps, to show what the graphs bring.
        eager = try_bench_scorch(binary, tmp, batches, args, ["--decode", "dynamic"]) if args.device == "cuda" else None
        # On CUDA also the graph steps with scorch's fused decode attention kernel (off by default until
        # measured) and without lookahead (each step waiting for the host's stop rules).
        fused = try_bench_scorch(binary, tmp, batches, args, ["--fused-attention"]) if args.device == "cuda" else None
        serial = try_bench_scorch(binary, tmp, batches, args, ["--no-lookahead"]) if args.device == "cuda" else None
        print(f"# generate: {args.shape} random model, {args.prompt_len} prompt + {args.new_tokens} new tokens, "
              f"temperature 1, {dev_name}, dtype {str(torch_dtype).replace('torch.', '')}, torch {torch.__version__}")
        head = f"{'batch':>5} {'scorch tok/s':>13} {'HF generate tok/s':>18} {'speedup':>8}"
        if args.device == "cuda":
            head += f" {'BW bound tok/s':>15} {'% of bound':>10} {'eager tok/s':>12} {'graphs vs eager':>16} {'captures':>9}"
        print(head)
        bounds = {}
        for b in batches:
            hf = None if args.skip_hf else bench_hf(model, b, args.prompt_len, args.new_tokens, args.repeats, args.device)
            s = ours[b]["tokens_per_s"]
            line = f"{b:>5} {s:>13.1f} {hf['tokens_per_s'] if hf else float('nan'):>18.1f} " \
                   f"{(s / hf['tokens_per_s']) if hf else float('nan'):>7.2f}x"
            if args.device == "cuda":
                bound = bandwidth_bound(model, b, args.prompt_len, args.new_tokens, torch.finfo(torch_dtype).bits // 8)
                line += f" {bound['tokens_per_s']:>15.1f} {100 * s / bound['tokens_per_s']:>9.1f}%"
                e = eager[b]["tokens_per_s"] if eager else float("nan")
                line += f" {e:>12.1f} {s / e:>15.2f}x {ours[b].get('graph_captures', 0):>9}"
                bounds[b] = bound["tokens_per_s"]
            print(line, flush=True)

        if args.device == "cuda":
            print("\n# CUDA-graph step variants: default (lookahead, SDPA attention), without lookahead, and with "
                  "scorch's fused decode attention kernel")
            print(f"{'batch':>5} {'default tok/s':>14} {'no-lookahead tok/s':>19} {'lookahead gain':>15} "
                  f"{'fused-attn tok/s':>17} {'% of bound':>10} {'vs SDPA':>8}")
            for b in batches:
                nan = float("nan")
                d = ours[b]["tokens_per_s"]
                n = serial[b]["tokens_per_s"] if serial else nan
                f_ = fused[b]["tokens_per_s"] if fused else nan
                print(f"{b:>5} {d:>14.1f} {n:>19.1f} {d / n:>14.2f}x {f_:>17.1f} {100 * f_ / bounds[b]:>9.1f}% "
                      f"{f_ / d:>7.2f}x", flush=True)

        if args.device == "cuda":
            # Where a graph step goes: the device is waited for after each part (slower in total).
            prof = try_bench_scorch(binary, tmp, batches, args, ["--profile-steps"])
            ops = try_bench_scorch(binary, tmp, batches, args,  # later flags win: a short eager static run
                                   ["--count-ops", "--decode", "static", "--new-tokens", "16", "--repeats", "1"])
            print("\n# one decode step in parts (CUDA graphs; device waited for after each part), and the "
                  "ops an eager static step dispatches (what a graph replays)")
            print(f"{'batch':>5} {'forward us':>11} {'sample us':>10} {'host us':>8} {'compute ops':>12}")
            for b in batches:
                nan = float("nan")
                r = prof[b] if prof else dict(step_forward_us=nan, step_sample_us=nan, step_host_us=nan)
                print(f"{b:>5} {r['step_forward_us']:>11.1f} {r['step_sample_us']:>10.1f} {r['step_host_us']:>8.1f} "
                      f"{ops[b]['compute_ops_per_step'] if ops else nan:>12.1f}", flush=True)

        if args.device == "cuda":
            # Where a steady step's device time goes, per kernel (Kineto/CUPTI; no waits inserted).
            for label, extra, timed in (("SDPA attention", [], ours), ("fused decode attention", ["--fused-attention"], fused)):
                kp = try_bench_scorch(binary, tmp, batches, args, extra + ["--kernel-profile", "12", "--repeats", "1"])
                for b in batches:
                    if kp and timed:
                        print_kernel_profile(b, kp[b], timed[b], label)

        if args.stop_every > 0:
            b = max(batches)
            extra = ["--stop-every", str(args.stop_every)]
            with_c = bench_scorch(binary, tmp, [b], args, extra)[b]
            without = bench_scorch(binary, tmp, [b], args, extra + ["--no-compact"])[b]
            print(f"\n# finished rows: dropped (compaction) vs sitting out masked; batch {b}, every "
                  f"{args.stop_every}th id stops a sample (varied lengths)")
            print(f"{'mode':>10} {'tok/s':>9} {'seconds':>8} {'row-steps':>10} {'compactions':>12}")
            for name, r in (("compact", with_c), ("masked", without)):
                print(f"{name:>10} {r['tokens_per_s']:>9.1f} {r['seconds']:>8.3f} {r['row_steps']:>10} {r['compactions']:>12}")
            print(f"compaction speedup: {without['seconds'] / with_c['seconds']:.2f}x")


if __name__ == "__main__":
    main()
