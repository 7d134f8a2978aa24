#!/usr/bin/env python3
"""scorch next to Hugging Face TRL on the same CPU: SFT (`trainer: sft` vs `SFTTrainer`) and GRPO
(`trainer: grpo` vs `GRPOTrainer`, transformers generate), same model directory, same data in the
same order, same hyper-parameters, runs interleaved in pairs.

    tools/bench/vs_trl/bench_vs_trl.py [--build-dir build] [--threads 1 2] [--pairs 3] [--steps N]
        [--only sft|grpo] [--sft-models quickstart,llama-30m] [--grpo-model DIR] [--quick]

TRL lives in its own venv (default ~/.cache/scorch/venv-trl, created on first use: torch and
transformers come from the project's venv through a .pth file, trl / datasets / accelerate pinned
in tools/bench/vs_trl/requirements.txt); it never enters the project's venv or CI.

Each run is a fresh process; step times exclude start-up and the first (warm-up) step. A pair is
one scorch run and one TRL run, their order alternating from pair to pair; the table gives every
pair, the median and the minimum over pairs, and TRL/scorch (> 1: scorch is faster).

Same work, checked rather than assumed:
- SFT: both sides read one model directory (scorch init-model, seed 0) and one JSONL in file order;
  TRL gets scorch's `plain` template as text ("User: P\\nAssistant: " + completion) and a
  tokenizer.json built from the same SentencePiece model, whose ids the bench compares with
  SentencePiece's on every row. Tokens in the loss must be equal at every step and the first-step
  loss must agree within 1e-4 (both are before any update).
- GRPO: the sampled completions differ, so losses cannot agree; the bench compares the prompts' ids,
  tokens in the loss and mean completion lengths, and checks the Python mirror of math_answer
  (math_answer.py) against `scorch reward` on TRL's completions and a few edge cases.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from benchlib import ROOT, TOKENIZER, QUICKSTART  # noqa: E402

RUNNER = os.path.join(HERE, "trl_runner.py")
REQUIREMENTS = os.path.join(HERE, "requirements.txt")
# Quickstart data difficulty (tools/quickstart): 2-3 operators, single-digit operands.
DIFFICULTY = ["--min-ops", "2", "--max-ops", "3", "--max-operand", "9"]
LLAMA_30M = dict(QUICKSTART, hidden_size=512, intermediate_size=1536, num_hidden_layers=10,
                 num_attention_heads=8, num_key_value_heads=4)
SFT_MODELS = {"quickstart": QUICKSTART, "llama-30m": LLAMA_30M}


def run(cmd, env=None, log=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if log:
        with open(log, "w") as f:
            f.write(r.stdout + "\n" + r.stderr)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}")
    return r


def thread_env(threads, build_dir=None):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    if build_dir:
        env["LD_LIBRARY_PATH"] = build_dir + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def run_pair(pair, prefix, threads, build_dir, run):
    """One interleaved pair: scorch first in even pairs, TRL first in odd ones. run(side, env, tag)
    runs one side; returns (order, {side: result})."""
    order = ("scorch", "trl") if pair % 2 == 0 else ("trl", "scorch")
    res = {side: run(side, thread_env(threads, build_dir), f"{prefix}-t{threads}-p{pair}-{side}") for side in order}
    return order, res


def ensure_trl_venv(venv, project_venv):
    """Creates the TRL venv on first use: torch / transformers from the project's venv (a .pth file),
    the packages of requirements.txt installed into it."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        site = subprocess.run([os.path.join(project_venv, "bin", "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        base = subprocess.run([os.path.join(project_venv, "bin", "python"), "-c", "import sys; print(sys.base_prefix)"],
                              capture_output=True, text=True, check=True).stdout.strip()
        run([os.path.join(base, "bin", "python3"), "-m", "venv", venv])
        own_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(own_site, "scorch-venv.pth"), "w") as f:
            f.write(site + "\n")
    check = subprocess.run([python, "-c", "import trl, datasets, google.protobuf"], capture_output=True)
    if check.returncode != 0:
        print(f"installing {REQUIREMENTS} into {venv}", file=sys.stderr)
        run([python, "-m", "pip", "install", "-q", "-r", REQUIREMENTS])
    return python


