#!/usr/bin/env python3
"""Forward throughput (tokens/s) of scorch's Transformer next to transformers' on the CPU, fp32.

One run, same machine, same model (transformers creates and saves it; scorch loads that
directory), same thread count, both under inference mode and both computing full logits.
scorch is timed inside scorch_model_forward (`bench` mode), transformers here.

  tools/bench/model_forward/bench.py --forward-bin build/scorch_model_forward [--threads 2]
      [--batch 1,8,32] [--seq 128] [--iters 3] [--rounds 2]
"""
import argparse
import os
import re
import subprocess
import tempfile
import time

import torch
import transformers


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--forward-bin", default="build/scorch_model_forward")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    config = transformers.LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=1024,
                                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=2048)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    # Alternate scorch and transformers per batch size and keep the best of --rounds: on a shared
    # machine this compares both at their least-disturbed moments rather than at different loads.
    ours, theirs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for _ in range(a.rounds):
            for b in [int(x) for x in a.batch.split(",")]:
                r = subprocess.run([a.forward_bin, "bench", "--model", tmp, "--batch", str(b), "--seq", str(a.seq),
                                    "--iters", str(a.iters), "--threads", str(a.threads)],
                                   capture_output=True, text=True, check=True)
                m = re.search(r"tokens_per_s=([\d.]+)", r.stdout)
                ours[b] = max(ours.get(b, 0.0), float(m.group(1)))
                ids = torch.randint(0, config.vocab_size, (b, a.seq))
                with torch.inference_mode():
                    model(input_ids=ids).logits  # warm-up
                    t0 = time.perf_counter()
                    for _ in range(a.iters):
                        model(input_ids=ids).logits
                    theirs[b] = max(theirs.get(b, 0.0), b * a.seq * a.iters / (time.perf_counter() - t0))

    print(f"model_forward: llama 4 layers, hidden 256, 4 heads / 2 kv heads, vocab 32000, fp32, CPU, "
          f"{a.threads} threads, seq {a.seq}, {a.iters} iters, best of {a.rounds} alternating rounds (torch {torch.__version__}, "
          f"transformers {transformers.__version__}, {os.cpu_count()} cpus)")
    print(f"{'batch':>5} | {'scorch tok/s':>13} | {'transformers tok/s':>18} | {'ratio':>5}")
    for b in sorted(theirs):
        print(f"{b:>5} | {ours.get(b, float('nan')):>13.0f} | {theirs[b]:>18.0f} | {ours.get(b, float('nan')) / theirs[b]:>5.2f}")


if __name__ == "__main__":
    main()
