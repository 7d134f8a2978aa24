"""An exported scorch model is a HuggingFace model: transformers loads `scorch export` output and
greedy-decodes exactly the tokens `scorch generate` produces."""
import json
import os
import subprocess
import tempfile

import pytest
import torch

transformers = pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCORCH = os.environ.get("SCORCH_BIN", os.path.join(ROOT, "build", "scorch"))
TOKENIZER = os.path.join(ROOT, "configs", "quickstart", "tokenizer.model")

CONFIG = {
    "model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    # A wide init makes the logits peaked, so greedy argmax is not decided by float noise.
    "initializer_range": 0.4, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
}


def run(*args):
    r = subprocess.run([SCORCH, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def test_transformers_greedy_matches_scorch_generate_on_exported_model():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/config.json", "w") as f:
            json.dump(CONFIG, f)
        run("init-model", "--config", f"{tmp}/config.json", "--out", f"{tmp}/init", "--seed", "3", "--tokenizer", TOKENIZER)
        run("export", "--model", f"{tmp}/init", "--out", f"{tmp}/export")
        prompts = ["Compute 12+7.", "Compute 345-99+1.", "User: Compute 2+2.\nAssistant:"]
        with open(f"{tmp}/prompts.jsonl", "w") as f:
            for p in prompts:
                f.write(json.dumps({"prompt": p}) + "\n")
        run("generate", "--model", f"{tmp}/export", "--prompts", f"{tmp}/prompts.jsonl", "--out", f"{tmp}/out.jsonl",
            "--temperature", "0", "--max-new-tokens", "12", "--chat-template", "none")
        rows = [json.loads(line) for line in open(f"{tmp}/out.jsonl")]
        assert len(rows) == len(prompts)
        model = transformers.AutoModelForCausalLM.from_pretrained(f"{tmp}/export", torch_dtype=torch.float32)
        model.eval()
        for row in rows:
            ids = torch.tensor([row["prompt_ids"]])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                                 eos_token_id=2, pad_token_id=3)
            theirs = out[0, ids.shape[1]:].tolist()
            ours = row["completion_ids"]
            assert ours == theirs[: len(ours)], (row["prompt"], ours, theirs)
            assert len(ours) == len(theirs) or (ours and ours[-1] == 2)