def versions(python, scorch, env):
    code = ("import json, torch, transformers, trl, datasets, accelerate; print(json.dumps({m.__name__: m.__version__ "
            "for m in (torch, transformers, trl, datasets, accelerate)}))")
    v = json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)
    v["scorch"] = subprocess.run([scorch, "version"], capture_output=True, text=True, env=env).stdout.split("\n")[0]
    return v


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def median_min(xs):
    return statistics.median(xs), min(xs)


# ---------------------------------------------------------------------------------------------- SFT

def sft_yaml(model, data, steps, batch, threads, lr):
    return (f"trainer: sft\nseed: 1234\nmodel: {{path: {model}, dtype: float32}}\n"
            f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
            f"data: {{train: {data}, shuffle: false, packing: false}}\n"
            f"train: {{max_steps: {steps}, micro_batch_size: {batch}, gradient_accumulation_steps: 1, "
            f"max_grad_norm: 1.0, threads: {threads}}}\n"
            f"optim: {{learning_rate: {lr}, weight_decay: 0.0, lr_scheduler_type: constant, warmup_steps: 0}}\n"
            f"sft: {{completion_only_loss: true}}\n"
            f"checkpoint: {{export_final: false, save_every: 0}}\nlog: {{every: 1, level: warn, progress: false}}\n")


def prepare_model(scorch, python, env, cfg, out, seed=0):
    if not os.path.exists(os.path.join(out, "tokenizer.json")):
        json.dump(cfg, open(out + ".config.json", "w"))
        run([scorch, "init-model", "--config", out + ".config.json", "--out", out, "--seed", str(seed),
             "--tokenizer", TOKENIZER, "--force"], env=env)
        run([python, RUNNER, "tokenizer", "--spm", TOKENIZER, "--out", out], env=env)


def check_tokenizer(python, env, model, data):
    r = json.loads(run([python, RUNNER, "tokenizer", "--spm", TOKENIZER, "--out", model, "--check", data],
                       env=env).stdout.strip().splitlines()[-1])
    return r


def run_scorch_sft(a, env, model, data, threads, tag):
    job = os.path.join(a.work_dir, f"{tag}.yaml")
    with open(job, "w") as f:
        f.write(sft_yaml(model, data, a.sft_steps, a.batch, threads, a.lr))
    run_dir = os.path.join(a.work_dir, f"{tag}.run")
    shutil.rmtree(run_dir, ignore_errors=True)
    run([a.scorch, "train", job, "--run-dir", run_dir], env=env)
    ms = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return {"times": [m["time/step"] for m in ms], "tokens": [int(m["num_tokens"]) for m in ms],
            "losses": [m["loss"] for m in ms]}


def run_trl_sft(a, env, model, data, threads, tag):
    out = os.path.join(a.work_dir, f"{tag}.json")
    run([a.python, RUNNER, "sft", "--model", model, "--data", data, "--threads", str(threads), "--steps",
         str(a.sft_steps), "--batch", str(a.batch), "--lr", str(a.lr), "--out", out], env=env,
        log=os.path.join(a.work_dir, f"{tag}.log"))
    return json.load(open(out))


