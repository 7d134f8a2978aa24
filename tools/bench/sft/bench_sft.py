#!/usr/bin/env python3
"""SFT step throughput and peak memory on CPU: `scorch train` (trainer: sft) next to an equivalent
eager PyTorch loop (transformers LlamaForCausalLM, AdamW, the same batch shapes and masked loss) on
the same model weights, same thread count, in the same run.

    tools/bench/sft/bench_sft.py [--build-dir build] [--threads 2] [--steps 12] [--set KEY=VALUE ...]
    tools/bench/sft/bench_sft.py --device cuda --models qwen2.5-0.5b --batch 16   (tools/bench/sft/gpu.sh)

Throughput counts trained (completion) tokens per second of optimizer-step time, median over the
steps after two warm-up steps. Peak memory is the process's max RSS (includes ~0.4 GB of LibTorch /
torch libraries on both sides). On CUDA both sides run bf16 weights (scorch: fp32 AdamW state and
master weights; torch.optim.AdamW: bf16 state), peak memory is not compared, and MFU is
6 · parameters · trained tokens/s over --peak-tflops (989, H100 SXM bf16 dense) — a lower bound,
since prompt tokens also cost FLOPs but are not counted."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import QWEN2_5_0_5B, peak_rss_mb, run  # noqa: E402
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TOKENIZER = os.path.join(ROOT, "configs", "quickstart", "tokenizer.model")

MODELS = {
    "quickstart (0.85M)": json.load(open(os.path.join(ROOT, "configs", "quickstart", "model_config.json"))),
    "small (19M)": {"model_type": "llama", "vocab_size": 512, "hidden_size": 512, "intermediate_size": 1536,
                    "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
                    "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                    "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2},
    "qwen2.5-0.5b": QWEN2_5_0_5B,
}

BASELINE = r'''
import json, sys, time, statistics, torch, sentencepiece, transformers
model_dir, data, threads, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
dtype = torch.bfloat16 if device == "cuda" else torch.float32
torch.set_num_threads(threads); torch.manual_seed(0)
sp = sentencepiece.SentencePieceProcessor(model_file=model_dir + "/tokenizer.model")
rows = [json.loads(l) for l in open(data)]
samples = []
for r in rows:  # the `plain` chat template: <s>User: P\nAssistant: C</s>, loss on C and </s>
    p = [1] + sp.encode("User: " + r["prompt"] + "\n") + sp.encode("Assistant: ")
    c = sp.encode(r["completion"]) + [2]
    samples.append((p + c, [-100] * len(p) + c))
model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).to(device)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
times, tokens = [], []
for step in range(steps):
    chunk = samples[step * batch:(step + 1) * batch]
    T = max(len(s[0]) for s in chunk)
    ids = torch.tensor([s[0] + [3] * (T - len(s[0])) for s in chunk], device=device)
    labels = torch.tensor([s[1] + [-100] * (T - len(s[1])) for s in chunk], device=device)
    if device == "cuda": torch.cuda.synchronize()
    start = time.perf_counter()
    logits = model(input_ids=ids).logits[:, :-1].float()
    target = labels[:, 1:]
    n = (target != -100).sum()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100, reduction="sum") / n
    loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad(set_to_none=True)
    if device == "cuda": torch.cuda.synchronize()
    times.append(time.perf_counter() - start); tokens.append(int(n))
print(json.dumps({"tok_s": statistics.median([t / s for t, s in zip(tokens[2:], times[2:])]),
                  "params": sum(p.numel() for p in model.parameters())}))
'''




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--models", default="quickstart,small", help="comma-separated: " + ",".join(MODELS))
    ap.add_argument("--python", default=sys.executable, help="the interpreter with torch + transformers")
    ap.add_argument("--peak-tflops", type=float, default=989.0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for scorch's side, e.g. model.fused_training_ops=false (repeatable)")
    a = ap.parse_args()
    scorch = os.path.join(a.build_dir, "scorch")
    cuda = a.device == "cuda"
    print(f"SFT step throughput, {'CUDA bf16' if cuda else 'CPU fp32'}, {a.threads} threads, micro-batch {a.batch}, "
          f"{a.steps} steps (median after 2 warm-up)" + "".join(f", --set {kv}" for kv in a.set))
    if cuda:
        print(f"{'model':<20} {'scorch tok/s':>13} {'pytorch tok/s':>14} {'ratio':>6} {'scorch MFU':>11} {'pytorch MFU':>12}")
    else:
        print(f"{'model':<20} {'scorch tok/s':>13} {'pytorch tok/s':>14} {'ratio':>6} {'scorch MB':>10} {'pytorch MB':>11}")
    aliases = {"quickstart": "quickstart (0.85M)", "small": "small (19M)"}
    for key in a.models.split(","):
        name = aliases.get(key, key)
        if name not in MODELS:
            sys.exit(f"unknown model '{key}': choose from quickstart, small, qwen2.5-0.5b")
        cfg = MODELS[name]
        with tempfile.TemporaryDirectory() as tmp:
            json.dump(cfg, open(f"{tmp}/config.json", "w"))
            run([scorch, "init-model", "--config", f"{tmp}/config.json", "--out", f"{tmp}/model", "--tokenizer", TOKENIZER])
            run([scorch, "make-data", "--task", "arith", "--n", str(a.batch * a.steps), "--seed", "5", "--out", f"{tmp}/train.jsonl"])
            with open(f"{tmp}/job.yaml", "w") as f:
                f.write(f"trainer: sft\nmodel: {{path: {tmp}/model, device: {a.device}}}\n"
                        f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
                        f"data: {{train: {tmp}/train.jsonl, shuffle: false}}\n"
                        f"train: {{max_steps: {a.steps}, micro_batch_size: {a.batch}, threads: {a.threads}}}\n"
                        f"optim: {{learning_rate: 1.0e-3}}\ncheckpoint: {{export_final: false, save_every: 0}}\n"
                        f"log: {{every: 1, level: warn, progress: false}}\n")
            sets = [arg for kv in a.set for arg in ("--set", kv)]
            _, ours_mb = peak_rss_mb([scorch, "train", f"{tmp}/job.yaml", "--run-dir", f"{tmp}/run"] + sets)
            metrics = [json.loads(l) for l in open(f"{tmp}/run/metrics.jsonl")][2:]
            ours = statistics.median(m["num_tokens"] / m["time/step"] for m in metrics)
            out, theirs_mb = peak_rss_mb([a.python, "-c", BASELINE, f"{tmp}/model", f"{tmp}/train.jsonl",
                                          str(a.threads), str(a.steps), str(a.batch), a.device])
            result = json.loads(out.strip().splitlines()[-1])
            theirs = result["tok_s"]
            if cuda:
                mfu = lambda tok_s: 6 * result["params"] * tok_s / (a.peak_tflops * 1e12)
                print(f"{name:<20} {ours:>13.0f} {theirs:>14.0f} {ours / theirs:>6.2f} {mfu(ours):>11.1%} {mfu(theirs):>12.1%}")
            else:
                print(f"{name:<20} {ours:>13.0f} {theirs:>14.0f} {ours / theirs:>6.2f} {ours_mb:>10.0f} {theirs_mb:>11.0f}")


if __name__ == "__main__":
    main()
