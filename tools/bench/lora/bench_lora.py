#!/usr/bin/env python3
"""Full fine-tuning vs LoRA in one run, on the same random model: optimizer-state and checkpoint
size, peak RSS, and the SFT and GRPO step times of `scorch train` (CPU by default).

    tools/bench/lora/bench_lora.py [--build-dir build] [--shape quickstart|qwen2.5-0.5b] [--layers N]
        [--r 16] [--steps 4] [--threads 2] [--sft-batch 4] [--seq 128] [--prompts 2] [--G 4] [--completion 32]
        [--rollout]

Each side trains the same steps from the same weights and data: full = every weight in AdamW;
LoRA = r, lora_alpha 2r, on all seven linear modules (all-linear), base frozen. Step times are the
median of steps 2..N (time/step from metrics.jsonl; GRPO also split into generation / training).
Sizes are the last checkpoint's files: model.safetensors (full: the weights; LoRA: the adapter)
and optimizer.safetensors (AdamW moments). --layers N keeps the shape's widths with N layers (for
a machine without the memory for the whole model; per-layer numbers scale linearly).

--rollout adds the measurement behind the rollout engine's choice of unmerged adapters: the same
greedy generation (`scorch eval`, --prompts x --G rows, --completion new tokens) from the trained
LoRA export, once with the adapter unmerged (what GRPO's engine runs: two extra small GEMMs per
projection per step) and once from the merged model (`scorch export --merge`: what a merge-on-the-fly
engine would run), each as the time with --completion tokens minus the time with 1 token (model
loading cancels); plus the cost a merge-on-the-fly engine adds to every optimizer step: merging
(base + scaled BA for every adapted projection), timed in-process with torch at the same shape."""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import QUICKSTART, QWEN2_5_0_5B, TOKENIZER, peak_rss_mb, run  # noqa: E402

SHAPES = {"quickstart": QUICKSTART, "qwen2.5-0.5b": QWEN2_5_0_5B}


def job(d, trainer, a, lora):
    common = (f"model: {{path: {d}/model}}\ntokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
              f"optim: {{learning_rate: 1.0e-5}}\n"
              f"checkpoint: {{export_final: false, save_every: 0}}\nlog: {{every: 1, level: warn, progress: false, samples: 0}}\n")
    if lora:
        common += f"lora: {{enabled: true, r: {a.r}, lora_alpha: {2 * a.r}, target_modules: all-linear}}\n"
    if trainer == "sft":
        return (f"trainer: sft\n{common}data: {{train: {d}/train.jsonl, max_length: {a.seq}, shuffle: false}}\n"
                f"train: {{max_steps: {a.steps}, micro_batch_size: {a.sft_batch}, threads: {a.threads}}}\n")
    return (f"trainer: grpo\n{common}data: {{train: {d}/train.jsonl, shuffle: false}}\n"
            f"train: {{max_steps: {a.steps}, micro_batch_size: {a.prompts}, threads: {a.threads}}}\n"
            f"generation: {{temperature: 1.0, max_prompt_length: 128, max_completion_length: {a.completion}}}\n"
            f"grpo: {{num_generations: {a.G}, loss_type: dapo, beta: 0.04}}\nrewards: [{{name: math_answer}}]\n")


def measure(scorch, d, trainer, a, lora):
    name = f"{trainer}-{'lora' if lora else 'full'}"
    with open(f"{d}/{name}.yaml", "w") as f:
        f.write(job(d, trainer, a, lora))
    _, rss = peak_rss_mb([scorch, "train", f"{d}/{name}.yaml", "--run-dir", f"{d}/{name}"])
    ms = [json.loads(l) for l in open(f"{d}/{name}/metrics.jsonl")]
    rest = ms[1:] or ms
    med = lambda k: statistics.median(m.get(k, 0.0) for m in rest)
    ckpt = f"{d}/{name}/checkpoints/step-{a.steps:06d}"
    size = lambda f: os.path.getsize(os.path.join(ckpt, f)) / 2**20
    total = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt)) / 2**20
    out = {"step": med("time/step"), "gen": med("time/generation"), "train": med("time/training"),
           "weights_mb": size("model.safetensors"), "optimizer_mb": size("optimizer.safetensors"),
           "checkpoint_mb": total, "rss_mb": rss}
    run(["rm", "-rf", f"{d}/{name}"])  # keep the disk use of one run at a time
    return out


