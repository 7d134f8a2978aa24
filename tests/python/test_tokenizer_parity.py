"""Our SentencePiece wrapper (csrc/tokenizer) against the sentencepiece Python package: identical
ids and decoded text on a few hundred strings (arithmetic tasks, chat markup, whitespace, unicode).

Runs the tokenize_ids helper built from tests/tokenizer (path in $SCORCH_TOKENIZE_IDS, set by CTest).
"""
import json
import os
import random
import subprocess

import pytest

spm = pytest.importorskip("sentencepiece")

SOURCE_DIR = os.environ.get("SCORCH_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(SOURCE_DIR, "configs", "quickstart", "tokenizer.model")
TOOL = os.environ.get("SCORCH_TOKENIZE_IDS")


def corpus(n=400, seed=0):
    rng = random.Random(seed)
    words = ["Compute", "The", "answer", "is", "\\boxed{", "}", "User:", "Assistant:", "<|im_start|>",
             "<|im_end|>", "[INST]", "[/INST]", "error", "solution", "héllo", "日本語", "🙂", "\t", "\n", "  "]
    out = ["", " ", "\n", "Compute 47+38-19.", "47+38=85. 85-19=66. The answer is \\boxed{66}."]
    while len(out) < n:
        kind = rng.randrange(3)
        if kind == 0:  # an arithmetic task with its worked steps
            a, b, c = (rng.randrange(1, 1000) for _ in range(3))
            out.append(f"Compute {a}+{b}-{c}. {a}+{b}={a + b}. The answer is \\boxed{{{a + b - c}}}.")
        elif kind == 1:  # a random mix of vocabulary words and separators
            out.append("".join(rng.choice(words) + rng.choice(["", " ", "\n"]) for _ in range(rng.randrange(1, 12))))
        else:  # random printable ASCII and a few multi-byte characters
            alphabet = [chr(c) for c in range(32, 127)] + ["é", "ß", "€", "中", "\n"]
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))))
    return out


@pytest.mark.skipif(not TOOL, reason="SCORCH_TOKENIZE_IDS not set (run through ctest)")
def test_ids_and_decoding_match_the_sentencepiece_package():
    texts = corpus()
    sp = spm.SentencePieceProcessor(model_file=MODEL)
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    result = subprocess.run([TOOL, MODEL], input=stdin, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == len(texts)
    mismatches = []
    for text, line in zip(texts, lines):
        ours = json.loads(line)
        theirs = sp.encode(text)
        if ours["ids"] != theirs or ours["decoded"] != sp.decode(theirs):
            mismatches.append((text, ours["ids"], theirs))
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, first: {mismatches[0]}"
