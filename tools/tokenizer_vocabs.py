#!/usr/bin/env python3
"""Real tokenizer vocabularies for the tokenizer parity tests, built offline from a PyPI package.

tools/setup runs this. It downloads the pinned llama-cpp-python source distribution (MIT; its
vendor/llama.cpp/models/ggml-vocab-*.gguf are the vocabularies of GPT-2, Qwen2, Llama-3, DeepSeek,
Phi-3, Llama-2, StarCoder and Falcon, with llama.cpp's expected ids in *.gguf.inp/.out), checks its
sha256, extracts llama.cpp's C++ Jinja engine (common/jinja; cmake/Jinja.cmake builds it) and its
templates, and rebuilds a HuggingFace tokenizer.json + tokenizer_config.json for each with
transformers' GGUF loader (needs the `gguf` package). Then it writes `sample.jsonl` per vocabulary:
a fixed set of strings with the ids of the reference `tokenizers` library, which the C++ unit test
compares against, and chat-template fixtures (CHAT_FIXTURES) with transformers' apply_chat_template
ids. Nothing here is committed; the cache is ~/.cache/scorch/vocab by default.

It also fetches three tiktoken rank files from pinned, checksummed PyPI packages into
CACHE/tiktoken/<name>/ (TIKTOKEN below), with the source file that defines each one's pattern and
special tokens, for tests/python/test_tiktoken_parity.py. A package PyPI cannot give is reported and
skipped; the tests then fail on its missing file.

Usage: tokenizer_vocabs.py CACHE_DIR   (idempotent: a complete cache is left alone)
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

SDIST = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SPEC = "llama-cpp-python==0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
VOCABS = ["gpt-2", "qwen2", "llama-bpe", "deepseek-llm", "deepseek-coder", "phi-3", "llama-spm",
          "starcoder", "falcon"]
STAMP_VERSION = "6"  # bump when the cache layout or the sample changes

# Pieces the fixed sample (and the python parity test's random strings) are built from: ASCII words,
# code, digit runs, whitespace runs, several scripts, emoji with ZWJ, compatibility characters
# (NFKC), combining marks, special-token text and SentencePiece/byte-fallback lookalikes.
PIECES = ["a", "b", "Z", "the", " The", "hello", " world", " ", "  ", "   ", "\n", "\n\n", "\t", "\r\n",
          "0", "7", "12", "345", "2026", "1,234.5", "3.14159", "١٢٣", "٣", "é", "e\u0301", "ñ", "ß", "ﬁ",
          "Ḁ", "x̃", "日本", "語", "中文", "한국어", "Привет", "γειά", "שלום", "مرحبا", "हिन्दी", "ไทย",
          "🙂", "🤷‍♂️", "👍🏽", "'s", "'LL", "'ve", "n't", "def ", "return x", "(", ")", "{", "}", "[]",
          "::", "->", "==", "!=", "...", "!!", "?", ";", "#", "//", "/*", "\\", "\"", "'", "`",
          "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>",
          "▁", "<0x0A>", "\u00a0", "\u3000", "\u2009", "\u200b", "\ufeff", "\x00", "\x7f", "~", "$", "%"]


def sample_strings(inp_cases, n, seed):
    rng = random.Random(seed)
    out = list(inp_cases)
    for _ in range(n):
        out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(1, 24))))
    return out


def random_texts(seed, n, pieces=PIECES, long_every=0):
    """n byte strings for the python parity tests: 1-30 random pieces each; every 10th gets an invalid
    UTF-8 byte sequence (a stray continuation byte, a cut multi-byte char, 0xff) inserted; with
    long_every, every long_every-th is instead a 200-600 character word (BPE on hundreds of bytes)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        if long_every and i % long_every == 0:
            s = "".join(rng.choice("abcdefgh日本") for _ in range(rng.randint(200, 600)))
        b = s.encode("utf-8")
        if i % 10 == 0:
            k = rng.randrange(len(b) + 1)
            b = b[:k] + rng.choice([b"\x80", b"\xe6\x97", b"\xff", b"\xc3"]) + b[k:]
        out.append(b)
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# tiktoken rank files: (name, pip spec, archive file name, archive sha256, {member: file in
# CACHE/tiktoken/name}, sha256 of the rank file). The rank files' sha256 are the ones scorch
# recognises them by (csrc/tokenizer/tiktoken_vocabularies.cpp).
TIKTOKEN = [
    ("llama3", "llama-models==0.3.0", "llama_models-0.3.0-py3-none-any.whl",
     "7f77f78ff13fca09f70d76a376aff6414cd901623fb9d57e69c2f8367a73032f",
     {"llama_models/llama3/tokenizer.model": "tokenizer.model", "llama_models/llama3/tokenizer.py": "tokenizer.py"},
     "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"),
    ("qwen", "dashscope==1.24.0", "dashscope-1.24.0-py3-none-any.whl",
     "e8c5a5a2bd6db9ddbd2465a2e0bfc7a8e1734221b378c52baf9e8e54ec8a8b11",
     {"dashscope/resources/qwen.tiktoken": "qwen.tiktoken", "dashscope/tokenizers/qwen_tokenizer.py": "qwen_tokenizer.py"},
     "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"),
    ("gpt2", "openai-whisper==20250625", "openai_whisper-20250625.tar.gz",
     "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
     {"openai_whisper-20250625/whisper/assets/gpt2.tiktoken": "gpt2.tiktoken"},
     "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"),
]


