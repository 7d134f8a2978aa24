#!/usr/bin/env python3
"""Full fine-tuning vs LoRA in one run, on the same random model: optimizer-state and checkpoint
size, peak RSS, and the SFT and GRPO step times of `scorch train` (CPU by default).

    tools/bench/lora/bench_lora.py [--build-dir build] [--shape quickstart|qwen2.5-0.5b] [--layers N]
        [--r 16] [--steps 4] [--threads 2] [--sft-batch 4] [--seq 128] [--prompts 2] [--G 4] [--completion 32]

Each side trains the same steps from the same weights and data: full = every weight in AdamW;
LoRA = r, lora_alpha 2r, on all seven linear modules (all-linear), base frozen. Step times are the
median of steps 2..N (time/step from metrics.jsonl; GRPO also split into generation / training).
Sizes are the last checkpoint's files: model.safetensors (full: the weights; LoRA: the adapter)
and optimizer.safetensors (AdamW moments). --layers N keeps the shape's widths with N layers (for
a machine without the memory for the whole model; per-layer numbers scale linearly)."""
import argparse
import json
import os
import statistics
import sys
import tempfile

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


if __name__ == "__main__":
    main()