def bench_sft(a, report):
    for name in a.sft_models.split(","):
        cfg = SFT_MODELS[name]
        model = os.path.join(a.work_dir, f"sft-model-{name}")
        prepare_model(a.scorch, a.python, thread_env(2, a.build_dir), cfg, model)
        data = os.path.join(a.work_dir, "sft-train.jsonl")
        run([a.scorch, "make-data", "--task", "arith", "--n", str(a.sft_steps * a.batch), "--seed", "5", *DIFFICULTY,
             "--out", data], env=thread_env(2, a.build_dir))
        tok = check_tokenizer(a.python, thread_env(2, a.build_dir), model, data)
        params = sum_params(cfg)
        report.append(f"\n## SFT: {name} ({params / 1e6:.2f}M parameters), batch {a.batch}, "
                      f"{a.sft_steps} steps (timed: steps 2..{a.sft_steps}), lr {a.lr} constant, AdamW, fp32, "
                      f"completion-only loss, no packing\n")
        report.append(f"Tokenizer: TRL's tokenizer.json vs SentencePiece (scorch's `plain` template) on "
                      f"{tok['rows']} rows: {tok['mismatches']} mismatches.\n")
        for threads in a.threads:
            rows, checks = [], []
            for pair in range(a.pairs):
                order, res = run_pair(pair, f"sft-{name}", threads, a.build_dir, lambda side, env, tag: (
                    run_scorch_sft if side == "scorch" else run_trl_sft)(a, env, model, data, threads, tag))
                s, t = res["scorch"], res["trl"]
                st, tt = statistics.median(s["times"][1:]), statistics.median(t["times"][1:])
                s_tok = sum(s["tokens"][1:]) / sum(s["times"][1:])
                t_tok = sum(t["tokens"][1:]) / sum(t["times"][1:])
                rows.append((pair + 1, "/".join(order), st, tt, s_tok, t_tok))
                checks.append({"tokens_equal": s["tokens"] == t["tokens"],
                               "loss1_diff": abs(s["losses"][0] - t["losses"][0]),
                               "max_loss_diff": max(abs(x - y) for x, y in zip(s["losses"], t["losses"])),
                               "tokens_per_step": statistics.mean(s["tokens"]), "optim": t.get("optim")})
            report.append(sft_table(threads, rows, checks))
            print_flush(report)


def sum_params(cfg):
    h, i, L, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    hd = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i + 2 * h
    return L * per_layer + v * h * (1 if cfg.get("tie_word_embeddings") else 2) + h


def sft_table(threads, rows, checks):
    out = [f"\n**{threads} thread{'s' if threads > 1 else ''}**\n",
           "| pair | order | scorch s/step | TRL s/step | TRL/scorch | scorch trained tok/s | TRL trained tok/s |",
           "|---|---|---|---|---|---|---|"]
    for p, order, st, tt, stok, ttok in rows:
        out.append(f"| {p} | {order} | {st:.4f} | {tt:.4f} | {tt / st:.2f} | {stok:.0f} | {ttok:.0f} |")
    smed, smin = median_min([r[2] for r in rows])
    tmed, tmin = median_min([r[3] for r in rows])
    out.append(f"| **median** | | {smed:.4f} | {tmed:.4f} | **{tmed / smed:.2f}** | "
               f"{statistics.median(r[4] for r in rows):.0f} | {statistics.median(r[5] for r in rows):.0f} |")
    out.append(f"| **min** | | {smin:.4f} | {tmin:.4f} | **{tmin / smin:.2f}** | "
               f"{max(r[4] for r in rows):.0f} | {max(r[5] for r in rows):.0f} |")
    ok = all(c["tokens_equal"] and c["loss1_diff"] < 1e-4 for c in checks)
    out.append(f"\nSame work ({'OK' if ok else 'FAILED'}): tokens in the loss equal at every step in "
               f"{sum(c['tokens_equal'] for c in checks)}/{len(checks)} pairs (mean {checks[0]['tokens_per_step']:.0f}"
               f" per step); first-step loss |scorch - TRL| max {max(c['loss1_diff'] for c in checks):.2e}; "
               f"largest difference over all steps {max(c['max_loss_diff'] for c in checks):.2e}. "
               f"TRL optimizer: {str(checks[0]['optim']).replace('OptimizerNames.', '').lower()}.\n")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- GRPO

