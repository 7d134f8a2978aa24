#!/usr/bin/env python3
"""Time per GRPO step, split into generation / reward / training: `scorch train` (trainer: grpo)
next to a plain eager PyTorch implementation of the same step (transformers generate() with G
samples per prompt, the same rule-based reward, group advantages, the DAPO token-level loss,
AdamW) on the same initial weights, in the same run. TRL is not used: it is not installed here.

    tools/bench/grpo/bench_grpo.py [--build-dir build] [--shape quickstart|qwen2.5-0.5b] [--device cpu|cuda]
        [--steps 4] [--prompts 4] [--G 4] [--completion 64] [--prompt-pad 0] [--threads 2] [--set KEY=VALUE ...]

Both sides sample until EOS or --completion new tokens from a random-init model (so nearly every
completion runs to the limit), and report the median over the steps after the first (warm-up).
Tokens/s counts generated tokens per second of the whole step."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchlib import QWEN2_5_0_5B  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TOKENIZER = os.path.join(ROOT, "configs", "quickstart", "tokenizer.model")
SHAPES = {
    "quickstart": json.load(open(os.path.join(ROOT, "configs", "quickstart", "model_config.json"))),
    "qwen2.5-0.5b": QWEN2_5_0_5B,
}

BASELINE = r'''
import json, re, sys, time, statistics, torch, sentencepiece, transformers
model_dir, data, threads, steps, P, G, C, device, dtype = sys.argv[1:10]
threads, steps, P, G, C = int(threads), int(steps), int(P), int(G), int(C)
torch.set_num_threads(threads); torch.manual_seed(0)
dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
sp = sentencepiece.SentencePieceProcessor(model_file=model_dir + "/tokenizer.model")
rows = [json.loads(l) for l in open(data)]
model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dt).to(device)
opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
def sync():
    if device == "cuda": torch.cuda.synchronize()
def reward(text, answer):
    m = re.findall(r"\\boxed\{([^}]*)\}", text)
    return 1.0 if m and m[-1].strip() == str(answer) else 0.0
out = []
for step in range(steps):
    chunk = rows[step * P:(step + 1) * P]
    prompts = [[1] + sp.encode("User: " + r["prompt"] + "\n") + sp.encode("Assistant: ") for r in chunk]
    L = max(len(p) for p in prompts)
    ids = torch.tensor([[3] * (L - len(p)) + p for p in prompts], device=device)       # left padding for generate
    att = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in prompts], device=device)
    sync(); t0 = time.perf_counter()
    model.eval()
    with torch.no_grad():
        seq = model.generate(input_ids=ids, attention_mask=att, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             max_new_tokens=C, num_return_sequences=G, eos_token_id=2, pad_token_id=3)
    sync(); t1 = time.perf_counter()
    comp = seq[:, L:]
    ended = (comp == 2).int().cumsum(1)
    mask = (ended == 0) | ((ended == 1) & (comp == 2))                                   # up to and including EOS
    texts = [sp.decode([t for t, m in zip(row.tolist(), mk.tolist()) if m and t != 2]) for row, mk in zip(comp, mask)]
    r = torch.tensor([reward(t, chunk[i // G]["answer"]) for i, t in enumerate(texts)], device=device)
    sync(); t2 = time.perf_counter()
    g = r.view(-1, G)
    adv = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).view(-1)
    model.train()
    full_att = torch.cat([att.repeat_interleave(G, 0), mask.long()], 1)
    logits = model(input_ids=seq, attention_mask=full_att).logits[:, L - 1:-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, comp.unsqueeze(-1)).squeeze(-1)
    ratio = torch.exp(logp - logp.detach())
    loss = -(torch.min(ratio * adv[:, None], ratio.clamp(0.8, 1.28) * adv[:, None]) * mask).sum() / mask.sum().clamp(min=1)
    loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad(set_to_none=True)
    sync(); t3 = time.perf_counter()
    out.append({"gen": t1 - t0, "reward": t2 - t1, "train": t3 - t2, "step": t3 - t0, "tokens": int(mask.sum())})
rest = out[1:] or out
print(json.dumps({k: statistics.median(o[k] for o in rest) for k in ("gen", "reward", "train", "step", "tokens")}))
'''


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--python", default=sys.executable, help="the interpreter with torch + transformers")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="quickstart")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("--G", type=int, default=4)
    ap.add_argument("--completion", type=int, default=64)
    ap.add_argument("--prompt-pad", type=int, default=0, help="filler words (~4 tokens each) in every prompt, for long prompts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for scorch's side, e.g. model.fused_training_ops=false (repeatable)")
    a = ap.parse_args()
    dtype = "bfloat16" if a.device == "cuda" else "float32"
    scorch = os.path.join(a.build_dir, "scorch")
    with tempfile.TemporaryDirectory(prefix="scorch-bench-grpo-") as d:
        json.dump(SHAPES[a.shape], open(f"{d}/config.json", "w"))
        run([scorch, "init-model", "--config", f"{d}/config.json", "--out", f"{d}/model", "--seed", "0", "--tokenizer", TOKENIZER])
        run([scorch, "make-data", "--task", "arith", "--n", str(a.prompts * a.steps), "--seed", "4", "--out", f"{d}/train.jsonl"])
        if a.prompt_pad:  # longer prompts for both sides: filler words in the prompt text (~4 tokens each)
            rows = [json.loads(l) for l in open(f"{d}/train.jsonl")]
            with open(f"{d}/train.jsonl", "w") as f:
                for r in rows:
                    r["prompt"] = "pad " * a.prompt_pad + r["prompt"]
                    f.write(json.dumps(r) + "\n")
        with open(f"{d}/job.yaml", "w") as f:
            f.write(f"trainer: grpo\nmodel: {{path: {d}/model, device: {a.device}}}\n"
                    f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
                    f"data: {{train: {d}/train.jsonl, shuffle: false}}\n"
                    f"train: {{max_steps: {a.steps}, micro_batch_size: {a.prompts}, threads: {a.threads}}}\n"
                    f"optim: {{learning_rate: 1.0e-6}}\n"
                    f"generation: {{temperature: 1.0, max_prompt_length: {4 * a.prompt_pad + 128}, max_completion_length: {a.completion}}}\n"
                    f"grpo: {{num_generations: {a.G}, loss_type: dapo, epsilon_high: 0.28}}\n"
                    f"rewards: [{{name: math_answer}}]\n"
                    f"checkpoint: {{export_final: false, save_every: 0}}\nlog: {{every: 1, level: warn, progress: false, samples: 0}}\n")
        run([scorch, "train", f"{d}/job.yaml", "--run-dir", f"{d}/run"] + [arg for kv in a.set for arg in ("--set", kv)])
        ms = [json.loads(l) for l in open(f"{d}/run/metrics.jsonl")]
        rest = ms[1:] or ms
        med = lambda k: statistics.median(m.get(k, 0.0) for m in rest)
        ours = {"gen": med("time/generation"), "reward": med("time/reward"), "train": med("time/training"),
                "step": med("time/step"), "tokens": med("completions/mean_length") * a.prompts * a.G}
        out = run([a.python, "-c", BASELINE, f"{d}/model", f"{d}/train.jsonl", str(a.threads), str(a.steps),
                   str(a.prompts), str(a.G), str(a.completion), a.device, dtype]).stdout
        theirs = json.loads(out.strip().splitlines()[-1])
    print(f"GRPO step, {a.shape} shape, {a.device} {dtype}, {a.prompts} prompts x G={a.G}, <= {a.completion} new tokens, "
          f"{a.threads} threads, median of steps 2..{a.steps}" + "".join(f", --set {kv}" for kv in a.set))
    print(f"{'implementation':<16} {'generation s':>12} {'reward s':>9} {'training s':>10} {'step s':>8} {'gen tok':>8} {'tok/s':>8}")
    for name, r in (("scorch", ours), ("eager pytorch", theirs)):
        print(f"{name:<16} {r['gen']:>12.3f} {r['reward']:>9.4f} {r['train']:>10.3f} {r['step']:>8.3f} {r['tokens']:>8.0f} "
              f"{r['tokens'] / r['step']:>8.0f}")
    print(f"scorch step speed-up over eager: {theirs['step'] / ours['step']:.2f}x "
          f"(per generated token: {(theirs['step'] / max(theirs['tokens'], 1)) / (ours['step'] / max(ours['tokens'], 1)):.2f}x)")


if __name__ == "__main__":
    main()
