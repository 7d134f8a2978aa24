"""scorch's tiktoken rank-file tokenizer against the `tiktoken` package on the real rank files
tools/setup fetches from PyPI into $SCORCH_VOCAB_DIR/tiktoken (tools/tokenizer_vocabs.py: Llama-3's
tokenizer.model from llama-models, qwen.tiktoken from dashscope, gpt2.tiktoken from openai-whisper).

The reference is built independently of scorch's table of known vocabularies: tiktoken.Encoding
from the same ranks, with the pattern and special tokens read from the publishers' own source
(llama-models' llama3/tokenizer.py, dashscope's qwen_tokenizer.py, tiktoken's own r50k_base), and
scorch is given nothing but the file. Identical ids on N strings per vocabulary (several scripts,
code, emoji, whitespace and digit runs, special-token text, invalid UTF-8 bytes, long words) with
special-token text as text (scorch's default; tiktoken's encode_ordinary) and as control ids
(tokenizer.parse_special; tiktoken's allowed_special="all"), identical decoding, lossless round
trips.

The cache is required: a missing rank file fails (tools/setup provides it), never skips.
"""
import ast
import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from tokenizer_vocabs import PIECES, random_texts  # noqa: E402

TOOL = os.environ.get("SCORCH_TOKENIZE_IDS")
VOCAB_DIR = os.environ.get("SCORCH_VOCAB_DIR") or os.path.expanduser("~/.cache/scorch/vocab")
N = 5000
RANK_FILES = {"llama3": "tokenizer.model", "qwen": "qwen.tiktoken", "gpt2": "gpt2.tiktoken"}


