#!/usr/bin/env bash
# torchrun --no-python launching `scorch train` on 2 CPU ranks (Gloo): the rendezvous through
# torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE) must work and the run must finish.
set -euo pipefail
: "${SCORCH_BIN:?}" "${SCORCH_PYTHON:?}"
src="$(cd "$(dirname "$0")/../.." && pwd)"
d=$(mktemp -d /tmp/scorch-test-torchrun-XXXXXX)
trap 'rm -rf "$d"' EXIT
cat > "$d/model.json" <<'JSON'
{"model_type": "llama", "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
 "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
JSON
tok="$src/configs/quickstart/tokenizer.model"
"$SCORCH_BIN" make-data --task arith --n 32 --seed 3 --out "$d/train.jsonl" >/dev/null
"$SCORCH_BIN" init-model --config "$d/model.json" --out "$d/base" --seed 5 --tokenizer "$tok" >/dev/null
cat > "$d/job.yaml" <<YAML
trainer: sft
model: {path: $d/base}
tokenizer: {path: $tok, chat_template: plain}
data: {train: $d/train.jsonl, max_length: 96}
train: {max_steps: 3, micro_batch_size: 2, threads: 1}
dist: {timeout_s: 60}
log: {level: warn, progress: false}
YAML
OMP_NUM_THREADS=1 "$SCORCH_PYTHON" -m torch.distributed.run --standalone --nproc-per-node 2 --no-python \
  "$SCORCH_BIN" train "$d/job.yaml" --run-dir "$d/run"
lines=$(wc -l < "$d/run/metrics.jsonl")
[ "$lines" -eq 3 ] || { echo "expected 3 metrics lines, got $lines" >&2; exit 1; }
[ -f "$d/run/export/model.safetensors" ] || { echo "no export" >&2; exit 1; }
echo "torchrun smoke ok"
