"""Parity of scorch's Llama-family forward with transformers.

For llama with GQA, llama with tied embeddings, qwen2 (q/k/v bias), mistral, and llama with llama3
rope scaling + attention bias (small, random, fp32):
  1. transformers creates and saves the model; scorch computes logits for random token batches of
     several lengths; max |delta| <= 1e-4 against transformers' logits;
  2. `scorch init-model` writes a model; transformers loads it (no missing/unexpected keys) and the
     logits agree the same way;
  3. load -> `scorch export` -> load is bit-identical (every tensor, and transformers' logits).
scorch's side runs through `scorch_model_forward logits` (tools/model_forward/model_forward_main.cpp).
Environment: SCORCH_BIN (the scorch CLI) and SCORCH_MODEL_FORWARD; registered by tests/model/CMakeLists.txt.
"""
import json
import os
import subprocess

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

SCORCH_BIN = os.environ.get("SCORCH_BIN", "")
FORWARD_BIN = os.environ.get("SCORCH_MODEL_FORWARD", "")
if not (os.path.exists(SCORCH_BIN) and os.path.exists(FORWARD_BIN)):
    pytest.skip("set SCORCH_BIN and SCORCH_MODEL_FORWARD (ctest does)", allow_module_level=True)

TOL = 1e-4
LENGTHS = (1, 7, 33)
SMALL = dict(vocab_size=211, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=8, max_position_embeddings=256, rms_norm_eps=1e-5)


def make_config(name):
    if name == "llama_gqa":
        return transformers.LlamaConfig(**SMALL, num_key_value_heads=2, rope_theta=500000.0)
    if name == "llama_tied":
        return transformers.LlamaConfig(**SMALL, num_key_value_heads=4, tie_word_embeddings=True)
    if name == "qwen2":
        return transformers.Qwen2Config(**SMALL, num_key_value_heads=2, rope_theta=1000000.0)
    if name == "mistral":
        return transformers.MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=4096)
    if name == "llama_llama3_rope":
        return transformers.LlamaConfig(
            **SMALL, num_key_value_heads=2, attention_bias=True,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
                          "rope_theta": 10000.0})
    raise ValueError(name)


CONFIGS = ["llama_gqa", "llama_tied", "qwen2", "mistral", "llama_llama3_rope"]


def randomize(model, seed):
    """Weights far from init scale, so attention is not uniform and every tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name:
                p.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.3 * noise)


def token_batches(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    return {f"input_ids.{t}": torch.randint(0, vocab, (3, t), generator=g) for t in LENGTHS}


def scorch_logits(model_dir, batches, tmp):
    inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    save_file(batches, inp)
    r = subprocess.run([FORWARD_BIN, "logits", "--model", model_dir, "--input", inp, "--output", out],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = load_file(out)
    return {k.replace("input_ids", "logits"): res[k.replace("input_ids", "logits")] for k in batches}


def hf_logits(model, batches):
    with torch.no_grad():
        return {k.replace("input_ids", "logits"): model(input_ids=v).logits.float() for k, v in batches.items()}


def max_delta(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def load_hf(path):
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model.eval()


@pytest.mark.parametrize("name", CONFIGS)
def test_transformers_saves_scorch_matches_logits(name, tmp_path):
    torch.manual_seed(0)
    config = make_config(name)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    randomize(model, seed=1)
    hf_dir = str(tmp_path / "hf")
    model.save_pretrained(hf_dir)
    batches = token_batches(config.vocab_size, seed=2)
    ours = scorch_logits(hf_dir, batches, str(tmp_path))
    theirs = hf_logits(model, batches)
    scale = max(v.abs().max().item() for v in theirs.values())
    assert scale > 1.0, "logits should be far from zero for a meaningful comparison"
    assert max_delta(ours, theirs) <= TOL

    # 3. load -> export -> load is bit-identical.
    out = str(tmp_path / "exported")
    r = subprocess.run([SCORCH_BIN, "export", "--model", hf_dir, "--out", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    before, after = load_file(os.path.join(hf_dir, "model.safetensors")), load_file(os.path.join(out, "model.safetensors"))
    before.pop("lm_head.weight", None) if config.tie_word_embeddings else None
    assert sorted(before) == sorted(after)
    for k in before:
        assert before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]), k
    reloaded = load_hf(out)
    again = hf_logits(reloaded, batches)
    assert all(torch.equal(again[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("name", CONFIGS)
def test_scorch_init_model_loads_in_transformers(name, tmp_path):
    config = make_config(name)
    cfg_path = str(tmp_path / "config.json")
    with open(cfg_path, "w") as f:
        f.write(config.to_json_string())
    out = str(tmp_path / "init")
    r = subprocess.run([SCORCH_BIN, "init-model", "--config", cfg_path, "--out", out, "--seed", "5"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = load_hf(out)
    assert model.config.tie_word_embeddings == config.tie_word_embeddings
    std = model.model.layers[0].mlp.gate_proj.weight.std().item()
    assert abs(std - config.initializer_range) < 0.1 * config.initializer_range
    batches = token_batches(config.vocab_size, seed=3)
    assert max_delta(scorch_logits(out, batches, str(tmp_path)), hf_logits(model, batches)) <= TOL
    with open(os.path.join(out, "generation_config.json")) as f:
        assert isinstance(json.load(f), dict)