def llama3_reference(d):
    """pat_str and the special tokens exactly as llama-models' Tokenizer.__init__ builds them."""
    tree = ast.parse(open(os.path.join(d, "tokenizer.py"), encoding="utf-8").read())
    values = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("pat_str", "num_reserved_special_tokens"):
                values[name] = ast.literal_eval(node.value)
            elif name == "special_tokens" and isinstance(node.value, ast.List):
                values[name] = ast.literal_eval(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            if node.target.id == "num_reserved_special_tokens":
                values["num_reserved_special_tokens"] = ast.literal_eval(node.value)
    named = values["special_tokens"]
    reserved = [f"<|reserved_special_token_{2 + i}|>" for i in range(values["num_reserved_special_tokens"] - len(named))]
    return values["pat_str"], named + reserved, 128000


def qwen_reference(d):
    """PAT_STR and SPECIAL_TOKENS: the module-level constants of dashscope's qwen_tokenizer.py."""
    tree = ast.parse(open(os.path.join(d, "qwen_tokenizer.py"), encoding="utf-8").read())
    wanted = {"PAT_STR", "ENDOFTEXT", "IMSTART", "IMEND", "EXTRAS", "SPECIAL_START_ID", "SPECIAL_TOKENS"}
    body = [n for n in tree.body if isinstance(n, ast.Assign) and {getattr(t, "id", None) for t in n.targets} & wanted]
    ns = {}
    exec(compile(ast.Module(body=body, type_ignores=[]), "qwen_tokenizer.py", "exec"), ns)  # constants only
    tokens = [t for _, t in sorted(ns["SPECIAL_TOKENS"])]
    return ns["PAT_STR"], tokens, ns["SPECIAL_START_ID"]


def gpt2_reference(_):
    """r50k_base as tiktoken defines it (tiktoken_ext/openai_public.py); whisper's gpt2.tiktoken is its file."""
    from tiktoken_ext import openai_public
    return openai_public.r50k_pat_str, [openai_public.ENDOFTEXT], 50256


REFERENCES = {"llama3": llama3_reference, "qwen": qwen_reference, "gpt2": gpt2_reference}


def reference(name):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    d = os.path.join(VOCAB_DIR, "tiktoken", name)
    rank_file = os.path.join(d, RANK_FILES[name])
    assert os.path.exists(rank_file), f"{rank_file} missing: run tools/setup (it fetches it from PyPI)"
    pattern, specials, first_id = REFERENCES[name](d)
    ranks = load_tiktoken_bpe(rank_file)
    assert first_id == len(ranks)
    enc = tiktoken.Encoding(name=name, pat_str=pattern, mergeable_ranks=ranks,
                            special_tokens={t: first_id + i for i, t in enumerate(specials)})
    return rank_file, enc, specials


def strings(seed, specials):
    pieces = PIECES + specials[:8] + [specials[-1], "<|", "|>", "1234567", "00000000000", "\r\n\r\n", "\n\n\n ",
                                      "    ", "\t\t", " \u00a0 ", "x" * 40, "é" * 30, "🙂" * 5, "'S", "'Re", "ı"]
    return random_texts(seed, N, pieces, long_every=500)


def run_tool(rank_file, texts, parse_special):
    # tokenize_ids reads JSON strings; invalid UTF-8 is carried as its Python "replace" decoding,
    # which is also what scorch does to invalid input before encoding.
    lines = "".join(json.dumps(t.decode("utf-8", "replace")) + "\n" for t in texts)
    args = [TOOL, rank_file] + (["--parse-special"] if parse_special else [])
    p = subprocess.run(args, input=lines.encode(), capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    return [json.loads(l) for l in p.stdout.decode().splitlines()]


@pytest.mark.parametrize("name", sorted(RANK_FILES))
@pytest.mark.parametrize("parse_special", [False, True])
def test_ids_and_decoding_match_tiktoken(name, parse_special):
    assert TOOL, "SCORCH_TOKENIZE_IDS not set (run through ctest)"
    rank_file, enc, specials = reference(name)
    texts = strings(sum(map(ord, name)), specials)
    decoded_texts = [t.decode("utf-8", "replace") for t in texts]
    if parse_special:
        expected = [enc.encode(t, allowed_special="all") for t in decoded_texts]
    else:
        expected = [enc.encode_ordinary(t) for t in decoded_texts]
    ours = run_tool(rank_file, texts, parse_special)
    assert len(ours) == len(texts)
    wrong = [(t, o["ids"], e) for t, o, e in zip(decoded_texts, ours, expected) if o["ids"] != e]
    assert not wrong, f"{len(wrong)} of {len(texts)} differ, first: {wrong[0]}"
    special_ids = {enc.encode_single_token(s) for s in enc.special_tokens_set}
    with_special = 0
    for t, o, e in zip(decoded_texts, ours, expected):
        plain = [i for i in e if i not in special_ids]
        with_special += len(plain) != len(e)
        assert o["decoded"] == enc.decode(plain), t  # control tokens decode to nothing in scorch
        if not parse_special:
            assert o["decoded"] == t  # byte-level BPE is lossless
    # The sample exercises what it claims: special-token text became control ids when allowed.
    assert (with_special > N // 20) == parse_special, with_special
    print(f"{name} parse_special={parse_special}: {len(texts)} strings, 0 mismatches, "
          f"{sum(len(e) for e in expected)} tokens")


@pytest.mark.parametrize("name", sorted(RANK_FILES))
def test_exported_tokenizer_json_gives_tiktokens_ids_in_transformers(name, tmp_path):
    """What `scorch export` writes for a rank file (tokenizer.json + tokenizer_config.json), loaded by
    transformers' AutoTokenizer (and by scorch), encodes as tiktoken does (special-token text as control ids, as
    transformers parses it) and adds BOS where the model's tokenizer does (Llama-3)."""
    from transformers import AutoTokenizer
    assert TOOL, "SCORCH_TOKENIZE_IDS not set (run through ctest)"
    rank_file, enc, specials = reference(name)
    p = subprocess.run([TOOL, rank_file, "--export", str(tmp_path)], capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    hf = AutoTokenizer.from_pretrained(str(tmp_path))
    texts = [t.decode("utf-8", "replace") for t in strings(sum(map(ord, name)) + 1, specials)]
    wrong = [(t, hf.encode(t, add_special_tokens=False), enc.encode(t, allowed_special="all")) for t in texts]
    wrong = [w for w in wrong if w[1] != w[2]]
    assert not wrong, f"{len(wrong)} of {len(texts)} differ, first: {wrong[0]}"
    # scorch reads its own export the same way.
    ours = run_tool(str(tmp_path / "tokenizer.json"), [t.encode() for t in texts], True)
    assert [o["ids"] for o in ours] == [enc.encode(t, allowed_special="all") for t in texts]
    bos = [enc.encode_single_token("<|begin_of_text|>")] if name == "llama3" else []
    assert hf.encode("hello", add_special_tokens=True) == bos + enc.encode_ordinary("hello")
    print(f"{name}: exported tokenizer.json, {len(texts)} strings, 0 mismatches against tiktoken in transformers")