def fetch_tiktoken(cache):
    """CACHE/tiktoken/NAME/: the rank file (+ the source defining its pattern) of each TIKTOKEN entry.
    Returns the names PyPI could not give (after saying so)."""
    import zipfile
    missing = []
    for name, spec, archive, archive_sha, members, rank_sha in TIKTOKEN:
        out_dir = os.path.join(cache, "tiktoken", name)
        rank_file = os.path.join(out_dir, [m for m in members.values() if not m.endswith(".py")][0])
        if os.path.exists(rank_file) and sha256(rank_file) == rank_sha:
            continue
        dl = os.path.join(cache, "download")
        path = os.path.join(dl, archive)
        if not os.path.exists(path) or sha256(path) != archive_sha:
            os.makedirs(dl, exist_ok=True)
            kind = ["--no-binary", ":all:"] if archive.endswith(".tar.gz") else ["--only-binary", ":all:"]
            r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                                *kind, "-d", dl, spec], capture_output=True, text=True)
            if r.returncode != 0 or not os.path.exists(path):
                print(f"[setup] tiktoken vocabulary {name}: cannot download {spec} from PyPI ({r.stderr.strip()[-200:]}); "
                      f"skipped, and the tiktoken parity tests will fail on it until tools/setup can fetch it")
                missing.append(name)
                continue
        got = sha256(path)
        if got != archive_sha:
            sys.exit(f"tokenizer_vocabs: {path} has sha256 {got}, expected {archive_sha}; delete it and rerun tools/setup")
        tmp = out_dir + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        if archive.endswith(".whl"):
            with zipfile.ZipFile(path) as z:
                for member, dest in members.items():
                    with z.open(member) as src, open(os.path.join(tmp, dest), "wb") as dst:
                        shutil.copyfileobj(src, dst)
        else:
            with tarfile.open(path) as tar:
                for member, dest in members.items():
                    with tar.extractfile(member) as src, open(os.path.join(tmp, dest), "wb") as dst:
                        shutil.copyfileobj(src, dst)
        got = sha256(os.path.join(tmp, os.path.basename(rank_file)))
        if got != rank_sha:
            sys.exit(f"tokenizer_vocabs: the rank file of {spec} has sha256 {got}, expected {rank_sha}")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.rename(tmp, out_dir)
        print(f"[setup] tiktoken vocabulary {name}: {out_dir}")
    return missing


def fetch_sdist(cache):
    dl = os.path.join(cache, "download")
    path = os.path.join(dl, SDIST)
    if not os.path.exists(path) or sha256(path) != SDIST_SHA256:
        os.makedirs(dl, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                        "--no-binary", ":all:", "-d", dl, SDIST_SPEC], check=True)
    got = sha256(path)
    if got != SDIST_SHA256:
        sys.exit(f"tokenizer_vocabs: {path} has sha256 {got}, expected {SDIST_SHA256}; delete it and rerun tools/setup")
    return path


def extract(sdist, cache):
    """The vocabularies, models/templates/*.jinja, the Jinja engine (common/jinja, json, unicode) and
    the MIT license -> CACHE/llama.cpp."""
    dest = os.path.join(cache, "llama.cpp")
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    wanted = ("models/ggml-vocab-", "models/templates/", "common/jinja/", "common/json.h", "common/json.cpp",
              "common/unicode.h", "common/unicode.cpp", "LICENSE")
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            if not m.isfile() or not m.name.startswith(prefix):
                continue
            rel = m.name[len(prefix):]
            if not rel.startswith(wanted):
                continue
            out = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with tar.extractfile(m) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return dest