def grpo_yaml(a, model, data, threads, samples):
    return (f"trainer: grpo\nseed: 1234\nmodel: {{path: {model}, dtype: float32}}\n"
            f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
            f"data: {{train: {data}, shuffle: false}}\n"
            f"train: {{max_steps: {a.grpo_steps}, micro_batch_size: {a.prompts}, gradient_accumulation_steps: 1, "
            f"max_grad_norm: 1.0, threads: {threads}}}\n"
            f"optim: {{learning_rate: {a.grpo_lr}, weight_decay: 0.0, lr_scheduler_type: constant, warmup_steps: 0}}\n"
            f"generation: {{temperature: {a.temperature}, top_p: 1.0, max_prompt_length: 96, "
            f"max_completion_length: {a.completion}}}\n"
            f"grpo: {{num_generations: {a.generations}, loss_type: dapo, beta: 0.0, epsilon: 0.2, epsilon_high: 0.28, "
            f"scale_rewards: group}}\n"
            f"rewards: [{{name: math_answer, weight: 1.0}}]\n"
            f"checkpoint: {{export_final: false, save_every: 0}}\n"
            f"log: {{every: 1, level: warn, progress: false, samples: {samples}}}\n")


def grpo_start_model(a):
    """The GRPO start model: --grpo-model, else a scorch SFT of the quickstart model on the quickstart's
    data (made once in the work directory), so completions end with EOS at realistic lengths."""
    env = thread_env(2, a.build_dir)
    if a.grpo_model:
        model = os.path.join(a.work_dir, "grpo-model-given")
        shutil.rmtree(model, ignore_errors=True)
        shutil.copytree(a.grpo_model, model)
        run([a.python, RUNNER, "tokenizer", "--spm", TOKENIZER, "--out", model], env=env)
        return model, f"`{a.grpo_model}`"
    model = os.path.join(a.work_dir, f"grpo-start-sft{a.grpo_sft_steps}")
    how = (f"the quickstart model after {a.grpo_sft_steps} scorch SFT steps on the quickstart's data "
           f"(batch 16, lr 3e-3 cosine)")
    if os.path.exists(os.path.join(model, "tokenizer.json")):
        return model, how
    base = os.path.join(a.work_dir, "grpo-base")
    prepare_model(a.scorch, a.python, env, QUICKSTART, base)
    data = os.path.join(a.work_dir, "grpo-sft-train.jsonl")
    run([a.scorch, "make-data", "--task", "arith", "--n", "6000", "--seed", "1", *DIFFICULTY, "--with-correction", "10",
         "--out", data], env=env)
    job = os.path.join(a.work_dir, "grpo-start-sft.yaml")
    with open(job, "w") as f:
        f.write(f"trainer: sft\nseed: 1234\nmodel: {{path: {base}}}\n"
                f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
                f"data: {{train: {data}, max_length: 192, packing: false}}\n"
                f"train: {{max_steps: {a.grpo_sft_steps}, micro_batch_size: 16, max_grad_norm: 1.0, threads: 2}}\n"
                f"optim: {{learning_rate: 3.0e-3, weight_decay: 0.01, lr_scheduler_type: cosine, warmup_ratio: 0.05}}\n"
                f"checkpoint: {{save_every: 0}}\nlog: {{every: 50, level: warn, progress: false}}\n")
    run_dir = os.path.join(a.work_dir, "grpo-start-sft.run")
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"training the GRPO start model ({a.grpo_sft_steps} SFT steps)", file=sys.stderr)
    run([a.scorch, "train", job, "--run-dir", run_dir], env=env)
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(os.path.join(run_dir, "export"), model)
    run([a.python, RUNNER, "tokenizer", "--spm", TOKENIZER, "--out", model], env=env)
    return model, how


def run_scorch_grpo(a, env, model, data, threads, tag):
    job = os.path.join(a.work_dir, f"{tag}.yaml")
    with open(job, "w") as f:
        f.write(grpo_yaml(a, model, data, threads, 0))
    run_dir = os.path.join(a.work_dir, f"{tag}.run")
    shutil.rmtree(run_dir, ignore_errors=True)
    run([a.scorch, "train", job, "--run-dir", run_dir], env=env)
    ms = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]
    return {"times": [m["time/step"] for m in ms], "gen": [m["time/generation"] for m in ms],
            "train": [m["time/training"] for m in ms], "length": [m["completions/mean_length"] for m in ms],
            "tokens": [m["num_tokens"] for m in ms], "reward": [m["reward"] for m in ms],
            "truncated": [m["completions/clipped_ratio"] for m in ms]}


