"""scorch's rendering of models' own Jinja chat templates (llama.cpp's engine, token-level turns)
against transformers' apply_chat_template ids, for every template in llama.cpp's
models/templates/*.jinja (fetched by tools/setup into $SCORCH_VOCAB_DIR) that jinja2 renders, on
single-turn, system + multi-turn and generation-prompt conversations, with the Qwen2 vocabulary.

A template scorch refuses as not append-only (multi-turn only) is listed, not compared: that
refusal is the documented behaviour. Everything else must give identical ids.
"""
import json
import os
import subprocess
import tempfile

import pytest

TOOL = os.environ.get("SCORCH_TOKENIZE_IDS")
VOCAB_DIR = os.environ.get("SCORCH_VOCAB_DIR") or os.path.expanduser("~/.cache/scorch/vocab")
TEMPLATES = os.path.join(VOCAB_DIR, "llama.cpp", "models", "templates")
KWARGS = {"date_string": "26 Jul 2024"}

CONVERSATIONS = [
    ([{"role": "user", "content": "What is 2+3?"}], True),
    ([{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}], False),
    ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."},
      {"role": "assistant", "content": "7"}, {"role": "user", "content": "Another one?"}], True),
    ([{"role": "user", "content": "Line one\nline two"}, {"role": "assistant", "content": "Ok."},
      {"role": "user", "content": "Thanks 🙂"}, {"role": "assistant", "content": "You're welcome."}], False),
]


def test_every_template_jinja2_renders_gives_transformers_ids():
    from transformers import AutoTokenizer
    assert TOOL, "SCORCH_TOKENIZE_IDS not set (run through ctest)"
    assert os.path.isdir(TEMPLATES), f"{TEMPLATES} missing: run tools/setup"
    vocab = os.path.join(VOCAB_DIR, "qwen2")
    names = sorted(f for f in os.listdir(TEMPLATES) if f.endswith(".jinja"))
    compared, refused, not_rendered, wrong = 0, [], 0, []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            d = os.path.join(tmp, name)
            os.makedirs(d)
            os.symlink(os.path.join(vocab, "tokenizer.json"), os.path.join(d, "tokenizer.json"))
            cfg = json.load(open(os.path.join(vocab, "tokenizer_config.json")))
            cfg.pop("chat_template", None)
            json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w"))
            src = open(os.path.join(TEMPLATES, name), encoding="utf-8").read()
            open(os.path.join(d, "chat_template.jinja"), "w", encoding="utf-8").write(src)
            hf = AutoTokenizer.from_pretrained(d)
            cases = []
            for messages, gen in CONVERSATIONS:
                try:
                    ids = hf.apply_chat_template(messages, tokenize=True, return_dict=False,
                                                 add_generation_prompt=gen, **KWARGS)
                except Exception:  # jinja2 itself does not render it (missing tools, roles, ...)
                    not_rendered += 1
                    continue
                cases.append((messages, gen, ids))
            if not cases:
                continue
            lines = "".join(json.dumps({"messages": m, "add_generation_prompt": g, "kwargs": KWARGS}) + "\n"
                            for m, g, _ in cases)
            p = subprocess.run([TOOL, d, "--chat"], input=lines, capture_output=True, text=True, check=True)
            for (messages, gen, want), out in zip(cases, map(json.loads, p.stdout.splitlines())):
                if "error" in out:
                    if "not append-only" in out["error"] and len(messages) > 2:
                        refused.append(name)
                    else:
                        wrong.append((name, messages, out["error"][:300]))
                    continue
                compared += 1
                if out["ids"] != want:
                    wrong.append((name, messages, hf.decode(want)[:300], hf.decode(out["ids"])[:300]))
    print(f"{len(names)} templates: {compared} conversations identical, {not_rendered} not rendered by jinja2, "
          f"{len(refused)} refused as not append-only ({sorted(set(refused))})")
    assert not wrong, f"{len(wrong)} differ, first: {wrong[0]}"
    assert compared >= 100