# A bounded nesting depth for llama.cpp's Jinja engine. It evaluates and parses by recursion with no
# limit, so a template with a self-recursive macro or ten thousand nested brackets overflows the
# stack (SIGSEGV; a fuzz finding). These edits, applied to the extracted, checksummed sources each
# time this script runs (idempotent; the marker says whether a file has them), count the nesting of
# statement::execute and of the parser's recursive entry points per thread and throw the engine's
# own error types beyond JINJA_MAX_DEPTH, which JinjaTemplate turns into a UserError naming the
# template. cmake/Jinja.cmake refuses sources without the marker.
JINJA_MAX_DEPTH = 1000
JINJA_MARKER = "scorch: bounded nesting"
JINJA_GUARD = """// {marker} (tools/tokenizer_vocabs.py)
namespace {{
thread_local int scorch_nesting = 0;
struct scorch_nesting_guard {{
    scorch_nesting_guard() {{
        if (++scorch_nesting > {limit}) {{
            --scorch_nesting;
            throw std::runtime_error("template nesting deeper than {limit} levels (a recursive macro without an end, or brackets nested that deep)");
        }}
    }}
    ~scorch_nesting_guard() {{ --scorch_nesting; }}
    scorch_nesting_guard(const scorch_nesting_guard &) = delete;
    scorch_nesting_guard & operator=(const scorch_nesting_guard &) = delete;
}};
}}  // namespace
""".format(marker=JINJA_MARKER, limit=JINJA_MAX_DEPTH)
# (file, anchor that must occur exactly once, text put in its place); the guard goes after the
# file's includes, and each recursive function opens with one.
JINJA_EDITS = [
    ("jinja/runtime.cpp", "#define FILENAME \"jinja-runtime\"\n", "#define FILENAME \"jinja-runtime\"\n" + JINJA_GUARD),
    ("jinja/runtime.cpp", "value statement::execute(context & ctx) const {\n    try {\n",
     "value statement::execute(context & ctx) const {\n    try {\n        scorch_nesting_guard scorch_guard;\n"),
    ("jinja/parser.cpp", "#define FILENAME \"jinja-parser\"\n", "#define FILENAME \"jinja-parser\"\n" + JINJA_GUARD),
]
for fn in ("parse_any", "parse_expression", "parse_logical_negation_expression", "parse_unary_expression"):
    JINJA_EDITS.append(("jinja/parser.cpp", f"    statement_ptr {fn}() {{\n",
                        f"    statement_ptr {fn}() {{\n        scorch_nesting_guard scorch_guard;\n"))


def patch_jinja_engine(llama):
    """Applies JINJA_EDITS to CACHE/llama.cpp/common once."""
    common = os.path.join(llama, "common")
    for rel in sorted({e[0] for e in JINJA_EDITS}):
        path = os.path.join(common, rel)
        text = open(path, encoding="utf-8").read()
        if JINJA_MARKER in text:
            continue
        for f, anchor, replacement in JINJA_EDITS:
            if f != rel:
                continue
            if text.count(anchor) != 1:
                sys.exit(f"tools/tokenizer_vocabs.py: {path} has {text.count(anchor)} copies of the text the nesting "
                         f"bound edits (expected 1): {anchor!r}. Fix: delete {llama} and run tools/setup again")
            text = text.replace(anchor, replacement)
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(path + ".tmp", path)
        print(f"[setup] bounded the Jinja engine's nesting in {path}")