def run_trl_grpo(a, env, model, data, threads, tag, samples=None):
    out = os.path.join(a.work_dir, f"{tag}.json")
    cmd = [a.python, RUNNER, "grpo", "--model", model, "--data", data, "--threads", str(threads), "--steps",
           str(a.grpo_steps), "--prompts", str(a.prompts), "--generations", str(a.generations), "--completion",
           str(a.completion), "--temperature", str(a.temperature), "--lr", str(a.grpo_lr), "--out", out]
    if samples:
        cmd += ["--samples", samples]
    run(cmd, env=env, log=os.path.join(a.work_dir, f"{tag}.log"))
    r = json.load(open(out))
    logs = r["logs"]
    gen = [p.get("GRPOTrainer.transformers.generate", 0.0) for p in r["phases"]]
    prep = [p.get("GRPOTrainer._prepare_inputs", 0.0) for p in r["phases"]]
    rows = a.prompts * a.generations
    return {"times": r["times"], "gen": gen, "train": [t - p for t, p in zip(r["times"], prep)],
            "length": [lg["completions/mean_length"] for lg in logs],
            "tokens": [lg["completions/mean_length"] * rows for lg in logs], "reward": [lg["reward"] for lg in logs],
            "truncated": [lg["completions/clipped_ratio"] for lg in logs]}


EDGE_CASES = [  # (prompt, completion, gold): the extraction paths arithmetic completions can reach
    ("Compute 1+2.", "1+2=3. The answer is \\boxed{3}.", "3"),
    ("Compute 1+2.", "1+2=3. The answer is \\boxed{3", "3"),
    ("Compute 1+2.", "1+2=3. The answer is 3.", "3"),
    ("Compute 1+2.", "1+2=3", "3"),
    ("Compute 1+2.", "#### 3", "3"),
    ("Compute 1+2.", "Compute 1+2.", "3"),
    ("Compute 1+2.", "", "3"),
    ("Compute 5-9.", "5-9=-4. The answer is \\boxed{-4}.", "-4"),
    ("Compute 5-9.", "The answer is \\boxed{4}. 5-9=-4", "-4"),
    ("Compute 1+2.", "1+2=3.0. The answer is 3.0", "3"),
]


def check_rewards(a, trl_samples):
    """Python math_answer (TRL's reward) against `scorch reward` on TRL's completions + edge cases."""
    sys.path.insert(0, HERE)
    from math_answer import score
    path = os.path.join(a.work_dir, "reward-check.jsonl")
    rows = [json.loads(line) for line in open(trl_samples)]
    rows += [{"prompt": p, "completion": c, "answer": g, "python_reward": score(p, c, g)} for p, c, g in EDGE_CASES]
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    cfg = os.path.join(a.work_dir, "reward-check.yaml")
    with open(cfg, "w") as f:
        f.write("rewards:\n  - {name: math_answer, weight: 1.0}\n")
    scored_path = os.path.join(a.work_dir, "reward-check.scored.jsonl")
    run([a.scorch, "reward", "--config", cfg, "--in", path, "--out", scored_path], env=thread_env(1, a.build_dir))
    scored = [json.loads(line) for line in open(scored_path)]
    differ = [r for r in scored if r["reward"] != r["python_reward"]]
    return len(scored), len(differ), len(rows) - len(EDGE_CASES), sum(r["reward"] for r in scored[:-len(EDGE_CASES)])


