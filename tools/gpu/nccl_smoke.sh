#!/usr/bin/env bash
# A few SFT steps of a tiny model under tools/launch with dist.backend nccl on one GPU (world size
# 1): proves the NCCL process group of this build initialises, all-reduces and shuts down.
#   tools/gpu/nccl_smoke.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
b="${1:-build}"
d=$(mktemp -d /tmp/scorch-nccl-XXXXXX)
trap 'rm -rf "$d"' EXIT
cat > "$d/model.json" <<'JSON'
{"model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
 "rope_theta": 10000.0, "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
JSON
tok=configs/quickstart/tokenizer.model
"$b/scorch" make-data --task arith --n 64 --seed 3 --out "$d/train.jsonl" >/dev/null
"$b/scorch" init-model --config "$d/model.json" --out "$d/base" --seed 5 --tokenizer $tok >/dev/null
cat > "$d/job.yaml" <<YAML
trainer: sft
model: {path: $d/base, device: cuda}
tokenizer: {path: $tok, chat_template: plain}
data: {train: $d/train.jsonl, max_length: 96}
train: {max_steps: 5, micro_batch_size: 8}
dist: {backend: nccl, timeout_s: 60}
log: {progress: false}
YAML
python3 tools/launch --nproc-per-node 1 -- "$b/scorch" train "$d/job.yaml" --run-dir "$d/run"
grep -c loss "$d/run/metrics.jsonl" | xargs -I{} echo "nccl smoke: {} metrics lines, export: $(ls "$d/run/export" | tr '\n' ' ')"
