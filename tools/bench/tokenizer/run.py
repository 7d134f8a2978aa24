#!/usr/bin/env python3
"""Tokenizer encode throughput (MB/s, 1 thread): scorch's tokenizer.json implementation vs HF
`tokenizers` (Rust) in the same run, and tiktoken when it is installed, on the real vocabularies
tools/setup builds ($SCORCH_VOCAB_DIR, default ~/.cache/scorch/vocab).

The text is a few MB mixing this repository's C++/Python/Markdown sources with generated
multilingual lines (tools/tokenizer_vocabs.PIECES); every tokenizer encodes it line by line after
one warm-up pass. (That the ids are equal is the parity tests' job.)

  python tools/bench/tokenizer/run.py --build-dir build [--vocabs qwen2,llama-bpe --mb 4 --repeats 3]
"""
import argparse
import glob
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers is imported
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from tokenizer_vocabs import PIECES  # noqa: E402


def corpus(mb):
    lines = []
    for pattern in ("csrc/**/*.cpp", "csrc/**/*.h", "tools/**/*.py", "*.md"):
        for f in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            lines += open(f, encoding="utf-8", errors="replace").read().splitlines()
    rng = random.Random(0)
    text, size = [], 0
    while size < mb * 1e6:
        if rng.random() < 0.6 and lines:
            line = lines[rng.randrange(len(lines))]
        else:
            line = "".join(rng.choice(PIECES) for _ in range(rng.randint(5, 60))).replace("\n", " ")
        text.append(line)
        size += len(line.encode())
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--vocabs", default="qwen2,llama-bpe")
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from tokenizers import Tokenizer
    vocab_dir = os.environ.get("SCORCH_VOCAB_DIR") or os.path.expanduser("~/.cache/scorch/vocab")
    bench = os.path.join(a.build_dir, "scorch_bench_tokenizer")
    lines = corpus(a.mb)
    try:
        import tiktoken  # noqa: F401
        have_tiktoken = True
    except ImportError:
        have_tiktoken = False
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    nbytes = sum(len(l.encode()) for l in lines)
    print(f"text: {nbytes / 1e6:.1f} MB, {len(lines)} lines; 1 thread; {a.repeats} timed passes after a warm-up")
    print(f"{'vocabulary':<12} {'scorch MB/s':>12} {'tokenizers MB/s':>16} {'ratio':>7}  tiktoken")
    for name in a.vocabs.split(","):
        vocab = os.path.join(vocab_dir, name)
        ref = Tokenizer.from_file(os.path.join(vocab, "tokenizer.json"))
        ref.encode_special_tokens = True  # the same encoding as scorch's default
        r = subprocess.run([bench, vocab, path, str(a.repeats)], capture_output=True, text=True, check=True)
        ours = json.loads(r.stdout)
        for l in lines:  # warm-up
            ref.encode(l, add_special_tokens=False)
        t0 = time.perf_counter()
        for _ in range(a.repeats):
            for l in lines:
                ref.encode(l, add_special_tokens=False)
        t_ref = time.perf_counter() - t0
        ours_mbs = ours["bytes"] / ours["seconds"] / 1e6
        ref_mbs = nbytes * a.repeats / t_ref / 1e6
        print(f"{name:<12} {ours_mbs:>12.2f} {ref_mbs:>16.2f} {ours_mbs / ref_mbs:>6.2f}x  "
              f"{'(no rank file for this vocabulary)' if have_tiktoken else 'not installed'}")
    os.unlink(path)


if __name__ == "__main__":
    main()
