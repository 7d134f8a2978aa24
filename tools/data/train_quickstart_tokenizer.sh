#!/usr/bin/env bash
# Trains configs/quickstart/tokenizer.model: the quickstart's SentencePiece model, fitted to the
# arithmetic task family (`scorch make-data --task arith`), the SCoRe correction instruction and
# the chat templates' words, with Debian's spm_train (package `sentencepiece`).
#
# Choices (the quickstart model must learn column arithmetic from a few minutes of CPU training):
#   vocab 512, BPE, byte_fallback (any text encodes; unseen bytes become <0xNN>)
#   split_digits: every digit is its own token, so numbers are written digit by digit
#   add_dummy_prefix=false, remove_extra_whitespaces=false, normalization identity: encoding is
#     byte-exact and segments encoded separately concatenate to the same text (chat templates)
#   ids: <unk>=0, <s>=1 (BOS), </s>=2 (EOS), <pad>=3; user-defined <|im_start|>=4, <|im_end|>=5
#     (chatml's markers, matched as whole tokens in text)
#
# Usage: tools/data/train_quickstart_tokenizer.sh [SCORCH_BINARY] (default build/scorch)
# The output is byte-identical across runs for a given spm_train version (single thread, fixed seeds).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
scorch="${1:-$here/build/scorch}"
out="$here/configs/quickstart"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Task text: the default difficulty plus a harder one, so every number length the flags allow is seen.
"$scorch" make-data --task arith --n 20000 --seed 1 --out "$work/a.jsonl" --with-correction 20
"$scorch" make-data --task arith --n 5000 --seed 2 --out "$work/b.jsonl" --min-ops 1 --max-ops 5 --max-operand 999
# One text line per prompt / completion / message content (JSON escapes undone).
python3 - "$work/a.jsonl" "$work/b.jsonl" > "$work/corpus.txt" <<'PY'
import json, sys
for path in sys.argv[1:]:
    for line in open(path):
        ex = json.loads(line)
        for key in ("prompt", "completion"):
            if key in ex:
                print(ex[key])
        for m in ex.get("messages", []):
            print(m["content"])
PY
# The chat templates' words (csrc/tokenizer/chat_template.h), a few times each.
for i in 1 2 3 4 5; do
  printf '%s\n' "User: " "Assistant: " "System: " "user" "assistant" "system" "[INST] " " [/INST]" \
    "<<SYS>>" "<</SYS>>" "You are a helpful assistant." "Is the answer correct? Yes" "Is the answer correct? No" \
    >> "$work/corpus.txt"
done

# Relative names: the model records them, and the output must not depend on the temp dir name.
(cd "$work" && spm_train --input=corpus.txt --model_prefix=tokenizer \
  --vocab_size=512 --model_type=bpe --character_coverage=1.0 \
  --byte_fallback=true --split_digits=true \
  --add_dummy_prefix=false --remove_extra_whitespaces=false --normalization_rule_name=identity \
  --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3 \
  --user_defined_symbols='<|im_start|>,<|im_end|>' \
  --hard_vocab_limit=false --num_threads=1 --minloglevel=1)
mkdir -p "$out"
cp "$work/tokenizer.model" "$out/tokenizer.model"
echo "wrote $out/tokenizer.model ($(wc -c < "$out/tokenizer.model") bytes)"
