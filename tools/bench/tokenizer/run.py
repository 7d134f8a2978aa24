#!/usr/bin/env python3
"""Tokenizer encode throughput (MB/s, 1 thread): scorch's tokenizer.json implementation vs HF
`tokenizers` (Rust) in the same run, on the real vocabularies tools/setup builds ($SCORCH_VOCAB_DIR,
default ~/.cache/scorch/vocab); and, where the vocabulary also has a tiktoken rank file in the cache
(llama-bpe: Llama-3's tokenizer.model, qwen2: qwen.tiktoken, gpt-2: gpt2.tiktoken), scorch's
tiktoken implementation on that file vs the `tiktoken` package (Rust), when it is installed.

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


# tokenizer.json vocabulary -> the tiktoken rank file of the same ranks (CACHE/tiktoken/...), and the
# pattern tiktoken needs for it (scorch recognises the file by itself).
RANK_FILES = {"llama-bpe": ("llama3/tokenizer.model", "llama3"), "qwen2": ("qwen/qwen.tiktoken", "qwen"),
              "gpt-2": ("gpt2/gpt2.tiktoken", "gpt2")}


def tiktoken_encoding(vocab_dir, name):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
    from test_tiktoken_parity import REFERENCES  # the patterns, read from the publishers' sources
    rel, key = RANK_FILES[name]
    rank_file = os.path.join(vocab_dir, "tiktoken", rel)
    if not os.path.exists(rank_file):
        return None, None
    pattern, _, _ = REFERENCES[key](os.path.dirname(rank_file))
    return rank_file, tiktoken.Encoding(name=key, pat_str=pattern, mergeable_ranks=load_tiktoken_bpe(rank_file),
                                        special_tokens={})


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
    print(f"{'vocabulary':<12} {'scorch MB/s':>12} {'tokenizers MB/s':>16} {'ratio':>7}  "
          f"{'scorch rank file MB/s':>22} {'tiktoken MB/s':>14} {'ratio':>7}")
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
        rank_file, enc = tiktoken_encoding(vocab_dir, name) if have_tiktoken and name in RANK_FILES else (None, None)
        if enc is None:
            tail = "tiktoken not installed" if not have_tiktoken else "(no rank file for this vocabulary)"
        else:
            r = subprocess.run([bench, rank_file, path, str(a.repeats)], capture_output=True, text=True, check=True)
            ours_tt = json.loads(r.stdout)
            for l in lines:  # warm-up
                enc.encode_ordinary(l)
            t0 = time.perf_counter()
            for _ in range(a.repeats):
                for l in lines:
                    enc.encode_ordinary(l)
            tt_mbs = nbytes * a.repeats / (time.perf_counter() - t0) / 1e6
            ours_tt_mbs = ours_tt["bytes"] / ours_tt["seconds"] / 1e6
            tail = f"{ours_tt_mbs:>22.2f} {tt_mbs:>14.2f} {ours_tt_mbs / tt_mbs:>6.2f}x"
        print(f"{name:<12} {ours_mbs:>12.2f} {ref_mbs:>16.2f} {ours_mbs / ref_mbs:>6.2f}x  {tail}")
    os.unlink(path)


if __name__ == "__main__":
    main()
