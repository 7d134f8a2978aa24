#!/usr/bin/env python3
"""Peak memory and time of one loss + backward through the LM head, four ways, in the same run:

  eager           logits = h @ W.T; log_softmax(logits.float()); gather      (TRL's selective_log_softmax)
  token_logprobs  logits = h @ W.T; torch.ops.scorch.token_logprobs(logits, targets)
  fused           torch.ops.scorch.lm_head_logprobs(h, W, targets)            (never holds [N, V] logits;
                  the backward recomputes each chunk's logits: 4 GEMMs in all)
  fused_loss      torch.ops.scorch.lm_head_logprob_loss(h, W, targets, -1)   (the same loss differentiated
                  in the forward, what the trainers run: 3 GEMMs, 2 with a frozen weight)

at Qwen2.5-0.5B's LM-head shape (H 896, V 151,936) and Llama 3's (H 2048, V 128,256), the loss being
-sum(logp), backward to h and W (both require grad; with --frozen-weight W requires none, as LoRA's
frozen base, and the fused op saves E = softmax @ W in the forward instead of recomputing).

Peak extra memory = the most memory held during the step beyond the inputs (h, W, targets): it
includes the gradients of h and W, which every method must produce (W's alone is V x H x 4 bytes in
fp32). CPU: each case runs in a fresh child process; the peak is the kernel's high-water mark of the
child's resident set (VmHWM, reset through /proc/self/clear_refs after the inputs are built) minus
its resident set at that point -- real memory, not an estimate. A case whose estimated peak exceeds
--max-gb is skipped and reported as such (the machine may be shared). CUDA: in-process,
torch.cuda.max_memory_allocated() minus the memory allocated before the step (allocator stats).

Time: the median of --iters steps after one warm-up step (CPU default: 1 step, no warm-up, for the
large shapes). On the CPU also the process's CPU time (user + sys) of that step: unlike wall time it
does not grow when other jobs share the cores (at --threads 1 it is the step's own work; with more
threads OpenMP's spin-waiting counts too). The fused op's effective TFLOP/s counts the model's 6 N V H FLOPs of forward +
backward (the recomputed forward GEMM is not counted) and 2 N V H for the forward alone.

  tools/bench/memory/bench_memory.py --device cpu [--tokens 4096 16384] [--shapes 896x151936 2048x128256]
  tools/bench/memory/bench_memory.py --device cuda --whole-model      (tools/bench/memory/gpu.sh)

--whole-model adds one SFT step of a Qwen2.5-0.5B-shaped random model (`scorch train`, trainer sft,
one packed row of --model-tokens tokens) with model.gradient_checkpointing off / on and the fused LM
head on / off (SCORCH_LM_HEAD=unfused; --lm-heads also recompute): peak memory (the process's max RSS on the CPU; on CUDA the
device memory in use, nvidia-smi polled every 0.1 s, above what was in use before) and step time.
Full fine-tuning's first step peaks in AdamW's step (weights + gradients + both moments, ~16 bytes a
parameter), which hides the activations at moderate lengths; --lora trains an r=16 adapter on the
frozen base instead, so the peak is the weights plus the forward's activations and the LM head.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from benchlib import QWEN2_5_0_5B, ROOT, TOKENIZER, run  # noqa: E402

METHODS = ("eager", "token_logprobs", "fused", "fused_loss")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--lib", default=os.environ.get("SCORCH_OPS_LIBRARY", os.path.join(ROOT, "build", "libscorch_ops.so")))
    p.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    p.add_argument("--shapes", nargs="*", default=["896x151936", "2048x128256"], help="HxV LM-head shapes")
    p.add_argument("--tokens", type=int, nargs="*", default=[4096, 16384])
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default=None, help="default: fp32 cpu, bf16 cuda")
    p.add_argument("--chunk", type=int, default=0, help="fused op's chunk (tokens; 0 = automatic)")
    p.add_argument("--iters", type=int, default=None, help="timed steps (default 1 on cpu, 10 on cuda)")
    p.add_argument("--max-gb", type=float, default=12.0, help="cpu: skip a case whose estimated peak exceeds this")
    p.add_argument("--tflops-shape", default="4096x131072", help="cuda: the fused op's TFLOP/s at this HxV (8192 tokens)")
    p.add_argument("--whole-model", action="store_true", help="also the whole-model SFT step table")
    p.add_argument("--model-tokens", type=int, default=4096)
    p.add_argument("--lora", action="store_true",
                   help="whole model with LoRA r=16 (base frozen): the peak is weights + activations, not AdamW state")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--lm-heads", nargs="*", default=["fused", "unfused"], choices=["fused", "recompute", "unfused"],
                   help="whole model: the LM head paths (SCORCH_LM_HEAD): fused = gradients in the forward "
                        "(the default path), recompute = lm_head_logprobs' recomputing backward, unfused = logits")
    p.add_argument("--no-checkpointing-on", action="store_true",
                   help="whole model: only gradient_checkpointing off")
    p.add_argument("--frozen-weight", action="store_true",
                   help="LM-head table: the weight needs no gradient (LoRA's frozen base): only grad_hidden")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args()


def step_fn(method, h, w, t, chunk):
    def step():
        h.grad = None
        w.grad = None
        if method == "fused_loss":
            coef = torch.full((h.shape[0],), -1.0, device=h.device)
            loss, _ = torch.ops.scorch.lm_head_logprob_loss(h, w, t, coef, 1.0, chunk, 0.0)
            loss.backward()
            return
        if method == "fused":
            logp, _ = torch.ops.scorch.lm_head_logprobs(h, w, t, 1.0, False, chunk, 0.0)
        else:
            logits = h @ w.t()
            if method == "eager":
                logp = torch.log_softmax(logits.float(), -1).gather(1, t[:, None]).squeeze(1)
            else:
                logp, _ = torch.ops.scorch.token_logprobs(logits, t, 1.0, False)
        (-logp.sum()).backward()
    return step


def inputs(n, hdim, v, dtype, device, frozen=False):
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(n, hdim, generator=g) * 0.5).to(dtype).to(device).requires_grad_()
    w = (torch.randn(v, hdim, generator=g) * 0.05).to(dtype).to(device).requires_grad_(not frozen)
    t = torch.randint(0, v, (n,), generator=g).to(device)
    return h, w, t


def proc_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field + " not in /proc/self/status")


def child(spec):
    """One CPU case in this (fresh) process: prints a JSON line with peak_extra and seconds."""
    a = json.loads(spec)
    torch.ops.load_library(a["lib"])
    if a["threads"] > 0:
        torch.set_num_threads(a["threads"])
    dtype = getattr(torch, a["dtype"])
    # Warm the libraries (BLAS, the op registrations) on a tiny case so that their one-off memory is
    # not counted.
    step_fn(a["method"], *inputs(8, a["h"], 97, dtype, "cpu", a.get("frozen", False)), a["chunk"])()
    h, w, t = inputs(a["n"], a["h"], a["v"], dtype, "cpu", a.get("frozen", False))
    step = step_fn(a["method"], h, w, t, a["chunk"])
    times = []
    cpu_times = []
    peak = 0
    for i in range(a["iters"]):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        before = proc_kb("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        peak = max(peak, (proc_kb("VmHWM") - before) * 1024)
        h.grad = None
        w.grad = None
    times.sort()
    cpu_times.sort()
    print(json.dumps({"peak_extra": peak, "seconds": times[len(times) // 2],
                      "cpu_seconds": cpu_times[len(cpu_times) // 2]}))


def estimated_peak(method, n, hdim, v, esize):
    """Rough upper bound in bytes (for skipping what the machine cannot hold)."""
    logits32 = n * v * 4
    grads = (n + v) * hdim * 4
    if method in ("fused", "fused_loss"):
        return 2 * min(n, max(1, (1 << 25) // v)) * v * 4 + grads
    if method == "token_logprobs":
        return 2 * n * v * esize + grads
    return 4 * logits32 + grads


def run_cpu_case(args, method, n, hdim, v):
    spec = json.dumps({"lib": args.lib, "method": method, "n": n, "h": hdim, "v": v, "dtype": args.dtype,
                       "chunk": args.chunk, "iters": args.iters, "threads": args.threads,
                       "frozen": args.frozen_weight})
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", spec], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_cuda_case(args, method, n, hdim, v):
    dtype = getattr(torch, args.dtype)
    h, w, t = inputs(n, hdim, v, dtype, "cuda", args.frozen_weight)
    step = step_fn(method, h, w, t, args.chunk)
    try:
        step()
        torch.cuda.synchronize()
        h.grad = None
        w.grad = None
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        times = []
        for _ in range(args.iters):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            step()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / 1e3)
        times.sort()
        return {"peak_extra": peak, "seconds": times[len(times) // 2]}
    except torch.cuda.OutOfMemoryError:
        return {"error": ["out of memory"]}
    finally:
        del h, w, t, step
        torch.cuda.empty_cache()


def gib(b):
    return f"{b / 2**30:.2f} GiB"


def lm_head_table(args):
    print(f"## LM head: one loss + backward{' to hidden only (frozen weight)' if args.frozen_weight else ''} "
          f"({args.device}, {args.dtype}, "
          f"{torch.get_num_threads() if args.device == 'cpu' else 1} thread(s){'' if args.device == 'cpu' else ' / GPU'})\n")
    cpu = args.device == "cpu"
    if cpu:  # CPU time (user + sys of the process) is robust to other jobs sharing the cores; wall time is not
        print("| H | V | tokens | fp32 logits | method | peak extra memory | / fp32 logits | time | / eager "
              "| CPU time | / eager |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    else:
        print("| H | V | tokens | fp32 logits | method | peak extra memory | / fp32 logits | time | / eager |")
        print("|---|---|---|---|---|---|---|---|---|")
    esize = torch.empty(0, dtype=getattr(torch, args.dtype)).element_size()
    for shape in args.shapes:
        hdim, v = (int(x) for x in shape.split("x"))
        for n in args.tokens:
            logits32 = n * v * 4
            eager_time = eager_cpu = None
            for method in args.methods:
                est = estimated_peak(method, n, hdim, v, esize)
                if args.device == "cpu" and est > args.max_gb * 2**30:
                    r = {"error": [f"skipped: estimated peak {gib(est)} > --max-gb {args.max_gb}"]}
                else:
                    r = (run_cpu_case if args.device == "cpu" else run_cuda_case)(args, method, n, hdim, v)
                if "error" in r:
                    print(f"| {hdim} | {v} | {n} | {gib(logits32)} | {method} | {' '.join(r['error'])} | | | |",
                          flush=True)
                    continue
                if method == "eager":
                    eager_time, eager_cpu = r["seconds"], r.get("cpu_seconds")
                ratio = f"{r['seconds'] / eager_time:.2f}x" if eager_time else "-"
                line = (f"| {hdim} | {v} | {n} | {gib(logits32)} | {method} | {gib(r['peak_extra'])} | "
                        f"{r['peak_extra'] / logits32:.3f} | {r['seconds']:.2f} s | {ratio} |")
                if cpu:
                    cpu_ratio = f"{r['cpu_seconds'] / eager_cpu:.2f}x" if eager_cpu else "-"
                    line += f" {r['cpu_seconds']:.2f} s | {cpu_ratio} |"
                print(line, flush=True)
    print()


def tflops_table(args):
    hdim, v = (int(x) for x in args.tflops_shape.split("x"))
    n = 8192
    dtype = getattr(torch, args.dtype)
    h, w, t = inputs(n, hdim, v, dtype, "cuda")

    def fwd():
        with torch.no_grad():
            torch.ops.scorch.lm_head_logprobs(h, w, t, 1.0, False, args.chunk, 0.0)

    step = step_fn("fused", h, w, t, args.chunk)
    step_loss = step_fn("fused_loss", h, w, t, args.chunk)
    rows = []
    for name, fn, flops in (("forward", fwd, 2 * n * v * hdim), ("forward + backward", step, 6 * n * v * hdim),
                            ("lm_head_logprob_loss forward + backward", step_loss, 6 * n * v * hdim)):
        fn()
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(args.iters):
            fn()
        e.record()
        torch.cuda.synchronize()
        sec = s.elapsed_time(e) / 1e3 / args.iters
        rows.append((name, sec, flops / sec / 1e12))
    print(f"## lm_head_logprobs effective TFLOP/s (H {hdim}, V {v}, {n} tokens, {args.dtype})\n")
    print("| pass | time | effective TFLOP/s |")
    print("|---|---|---|")
    for name, sec, tf in rows:
        print(f"| {name} | {sec * 1e3:.1f} ms | {tf:.0f} |")
    print()


def gpu_used_mib():
    """Device memory in use (MiB) as nvidia-smi reports it: the caching allocator's reservations."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[0]) if out.strip() else 0


