"""scorch's rendering of models' own Jinja chat templates (llama.cpp's engine, token-level turns)
against transformers' apply_chat_template ids, for every template in llama.cpp's
models/templates/*.jinja (fetched by tools/setup into $SCORCH_VOCAB_DIR) that jinja2 renders, on
single-turn, system + multi-turn and generation-prompt conversations.

Each template is paired with the Qwen2 vocabulary (the only way to run 70 templates offline). A
model's own tokenizer has its template's markup ("<|start_header_id|>", "<start_of_turn>",
"[INST]", "<｜User｜>") as special tokens; the Qwen2 vocabulary does not, and plain-text markup
would make both sides' ids depend on BPE merges across the markup that no real model sees. So each
template's markup -- found in jinja2's own rendering of the conversations, outside the message
texts -- is added as special tokens to a copy of the Qwen2 tokenizer.json that transformers and
scorch both load. The comparison stays independent: transformers renders with jinja2 and encodes
the whole text with `tokenizers`; scorch renders with llama.cpp's engine and builds the ids turn by
turn with its own tokenizer.

scorch refuses two kinds of template, by design (README "Chat templates"), and the test checks each
refusal against jinja2's own renderings before accepting it:
- not append-only: some prefix of the conversation renders to text that the longer conversation
  does not start with (Qwen3 drops earlier <think> blocks; DeepSeek-R1 prompts with
  "<｜Assistant｜><think>\n" but renders a finished reply without it);
- no end-of-turn token after the conversation's last assistant message (the text ends with the
  reply: the template closes a turn only when another message follows).
scorch builds ids turn by turn, so where transformers' whole-text encoding merges tokens across the
end of a generation prompt (or of a message), scorch's ids must instead equal transformers' encoding
of the same text cut at those points (piecewise_ids): the tokens a model sees at inference.

Everything else must give identical ids, except the templates in KNOWN_DIFFERENCES: each is listed
with the reason, and the test fails if one of them starts to match (so the list cannot go stale).
"""
import json
import os
import re
import subprocess
import tempfile

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

# Differences scorch still has (README "Chat templates"), by template: the reason.
KNOWN_DIFFERENCES = {
    # No special token closes a reply ("\n\n" does, as plain text), so scorch cannot mark where a
    # completion ends and refuses conversations with replies.
    "llama-cpp-rwkv-world.jinja": "replies end with plain text, no special token",
}


def piecewise_ids(hf, messages, gen):
    """transformers' ids with the rendering cut where scorch's turns meet and each piece encoded on
    its own: after each prefix of the conversation that renders on its own, and where each assistant
    reply's generation prompt ends. That is what a model sees at inference (the prompt's tokens, then
    the tokens it generates), so scorch keeps those cuts even where encoding the whole text at once
    merges across one (Qwen3.5's generation prompt ends in "<think>\n", its finished reply has
    "<think>\n\n": two newline tokens at inference, one in a whole-text encoding)."""
    full = render(hf, messages, gen)
    cuts = {0, len(full)}
    for k in range(len(messages)):
        if messages[k]["role"] == "assistant":
            g = render(hf, messages[:k], True)
            if g is not None and full.startswith(g):
                cuts.add(len(g))
        if k + 1 < len(messages) or gen:
            p = render(hf, messages[:k + 1], False)
            if p is not None and full.startswith(p):
                cuts.add(len(p))
    cuts = sorted(cuts)
    ids = []
    for a, b in zip(cuts, cuts[1:]):
        ids += hf(full[a:b], add_special_tokens=False)["input_ids"]
    return ids


# Markup that models' tokenizers hold as special tokens: <|...|>, <｜...｜>, [INST]-style, <tag>/</tag>,
# and MiniMax's "]~!b[", "]~b]" and "[e~[".
MARKUP = re.compile(r"<\|[^<>|\s]{1,48}\|>|<｜[^｜\s]{1,48}｜>|\[/?[A-Z][A-Z_]{1,30}\]|</?[A-Za-z][\w\-:.]{0,30}>"
                    r"|\]~!b\[|\]~b\]|\[e~\[")


def markup_of(texts, contents):
    found = set()
    for text in texts:
        for c in (c for c in contents if len(c) > 2):  # message text is data, not markup
            text = text.replace(c, "\x00")
        found.update(MARKUP.findall(text))
    return sorted(found)