def bench_grpo(a, report):
    model, how = grpo_start_model(a)
    data = os.path.join(a.work_dir, "grpo-prompts.jsonl")
    run([a.scorch, "make-data", "--task", "arith", "--n", str(a.grpo_steps * a.prompts), "--seed", "3", *DIFFICULTY,
         "--out", data], env=thread_env(2, a.build_dir))
    tok = check_tokenizer(a.python, thread_env(2, a.build_dir), model, data)
    report.append(f"\n## GRPO: {a.prompts} prompts x {a.generations} generations, <= {a.completion} new tokens, "
                  f"temperature {a.temperature}, loss_type dapo, beta 0, lr {a.grpo_lr} constant, fp32, "
                  f"{a.grpo_steps} steps (timed: steps 2..{a.grpo_steps})\n")
    report.append(f"Start model: {how}. Prompt ids (TRL tokenizer.json vs scorch's `plain` template): "
                  f"{tok['mismatches']} mismatches in {tok['rows']} prompts.\n")
    samples = os.path.join(a.work_dir, "grpo-trl-samples.jsonl")
    for ti, threads in enumerate(a.threads):
        rows = []
        for pair in range(a.pairs):
            keep = samples if ti == 0 and pair == 0 else None
            order, res = run_pair(pair, "grpo", threads, a.build_dir, lambda side, env, tag: (
                run_scorch_grpo(a, env, model, data, threads, tag) if side == "scorch"
                else run_trl_grpo(a, env, model, data, threads, tag, keep)))
            rows.append((pair + 1, "/".join(order), res["scorch"], res["trl"]))
        report.append(grpo_table(threads, rows))
        print_flush(report)
    n, differ, n_trl, trl_reward_sum = check_rewards(a, samples)
    report.append(f"\nReward check: Python math_answer (TRL's reward function) vs `scorch reward` on {n_trl} TRL "
                  f"completions (first run, step 1) and {len(EDGE_CASES)} edge cases: {differ} of {n} differ.\n")


