#!/usr/bin/env python3
"""Data-parallel SFT on CPU (Gloo over loopback): the same global batch as 1 process with T threads
and as N processes (tools/launch) with T/N threads each, with and without ZeRO-1, in the same run.

    tools/bench/dist/bench_dist.py [--build-dir build] [--threads 2] [--steps 10]

Prints per configuration the median optimizer-step time after two warm-up steps, the median time
of the bucketed gradient all-reduce (metric time/grad_allreduce) and its share of the step — the
number that decides whether overlapping the all-reduce with backward would pay."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run(cmd, env=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-3000:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16, help="global samples per step")
    a = ap.parse_args()
    scorch = os.path.join(a.build_dir, "scorch")
    tok = os.path.join(ROOT, "configs", "quickstart", "tokenizer.model")
    with tempfile.TemporaryDirectory(prefix="scorch-bench-dist-") as d:
        run([scorch, "make-data", "--task", "arith", "--n", str(a.batch * (a.steps + 1)), "--seed", "1", "--out", f"{d}/train.jsonl"])
        run([scorch, "init-model", "--config", os.path.join(ROOT, "configs", "quickstart", "model_config.json"),
             "--out", f"{d}/base", "--seed", "0", "--tokenizer", tok])
        with open(f"{d}/job.yaml", "w") as f:
            f.write(f"trainer: sft\nmodel: {{path: {d}/base}}\ntokenizer: {{path: {tok}, chat_template: plain}}\n"
                    f"data: {{train: {d}/train.jsonl, max_length: 192}}\noptim: {{learning_rate: 1.0e-3}}\n"
                    f"checkpoint: {{save_every: 0, export_final: false}}\nlog: {{level: warn, progress: false}}\n")
        per_rank = max(1, a.threads // 2)
        configs = [("1 process", 1, False, a.threads), ("1 process", 1, False, per_rank),
                   ("2 ranks", 2, False, per_rank), ("2 ranks, ZeRO-1", 2, True, per_rank)]
        rows = []
        for name, ranks, zero, threads in configs:
            sets = ["--set", f"train.max_steps={a.steps}", "--set", f"train.micro_batch_size={a.batch // ranks}",
                    "--set", f"train.threads={threads}", "--set", f"dist.zero1={'true' if zero else 'false'}"]
            cmd = [scorch, "train", f"{d}/job.yaml", "--run-dir", f"{d}/run{len(rows)}"] + sets
            if ranks > 1:
                cmd = [sys.executable, os.path.join(ROOT, "tools", "launch"), "--nproc-per-node", str(ranks), "--"] + cmd
            run(cmd, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
            lines = [json.loads(l) for l in open(f"{d}/run{len(rows)}/metrics.jsonl")][2:]
            step = statistics.median(m["time/step"] for m in lines)
            comm = statistics.median(m.get("time/grad_allreduce", 0.0) for m in lines)
            tok_s = statistics.median(m["num_tokens"] for m in lines) / step
            rows.append((name, ranks, threads, step, comm, tok_s))
        base = rows[0][3]
        print(f"data-parallel SFT, quickstart model (0.85M), global batch {a.batch}, {a.steps} steps (median after 2 warm-up)")
        print(f"{'configuration':<18} {'ranks':>5} {'thr/rank':>8} {'step s':>8} {'allreduce s':>11} {'share':>6} {'tok/s':>8} {'vs 1 proc':>9}")
        for name, ranks, threads, step, comm, tok_s in rows:
            print(f"{name:<18} {ranks:>5} {threads:>8} {step:>8.3f} {comm:>11.4f} {comm / step:>6.1%} {tok_s:>8.0f} {base / step:>8.2f}x")


if __name__ == "__main__":
    main()
