"""Helpers the Python benchmarks share: repository paths, model shapes, and running a command
(optionally measuring the peak RSS of its process)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(ROOT, "configs", "quickstart", "tokenizer.model")
QUICKSTART = json.load(open(os.path.join(ROOT, "configs", "quickstart", "model_config.json")))
# Qwen2.5-0.5B's shape (random weights; scorch's 512-token tokenizer inside a 151936 vocabulary).
QWEN2_5_0_5B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936,
                "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 4096,
                "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
                "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}


def run(cmd, **kw):
    """Runs cmd capturing its output; exits with the tail of it when the command fails."""
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}")
    return r


def peak_rss_mb(cmd):
    """Runs cmd in a fresh child and returns (stdout, max RSS of that child in MB)."""
    code = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
            "sys.stdout.write(r.stdout);sys.stderr.write(r.stderr[-3000:]);"
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);sys.exit(r.returncode)")
    r = run([sys.executable, "-c", code, *cmd])
    lines = r.stdout.strip().splitlines()
    return "\n".join(lines[:-1]), int(lines[-1].split()[1]) / 1024