def grpo_table(threads, rows):
    def med(xs):
        return statistics.median(xs[1:])

    out = [f"\n**{threads} thread{'s' if threads > 1 else ''}** (per pair: medians over the timed steps)\n",
           "| pair | order | scorch s/step | TRL s/step | TRL/scorch | scorch gen s | TRL gen s | scorch train s | "
           "TRL train s | scorch rollout tok/s | TRL rollout tok/s | scorch mean len | TRL mean len |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    stats = []
    for p, order, s, t in rows:
        st, tt = med(s["times"]), med(t["times"])
        sg, tg = med(s["gen"]), med(t["gen"])
        s_rate = sum(s["tokens"][1:]) / sum(s["gen"][1:])
        t_rate = sum(t["tokens"][1:]) / sum(t["gen"][1:])
        sl, tl = statistics.mean(s["length"][1:]), statistics.mean(t["length"][1:])
        stats.append((st, tt, sg, tg, med(s["train"]), med(t["train"]), s_rate, t_rate, sl, tl))
        out.append(f"| {p} | {order} | {st:.3f} | {tt:.3f} | {tt / st:.2f} | {sg:.3f} | {tg:.3f} | "
                   f"{med(s['train']):.3f} | {med(t['train']):.3f} | {s_rate:.0f} | {t_rate:.0f} | {sl:.1f} | {tl:.1f} |")
    col = list(zip(*stats))
    m = [statistics.median(c) for c in col]
    n = [min(c) for c in col[:6]] + [max(c) for c in col[6:8]]
    out.append(f"| **median** | | {m[0]:.3f} | {m[1]:.3f} | **{m[1] / m[0]:.2f}** | {m[2]:.3f} | {m[3]:.3f} | "
               f"{m[4]:.3f} | {m[5]:.3f} | {m[6]:.0f} | {m[7]:.0f} | {m[8]:.1f} | {m[9]:.1f} |")
    out.append(f"| **min** | | {n[0]:.3f} | {n[1]:.3f} | **{n[1] / n[0]:.2f}** | {n[2]:.3f} | {n[3]:.3f} | "
               f"{n[4]:.3f} | {n[5]:.3f} | {n[6]:.0f} | {n[7]:.0f} | | |")
    s_tok = statistics.mean(x for _, _, s, _ in rows for x in s["tokens"])
    t_tok = statistics.mean(x for _, _, _, t in rows for x in t["tokens"])
    s_rew = statistics.mean(x for _, _, s, _ in rows for x in s["reward"])
    t_rew = statistics.mean(x for _, _, _, t in rows for x in t["reward"])
    s_cut = statistics.mean(x for _, _, s, _ in rows for x in s["truncated"])
    t_cut = statistics.mean(x for _, _, _, t in rows for x in t["truncated"])
    out.append(f"\nComparable work: tokens in the loss per step (all steps, all pairs) scorch {s_tok:.0f}, TRL "
               f"{t_tok:.0f} ({t_tok / s_tok - 1:+.1%}); mean reward scorch {s_rew:.3f}, TRL {t_rew:.3f}; "
               f"completions cut at the limit scorch {s_cut:.1%}, TRL {t_cut:.1%}. Generation and training "
               f"time ratios: TRL/scorch {m[3] / m[2]:.2f} and {m[5] / m[4]:.2f} (medians). Generation: scorch "
               f"time/generation, TRL `transformers.generate`; training: scorch time/training, TRL step minus "
               f"`_prepare_inputs` (forward, backward, optimizer). Rollout tok/s: completion tokens over "
               f"generation time.\n")
    return "\n".join(out)


_printed = [0]


def print_flush(report):
    """Prints the report lines not printed yet (a long run shows each table as it is done)."""
    for line in report[_printed[0]:]:
        print(line, flush=True)
    _printed[0] = len(report)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--steps", type=int, help="steps per run, for both SFT and GRPO")
    ap.add_argument("--sft-steps", type=int, default=20)
    ap.add_argument("--grpo-steps", type=int, default=5)
    ap.add_argument("--only", choices=["sft", "grpo"])
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 thread, 1 pair, few steps")
    ap.add_argument("--sft-models", default="quickstart,llama-30m", help="comma-separated: " + ",".join(SFT_MODELS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--grpo-model", help="GRPO start model (an HF directory with tokenizer.model); default: "
                                         "trained here by a scorch SFT run, cached in --work-dir")
    ap.add_argument("--grpo-sft-steps", type=int, default=560, help="SFT steps for the default GRPO start model")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--completion", type=int, default=48)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--grpo-lr", type=float, default=5e-5)
    ap.add_argument("--work-dir", default=os.path.expanduser("~/.cache/scorch/bench-vs-trl"))
    ap.add_argument("--trl-venv", default=os.path.expanduser("~/.cache/scorch/venv-trl"))
    ap.add_argument("--project-venv", default=os.path.expanduser("~/.cache/scorch/venv"))
    ap.add_argument("--out", help="also write the markdown report to this file")
    a = ap.parse_args()
    if a.quick:
        a.threads, a.pairs, a.sft_steps, a.grpo_steps, a.sft_models = [1], 1, 4, 2, "quickstart"
        a.grpo_sft_steps = min(a.grpo_sft_steps, 60)
    if a.steps:
        a.sft_steps = a.grpo_steps = a.steps
    if min(a.sft_steps, a.grpo_steps) < 2:
        sys.exit("--steps must be at least 2: the first step is the warm-up")
    for name in a.sft_models.split(","):
        if name not in SFT_MODELS:
            sys.exit(f"unknown SFT model '{name}': choose from {', '.join(SFT_MODELS)}")
    a.build_dir = os.path.abspath(a.build_dir)
    a.scorch = os.path.join(a.build_dir, "scorch")
    os.makedirs(a.work_dir, exist_ok=True)
    a.python = ensure_trl_venv(a.trl_venv, a.project_venv)
    v = versions(a.python, a.scorch, thread_env(1, a.build_dir))
    load_before = os.getloadavg()
    start = time.time()
    report = [f"# scorch vs TRL on the CPU ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n\n"
              f"CPU: {cpu_model()}, {os.cpu_count()} cores; threads {' and '.join(map(str, a.threads))}; "
              f"{a.pairs} interleaved pairs per setting. Versions: {v['scorch']}, torch {v['torch']}, "
              f"transformers {v['transformers']}, trl {v['trl']}, datasets {v['datasets']}, "
              f"accelerate {v['accelerate']}. Load average at the start: "
              f"{' '.join(f'{x:.2f}' for x in load_before)} (1/5/15 min)."]
    print_flush(report)
    if a.only in (None, "sft"):
        bench_sft(a, report)
    if a.only in (None, "grpo"):
        bench_grpo(a, report)
    report.append(f"\nWall time {time.time() - start:.0f} s; load average at the end: "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.")
    print_flush(report)
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