def eval_seconds(scorch, model, data, a, tokens):
    t0 = time.perf_counter()
    run([scorch, "eval", "--model", model, "--data", data, "--tokenizer", TOKENIZER, "--chat-template", "plain",
         "--max-new-tokens", str(tokens), "--temperature", "0", "--batch-size", str(a.prompts * a.G),
         "--limit", str(a.prompts * a.G), "--device", "cpu", "--decode-steps", "static"],
        env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
    return time.perf_counter() - t0


def rollout_merge(scorch, d, shape, a):
    """Greedy generation seconds, unmerged adapter vs merged model, and the per-step merge cost."""
    import torch
    name = "grpo-lora-export"
    cfg = job(d, "grpo", a, True).replace("export_final: false", "export_final: true").replace(
        f"max_steps: {a.steps}", "max_steps: 1")
    with open(f"{d}/{name}.yaml", "w") as f:
        f.write(cfg)
    run([scorch, "train", f"{d}/{name}.yaml", "--run-dir", f"{d}/{name}"])
    adapter = f"{d}/{name}/export"
    run([scorch, "export", "--model", adapter, "--merge", "--out", f"{d}/merged"])
    out = {}
    for label, model in (("unmerged", adapter), ("merged", f"{d}/merged")):
        times = []
        for _ in range(2):  # the better of two (the machine may be shared)
            times.append(eval_seconds(scorch, model, f"{d}/train.jsonl", a, a.completion) -
                         eval_seconds(scorch, model, f"{d}/train.jsonl", a, 1))
        out[label] = min(times)
    # Merge cost: W += scale * B @ A over the seven projections of every layer (fp32, in place).
    torch.set_num_threads(a.threads)
    H, I, L = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    hd = H // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * hd
    dims = [(H, H), (kv, H), (kv, H), (H, H), (I, H), (I, H), (H, I)]  # (out, in): q k v o gate up down
    ws = [torch.randn(o, i) for o, i in dims]
    ads = [(torch.randn(o, a.r), torch.randn(a.r, i)) for o, i in dims]
    t0 = time.perf_counter()
    for _ in range(L):
        for w, (b, aa) in zip(ws, ads):
            w.addmm_(b, aa, alpha=2.0)
    out["merge"] = time.perf_counter() - t0
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))), "build"))
    ap.add_argument("--shape", choices=sorted(SHAPES), default="quickstart")
    ap.add_argument("--layers", type=int, default=0, help="0 = the shape's own layer count")
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sft-batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--G", type=int, default=4)
    ap.add_argument("--completion", type=int, default=32)
    ap.add_argument("--trainers", default="sft,grpo")
    ap.add_argument("--rollout", action="store_true", help="also unmerged vs merged adapter generation")
    a = ap.parse_args()
    scorch = os.path.join(a.build_dir, "scorch")
    shape = dict(SHAPES[a.shape])
    if a.layers:
        shape["num_hidden_layers"] = a.layers
    with tempfile.TemporaryDirectory(prefix="scorch-bench-lora-") as d:
        json.dump(shape, open(f"{d}/config.json", "w"))
        run([scorch, "init-model", "--config", f"{d}/config.json", "--out", f"{d}/model", "--seed", "0", "--tokenizer", TOKENIZER])
        run([scorch, "make-data", "--task", "arith", "--n", str(max(64, a.sft_batch * a.steps)), "--seed", "4",
             "--out", f"{d}/train.jsonl"])
        results = {}
        for trainer in a.trainers.split(","):
            for lora in (False, True):
                results[(trainer, lora)] = measure(scorch, d, trainer, a, lora)
        rollout = rollout_merge(scorch, d, shape, a) if a.rollout else None
    print(f"full fine-tuning vs LoRA r={a.r} (all-linear), {a.shape} shape with {shape['num_hidden_layers']} layers, "
          f"CPU fp32, {a.threads} threads, median of steps 2..{a.steps}")
    print(f"{'run':<10} {'step s':>8} {'gen s':>7} {'train s':>8} {'weights MB':>11} {'optimizer MB':>13} "
          f"{'checkpoint MB':>14} {'peak RSS MB':>12}")
    for (trainer, lora), r in results.items():
        print(f"{trainer + (' lora' if lora else ' full'):<10} {r['step']:>8.3f} {r['gen']:>7.3f} {r['train']:>8.3f} "
              f"{r['weights_mb']:>11.2f} {r['optimizer_mb']:>13.2f} {r['checkpoint_mb']:>14.2f} {r['rss_mb']:>12.0f}")
    for trainer in a.trainers.split(","):
        f, l = results[(trainer, False)], results[(trainer, True)]
        print(f"{trainer}: LoRA step {f['step'] / l['step']:.2f}x faster, optimizer state {f['optimizer_mb'] / l['optimizer_mb']:.0f}x "
              f"smaller, checkpoint {f['checkpoint_mb'] / l['checkpoint_mb']:.0f}x smaller")
    if rollout:
        rows = a.prompts * a.G
        print(f"\nrollout engine, greedy generation of {rows} rows x {a.completion} tokens (static decode steps):")
        print(f"{'adapter':<22} {'generation s':>13} {'tok/s':>8}")
        for label in ("unmerged", "merged"):
            print(f"{label:<22} {rollout[label]:>13.3f} {rows * a.completion / rollout[label]:>8.1f}")
        print(f"{'merge per step (torch)':<22} {rollout['merge']:>13.3f}")
        print(f"merged + one merge per step = {rollout['merged'] + rollout['merge']:.3f} s vs unmerged "
              f"{rollout['unmerged']:.3f} s per rollout")


if __name__ == "__main__":
    main()
