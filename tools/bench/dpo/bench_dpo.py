#!/usr/bin/env python3
"""DPO step throughput and peak memory: `scorch train` (trainer: dpo, sigmoid loss, live reference
model) next to an equivalent eager PyTorch loop (transformers LlamaForCausalLM policy + a frozen
copy as reference, chosen and rejected in one batch, log-softmax gather, the sigmoid loss, AdamW)
on the same weights, pairs, batch shapes and thread count, in the same run.

    tools/bench/dpo/bench_dpo.py [--build-dir build] [--threads 2] [--steps 10] [--batch 16]
                                 [--device cpu|cuda] [--dtype float32|bfloat16] [--models quickstart,small]

Throughput counts the real tokens of the 2B rows (prompt‖chosen and prompt‖rejected) per second of
optimizer-step time (reference forward included on both sides), median over the steps after two
warm-up steps. Peak memory: CPU = the process's max RSS (includes ~0.4-1 GB of LibTorch/torch
libraries on both sides); CUDA = peak allocated device memory (PyTorch: torch.cuda.max_memory_allocated;
scorch: not measured, shown as '-')."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import peak_rss_mb, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TOKENIZER = os.path.join(ROOT, "configs", "quickstart", "tokenizer.model")

MODELS = {
    "quickstart": ("quickstart (0.85M)", json.load(open(os.path.join(ROOT, "configs", "quickstart", "model_config.json")))),
    "small": ("small (19M)", {"model_type": "llama", "vocab_size": 512, "hidden_size": 512, "intermediate_size": 1536,
                              "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 4,
                              "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                              "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}),
    "medium": ("medium (0.1B)", {"model_type": "llama", "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048,
                                 "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4,
                                 "max_position_embeddings": 1024, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                                 "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}),
}

BASELINE = r'''
import copy, json, sys, time, statistics, torch, sentencepiece, transformers
import torch.nn.functional as F
model_dir, data, threads, steps, batch, device, dtype = sys.argv[1:8]
threads, steps, batch = int(threads), int(steps), int(batch)
dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
torch.set_num_threads(threads); torch.manual_seed(0)
sp = sentencepiece.SentencePieceProcessor(model_file=model_dir + "/tokenizer.model")
pairs = []
for line in open(data):  # the `plain` chat template: <s>User: P\nAssistant: C</s>, targets C and </s>
    r = json.loads(line)
    p = [1] + sp.encode("User: " + r["prompt"] + "\n") + sp.encode("Assistant: ")
    pairs.append((p, sp.encode(r["chosen"]) + [2], sp.encode(r["rejected"]) + [2]))
policy = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).to(device)
reference = copy.deepcopy(policy).eval().requires_grad_(False)
policy.train()
opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=0.0)
beta = 0.1
def seq_logps(model, ids, labels):
    logits = model(input_ids=ids).logits[:, :-1]
    target = labels[:, 1:]
    mask = target != -100
    lp = torch.gather(logits.float().log_softmax(-1), 2, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (lp * mask).sum(-1)
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
times, tokens = [], []
for step in range(steps):
    chunk = pairs[step * batch:(step + 1) * batch]
    rows = [(p + c, [-100] * len(p) + c) for p, c, _ in chunk] + [(p + r, [-100] * len(p) + r) for p, _, r in chunk]
    T = max(len(x) for x, _ in rows)
    ids = torch.tensor([x + [3] * (T - len(x)) for x, _ in rows], device=device)
    labels = torch.tensor([y + [-100] * (T - len(y)) for _, y in rows], device=device)
    sync(); start = time.perf_counter()
    with torch.no_grad():
        ref = seq_logps(reference, ids, labels)
    logps = seq_logps(policy, ids, labels)
    h = (logps[:batch] - ref[:batch]) - (logps[batch:] - ref[batch:])
    loss = -F.logsigmoid(beta * h).mean()
    loss.backward(); torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0); opt.step(); opt.zero_grad(set_to_none=True)
    sync(); times.append(time.perf_counter() - start); tokens.append(sum(len(x) for x, _ in rows))
peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0
print(json.dumps({"tok_s": statistics.median([t / s for t, s in zip(tokens[2:], times[2:])]), "peak_mb": peak}))
'''




def make_pairs(src, dst):
    """Arithmetic preference pairs: chosen = the worked solution, rejected = a wrong final answer."""
    with open(dst, "w") as out:
        for line in open(src):
            r = json.loads(line)
            good, ans = r["completion"], str(r["answer"])
            i = good.rfind(ans)
            bad = good[:i] + ans + "1" + good[i + len(ans):]
            out.write(json.dumps({"prompt": r["prompt"], "chosen": good, "rejected": bad}) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16, help="pairs per step (2x rows)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--models", default="quickstart,small")
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch + transformers for the baseline")
    a = ap.parse_args()
    scorch = os.path.join(a.build_dir, "scorch")
    mem = "MB (max RSS)" if a.device == "cpu" else "MB (peak alloc)"
    print(f"DPO step throughput, {a.device} {a.dtype}, {a.threads} threads, {a.batch} pairs/step, {a.steps} steps "
          f"(median after 2 warm-up), live reference model on both sides")
    print(f"{'model':<20} {'scorch tok/s':>13} {'pytorch tok/s':>14} {'ratio':>6} {'scorch ' + mem:>22} {'pytorch ' + mem:>23}")
    for key in a.models.split(","):
        name, cfg = MODELS[key]
        with tempfile.TemporaryDirectory() as tmp:
            json.dump(cfg, open(f"{tmp}/config.json", "w"))
            run([scorch, "init-model", "--config", f"{tmp}/config.json", "--out", f"{tmp}/model", "--tokenizer", TOKENIZER])
            run([scorch, "make-data", "--task", "arith", "--n", str(a.batch * a.steps), "--seed", "5", "--out", f"{tmp}/arith.jsonl"])
            make_pairs(f"{tmp}/arith.jsonl", f"{tmp}/pairs.jsonl")
            with open(f"{tmp}/job.yaml", "w") as f:
                f.write(f"trainer: dpo\nmodel: {{path: {tmp}/model, device: {a.device}, dtype: {a.dtype}}}\n"
                        f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
                        f"data: {{train: {tmp}/pairs.jsonl, shuffle: false}}\n"
                        f"train: {{max_steps: {a.steps}, micro_batch_size: {a.batch}, threads: {a.threads}}}\n"
                        f"optim: {{learning_rate: 1.0e-4}}\ndpo: {{beta: 0.1, loss_type: sigmoid, reference: live}}\n"
                        f"checkpoint: {{export_final: false, save_every: 0}}\nlog: {{every: 1, level: warn, progress: false}}\n")
            _, ours_mb = peak_rss_mb([scorch, "train", f"{tmp}/job.yaml", "--run-dir", f"{tmp}/run"])
            metrics = [json.loads(l) for l in open(f"{tmp}/run/metrics.jsonl")][2:]
            ours = statistics.median(m["train/pair_tokens"] / m["time/step"] for m in metrics)
            out, theirs_rss = peak_rss_mb([a.python, "-c", BASELINE, f"{tmp}/model", f"{tmp}/pairs.jsonl",
                                           str(a.threads), str(a.steps), str(a.batch), a.device, a.dtype])
            res = json.loads(out.strip().splitlines()[-1])
            ours_mem = f"{ours_mb:.0f}" if a.device == "cpu" else "-"
            theirs_mem = theirs_rss if a.device == "cpu" else res["peak_mb"]
            print(f"{name:<20} {ours:>13.0f} {res['tok_s']:>14.0f} {ours / res['tok_s']:>6.2f} {ours_mem:>22} {theirs_mem:>23.0f}")


if __name__ == "__main__":
    main()