def build_vocab(models_dir, name, out_dir):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(models_dir, gguf_file=f"ggml-vocab-{name}.gguf")
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tok.save_pretrained(tmp)
    for ext in ("inp", "out"):
        shutil.copy(os.path.join(models_dir, f"ggml-vocab-{name}.gguf.{ext}"), os.path.join(tmp, f"llama_cpp.{ext}"))
    inp = open(os.path.join(tmp, "llama_cpp.inp"), encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
    ref = Tokenizer.from_file(os.path.join(tmp, "tokenizer.json"))
    with open(os.path.join(tmp, "sample.jsonl"), "w", encoding="utf-8") as f:
        for s in sample_strings(inp, 300, seed=sum(map(ord, name))):
            ref.encode_special_tokens = True  # scorch's default: special-token text stays text
            plain = ref.encode(s, add_special_tokens=False).ids
            bos = ref.encode(s, add_special_tokens=True).ids
            ref.encode_special_tokens = False
            special = ref.encode(s, add_special_tokens=False).ids
            decoded = ref.decode(plain, skip_special_tokens=True)
            f.write(json.dumps({"text": s, "ids": plain, "ids_parse_special": special, "ids_add_special": bos,
                                "decoded": decoded}, ensure_ascii=False) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp, out_dir)


# Chat-template fixtures: (fixture, vocabulary, template in llama.cpp's models/templates, variables).
# date_string pins the Llama-3 templates' date line (they call strftime_now otherwise).
CHAT_FIXTURES = [
    ("qwen2.5", "qwen2", "Qwen-Qwen2.5-7B-Instruct.jinja", {}),
    ("llama-3.1", "llama-bpe", "meta-llama-Llama-3.1-8B-Instruct.jinja", {"date_string": "26 Jul 2024"}),
    ("llama-3.2", "llama-bpe", "meta-llama-Llama-3.2-3B-Instruct.jinja", {"date_string": "26 Jul 2024"}),
    ("phi-3.5", "phi-3", "microsoft-Phi-3.5-mini-instruct.jinja", {}),
    ("qwen3", "qwen2", "Qwen-Qwen3-0.6B.jinja", {"enable_thinking": False}),
]
CONVERSATIONS = [
    ([{"role": "user", "content": "What is 2+3?"}], True),
    ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}], False),
    ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a prime."},
      {"role": "assistant", "content": "7"}, {"role": "user", "content": "Another one, in 日本語?"}], True),
    ([{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "  two\n\nlines  "},
      {"role": "assistant", "content": "{\"a\": 1}"}, {"role": "user", "content": "🙂 again"},
      {"role": "assistant", "content": "{\"a\": 2}"}], False),
]


def build_chat_fixture(cache, llama, fixture, vocab, template, kwargs):
    """CACHE/chat/FIXTURE: the vocabulary's tokenizer files, the template as chat_template.jinja, and
    chat_sample.jsonl with transformers' apply_chat_template ids for CONVERSATIONS."""
    from transformers import AutoTokenizer
    out_dir = os.path.join(cache, "chat", fixture)
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    src = os.path.join(cache, vocab)
    shutil.copy(os.path.join(src, "tokenizer.json"), tmp)
    cfg = json.load(open(os.path.join(src, "tokenizer_config.json")))
    cfg.pop("chat_template", None)
    json.dump(cfg, open(os.path.join(tmp, "tokenizer_config.json"), "w"), indent=2)
    shutil.copy(os.path.join(llama, "models", "templates", template), os.path.join(tmp, "chat_template.jinja"))
    tok = AutoTokenizer.from_pretrained(tmp)
    with open(os.path.join(tmp, "chat_sample.jsonl"), "w", encoding="utf-8") as f:
        for messages, gen in CONVERSATIONS:
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, **kwargs)
            ids = tok.apply_chat_template(messages, tokenize=True, return_dict=False, add_generation_prompt=gen, **kwargs)
            f.write(json.dumps({"messages": messages, "add_generation_prompt": gen, "kwargs": kwargs, "text": text,
                                "ids": ids}, ensure_ascii=False) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp, out_dir)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    cache = sys.argv[1]
    os.makedirs(cache, exist_ok=True)
    fetch_tiktoken(cache)
    stamp = os.path.join(cache, "complete")
    want = f"{STAMP_VERSION} {SDIST_SHA256} {' '.join(VOCABS)}"
    if os.path.exists(stamp) and open(stamp).read().strip() == want:
        patch_jinja_engine(os.path.join(cache, "llama.cpp"))
        return
    os.makedirs(cache, exist_ok=True)
    llama = extract(fetch_sdist(cache), cache)
    patch_jinja_engine(llama)
    for name in VOCABS:
        build_vocab(os.path.join(llama, "models"), name, os.path.join(cache, name))
        print(f"[setup] tokenizer vocabulary {name}: {os.path.join(cache, name)}")
    for fixture, vocab, template, kwargs in CHAT_FIXTURES:
        build_chat_fixture(cache, llama, fixture, vocab, template, kwargs)
        print(f"[setup] chat template fixture {fixture}: {os.path.join(cache, 'chat', fixture)}")
    with open(stamp, "w") as f:
        f.write(want + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    main()