def write_tokenizer(d, vocab, template, markup):
    """vocab's tokenizer.json with `markup` added as special tokens, its tokenizer_config.json, `template`."""
    tok = json.load(open(os.path.join(vocab, "tokenizer.json"), encoding="utf-8"))
    cfg = json.load(open(os.path.join(vocab, "tokenizer_config.json"), encoding="utf-8"))
    cfg.pop("chat_template", None)
    have = {t["content"] for t in tok["added_tokens"]}
    next_id = max(max(tok["model"]["vocab"].values()), max(t["id"] for t in tok["added_tokens"])) + 1
    for m in markup:
        if m in have:
            continue
        entry = {"id": next_id, "content": m, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
        tok["added_tokens"].append(entry)
        next_id += 1
    os.makedirs(d, exist_ok=True)
    json.dump(tok, open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
    json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8"), ensure_ascii=False)
    open(os.path.join(d, "chat_template.jinja"), "w", encoding="utf-8").write(template)


def render(hf, messages, gen):
    try:
        return hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, **KWARGS)
    except Exception:
        return None


def jinja2_append_only(hf, messages):
    """Whether jinja2's renderings of the conversation's prefixes extend each other (a trailing EOS
    text that closes a finished conversation may go, as scorch allows), and each assistant reply
    follows the generation prompt of the messages before it."""
    eos = hf.eos_token or ""
    prev = None
    for k in range(len(messages)):
        cur = render(hf, messages[:k + 1], False)
        if cur is None:
            return False
        if messages[k]["role"] == "assistant":
            gen = render(hf, messages[:k], True)
            if gen is None or not cur.startswith(gen):
                return False
        if prev is not None and not (cur.startswith(prev) or (eos and prev.endswith(eos) and cur.startswith(prev[:-len(eos)]))):
            return False
        prev = cur
    return True


def test_every_template_jinja2_renders_gives_transformers_ids():
    from transformers import AutoTokenizer
    assert TOOL, "SCORCH_TOKENIZE_IDS not set (run through ctest)"
    assert os.path.isdir(TEMPLATES), f"{TEMPLATES} missing: run tools/setup"
    vocab = os.path.join(VOCAB_DIR, "qwen2")
    names = sorted(f for f in os.listdir(TEMPLATES) if f.endswith(".jinja"))
    contents = sorted({m["content"] for conv, _ in CONVERSATIONS for m in conv}, key=len, reverse=True)
    compared, refused, no_end, not_rendered, wrong, merged = 0, [], [], 0, [], []
    base = AutoTokenizer.from_pretrained(vocab)  # renders each template once to find its markup
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            src = open(os.path.join(TEMPLATES, name), encoding="utf-8").read()
            texts = []
            for messages, gen in CONVERSATIONS:
                try:
                    texts.append(base.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen,
                                                          chat_template=src, **KWARGS))
                except Exception:  # jinja2 itself does not render it (missing tools, roles, ...)
                    texts.append(None)
            if all(t is None for t in texts):
                not_rendered += len(texts)
                continue
            d = os.path.join(tmp, name, "tok")
            write_tokenizer(d, vocab, src, markup_of([t for t in texts if t], contents))
            hf = AutoTokenizer.from_pretrained(d)
            cases = []
            for (messages, gen), text in zip(CONVERSATIONS, texts):
                if text is None:
                    not_rendered += 1
                    continue
                ids = hf.apply_chat_template(messages, tokenize=True, return_dict=False, add_generation_prompt=gen,
                                             **KWARGS)
                cases.append((messages, gen, ids))
            lines = "".join(json.dumps({"messages": m, "add_generation_prompt": g, "kwargs": KWARGS}) + "\n"
                            for m, g, _ in cases)
            p = subprocess.run([TOOL, d, "--chat"], input=lines, capture_output=True, text=True, check=True)
            for (messages, gen, want), out in zip(cases, map(json.loads, p.stdout.splitlines())):
                if "error" in out:
                    text = render(hf, messages, gen)
                    if "not append-only" in out["error"] and not jinja2_append_only(hf, messages):
                        refused.append(name)
                    elif ("writes no end-of-turn token" in out["error"] and messages[-1]["role"] == "assistant"
                          and text.rstrip().endswith(messages[-1]["content"])):
                        no_end.append(name)
                    else:
                        wrong.append((name, messages, out["error"][:300]))
                    continue
                compared += 1
                got = out["ids"]
                if got != want and got == piecewise_ids(hf, messages, gen):
                    merged.append(name)  # BPE merges across a turn boundary only in the whole-text encoding
                    continue
                if got != want:
                    k = next((i for i, (x, y) in enumerate(zip(want, got)) if x != y), min(len(want), len(got)))
                    wrong.append((name, messages, f"first difference at token {k}: transformers "
                                  f"{hf.decode(want[max(0, k - 3):k + 4])!r} vs scorch {hf.decode(got[max(0, k - 3):k + 4])!r}"))
    print(f"{len(names)} templates: {compared} conversations identical, {not_rendered} not rendered by jinja2, "
          f"{len(refused)} refused as not append-only ({sorted(set(refused))}), {len(no_end)} refused for no "
          f"end-of-turn token after the last reply ({sorted(set(no_end))}); {len(merged)} equal to transformers' "
          f"encoding turn by turn, where the whole-text encoding merges across a turn boundary ({sorted(set(merged))})")
    for w in wrong:
        print("DIFFERS:", w[0], w[2])
    unexpected = [w for w in wrong if w[0] not in KNOWN_DIFFERENCES]
    assert not unexpected, f"{len(unexpected)} differ, first: {unexpected[0]}"
    fixed = sorted(set(KNOWN_DIFFERENCES) - {w[0] for w in wrong})
    assert not fixed, f"{fixed} now match: remove them from KNOWN_DIFFERENCES"
    assert compared - len(merged) >= 100  # identical to the whole-text encoding
