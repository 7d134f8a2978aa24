#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into OUT/<target>/ from the repository's own inputs
(configs, test configs, the quickstart tokenizer.model, the fixture tokenizers here, the cached
model chat templates when tools/setup fetched them) and a few constructed cases. Deterministic;
nothing is committed but this script.  Usage: make_seeds.py OUT_DIR"""
import base64
import glob
import json
import os
import struct
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors_file(tensors, metadata=None):
    """tensors: [(name, dtype, shape, element bytes)] -> bytes of a valid .safetensors file."""
    header, offset, payload = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, size in tensors:
        n = size
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        payload += bytes((offset + i) % 251 for i in range(n))
        offset += n
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def safetensors_seeds(out):
    t = "safetensors"
    write(out, t, "one_f32", safetensors_file([("w", "F32", [2, 3], 4)], {"format": "pt"}))
    write(out, t, "dtypes", safetensors_file([("a", "BF16", [4], 2), ("b", "I64", [1, 2], 8), ("c", "BOOL", [3], 1),
                                               ("d", "F8_E4M3", [2, 2], 1), ("e", "U16", [1], 2)]))
    write(out, t, "empty_tensor", safetensors_file([("z", "F16", [0, 5], 2), ("s", "F64", [], 8)]))
    write(out, t, "no_tensors", safetensors_file([], {"k": "v"}))
    write(out, t, "index", json.dumps({"metadata": {"total_size": 24},
                                       "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                                                      "b.weight": "model-00002-of-00002.safetensors"}}))


def dataset_seeds(out):
    lines = {
        "sft_prompt_completion": {"prompt": "What is 2+2?", "completion": "4"},
        "sft_messages": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": "Hello", "train": False},
                                      {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]},
        "sft_text": {"text": "plain language modelling text"},
        "sft_conversational": {"prompt": [{"role": "user", "content": "Hi"}],
                               "completion": [{"role": "assistant", "content": "Hello"}]},
        "preference": {"prompt": "Pick one", "chosen": "A", "rejected": "B", "weight": 0.5},
        "preference_messages": {"prompt": [{"role": "user", "content": "Q"}],
                                "chosen": [{"role": "assistant", "content": "good"}],
                                "rejected": [{"role": "assistant", "content": "bad"}]},
        "prompt_answer_number": {"prompt": "12*3=", "answer": 36, "difficulty": "easy", "tags": ["x", 1.5e300]},
        "prompt_answer_string": {"prompt": [{"role": "user", "content": "Name?"}], "answer": "scorch"},
    }
    for name, obj in lines.items():
        write(out, "dataset", name, json.dumps(obj) + "\n")
    write(out, "dataset", "two_lines_crlf", '{"prompt": "a", "completion": "b"}\r\n\r\n{"text": "c"}\r\n')


def config_seeds(out):
    for path in sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")) +
                       glob.glob(os.path.join(ROOT, "tests", "data", "bad_configs", "*.yaml"))):
        prefix = "bad_" if "bad_configs" in path else ""
        with open(path, "rb") as f:
            write(out, "config", prefix + os.path.basename(path), f.read())
    with open(os.path.join(ROOT, "configs", "quickstart_sft.yaml"), "rb") as f:
        write(out, "config", "with_overrides", f.read() + b"\0train.max_steps=5\0generation.stop=[a, b]")


def tokenizer_seeds(out):
    for name in ("byte_level", "metaspace"):
        with open(os.path.join(HERE, "tokenizers", name + ".json"), "rb") as f:
            write(out, "tokenizer_json", name, f.read())
    tiny = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<0x41>": 3}, "merges": [["a", "b"]],
                      "byte_fallback": True, "unk_token": "a", "ignore_merges": True},
            "added_tokens": [{"id": 4, "content": "<x>", "special": True}],
            "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKD"}, {"type": "Strip", "strip_left": True,
                                                                                  "strip_right": True}]},
            "pre_tokenizer": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "first", "split": False},
            "decoder": {"type": "Metaspace", "replacement": "_", "prepend_scheme": "first"},
            "post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, {
                "type": "TemplateProcessing", "single": [{"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "<x>"}}],
                "special_tokens": {}}]}}
    write(out, "tokenizer_json", "tiny", json.dumps(tiny))

    with open(os.path.join(ROOT, "configs", "quickstart", "tokenizer.model"), "rb") as f:
        write(out, "tokenizer_model", "quickstart_sentencepiece", f.read())
    write(out, "tokenizer_model", "tiktoken", "IQ== 0\nIg== 1\nIw== 2\n")
    write(out, "tokenizer_model", "tiktoken_crlf", "SGVsbG8= 0\r\nd29ybGQ= 1\r\n")
    # A rank file that loads (every byte has a rank) with two merges: ~2.3 KB.
    ranks = [bytes([b]) for b in range(256)] + [b"lo", b" l"]
    write(out, "tokenizer_model", "tiktoken_bytes",
          "".join("%s %d\n" % (base64.b64encode(t).decode(), r) for r, t in enumerate(ranks)))

    texts = ["Hello world, the 123 and 4567 in a string", "caf\u00e9 e\u0301 \u00c5 \ufb01 \U0001F600 \u4e2d\u6587",
             "<|im_start|>user\nHi<|im_end|>\n<think>x</think>", "[INST] a <tool> b [INST]x", "   \t\n\r\n  ",
             "don't I'll we've 12345678"]
    for i, text in enumerate(texts):
        for mode in (0, 1, 6, 15):
            write(out, "tokenizer_encode", "text%d_mode%d" % (i, mode), bytes([mode, 0x32]) + text.encode())
    write(out, "tokenizer_encode", "invalid_utf8", bytes([0, 0]) + b"a\xff\xc3(\xed\xa0\x80b\xf0\x9f")


def chat_template_seeds(out):
    write(out, "chat_template", "chatml",
          "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    write(out, "chat_template", "raise",
          "{% if messages[0].role == 'system' %}{{ raise_exception('no system') }}{% endif %}"
          "{% for m in messages %}{{ m['content'] | trim }}{{ eos_token }}{% endfor %}")
    write(out, "chat_template", "macros_filters",
          "{%- macro r(x) -%}[{{ x | upper }}]{%- endmacro -%}{% set ns = namespace(n=0) %}"
          "{% for m in messages if m.role != 'system' %}{% set ns.n = ns.n + 1 %}{{ r(m.role) }}{{ m.content | tojson }}"
          "{{ loop.index }}{% endfor %}{{ ns.n }}{% if enable_thinking is defined and not enable_thinking %}<think></think>"
          "{% endif %}{{ bos_token ~ (messages | length) | string }}")
    vocab = os.environ.get("SCORCH_VOCAB_DIR", os.path.expanduser("~/.cache/scorch/vocab"))
    for path in sorted(glob.glob(os.path.join(vocab, "chat", "*", "chat_template.jinja"))):
        with open(path, "rb") as f:
            write(out, "chat_template", os.path.basename(os.path.dirname(path)), f.read())


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    safetensors_seeds(out)
    dataset_seeds(out)
    config_seeds(out)
    tokenizer_seeds(out)
    chat_template_seeds(out)


if __name__ == "__main__":
    main()