def whole_model_table(args):
    scorch = os.path.join(args.build_dir, "scorch")
    n = args.model_tokens
    with tempfile.TemporaryDirectory(prefix="scorch-bench-memory-") as tmp:
        cfg = dict(QWEN2_5_0_5B, max_position_embeddings=max(4096, n))
        with open(os.path.join(tmp, "model_config.json"), "w") as f:
            json.dump(cfg, f)
        run([scorch, "init-model", "--config", os.path.join(tmp, "model_config.json"), "--out", os.path.join(tmp, "base"),
             "--tokenizer", TOKENIZER])
        # One sample cut to n tokens (truncation: right): a short prompt and a completion longer than n.
        with open(os.path.join(tmp, "train.jsonl"), "w") as f:
            f.write(json.dumps({"prompt": "Q:", "completion": " ".join(f"w{i % 97}" for i in range(n))}) + "\n")
        what = "LoRA r=16 all-linear, base frozen" if args.lora else "full fine-tuning"
        print(f"## Whole model: one SFT step, Qwen2.5-0.5B-shaped random model, {n} tokens, {what} ({args.device})\n")
        print("| gradient_checkpointing | LM head | peak memory | step time |")
        print("|---|---|---|---|")
        for ckpt in ((False,) if args.no_checkpointing_on else (False, True)):
            for head in args.lm_heads:
                run_dir = os.path.join(tmp, f"run-{ckpt}-{head}")
                with open(os.path.join(tmp, "job.yaml"), "w") as f:
                    f.write(f"trainer: sft\nseed: 1\nmodel: {{path: {tmp}/base, device: {args.device}, "
                            f"gradient_checkpointing: {str(ckpt).lower()}}}\n"
                            f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
                            f"data: {{train: {tmp}/train.jsonl, max_length: {n}, truncation: right}}\n"
                            f"train: {{max_steps: 1, micro_batch_size: 1, threads: {args.threads}}}\n"
                            "checkpoint: {save_every: 0, export_final: false}\nlog: {every: 1, level: warn}\n"
                            + ("lora: {enabled: true, r: 16, lora_alpha: 32, target_modules: all-linear}\n"
                               if args.lora else ""))
                env = dict(os.environ)
                env.pop("SCORCH_LM_HEAD", None)
                if head != "fused":
                    env["SCORCH_LM_HEAD"] = head
                code = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
                        "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(r.returncode)")
                t0 = time.perf_counter()
                proc = subprocess.Popen([sys.executable, "-c", code, scorch, "train", os.path.join(tmp, "job.yaml"),
                                         "--run-dir", run_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
                gpu_peak = 0
                gpu_base = gpu_used_mib() if args.device == "cuda" else 0
                while proc.poll() is None:
                    if args.device == "cuda":
                        gpu_peak = max(gpu_peak, gpu_used_mib() - gpu_base)
                    time.sleep(0.1)
                out, err = proc.communicate()
                r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
                wall = time.perf_counter() - t0
                if r.returncode != 0:
                    print(f"| {ckpt} | {head} | failed: "
                          f"{(r.stderr or r.stdout).strip().splitlines()[-1:]} | |", flush=True)
                    continue
                rss = int(r.stdout.strip().splitlines()[-1].split()[1]) * 1024
                metrics = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
                m = metrics[-1]
                peak = (f"{gpu_peak / 1024:.2f} GiB (GPU, nvidia-smi)" if args.device == "cuda"
                        else f"{gib(rss)} (max RSS)")
                step = m.get("time/step", wall)
                print(f"| {ckpt} | {head} | {peak} | {step:.1f} s |", flush=True)
        print()


def main():
    args = parse_args()
    if args.child:
        child(args.child)
        return
    args.dtype = args.dtype or ("float32" if args.device == "cpu" else "bfloat16")
    args.iters = args.iters or (1 if args.device == "cpu" else 10)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.ops.load_library(args.lib)
    print(f"tools/bench/memory/bench_memory.py {' '.join(sys.argv[1:])}  ({time.strftime('%Y-%m-%d')}, "
          f"{torch.cuda.get_device_name() if args.device == 'cuda' else f'{os.cpu_count()}-core CPU'})\n")
    lm_head_table(args)
    if args.device == "cuda":
        tflops_table(args)
    if args.whole_model:
        whole_model_table(args)


if __name__ == "__main__":
    main()
