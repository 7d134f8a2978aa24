"""scorch's LoRA adapters against PEFT (fp32, a tiny Qwen2 model with q/k/v biases).

1. scorch trains a LoRA adapter on every linear module by SFT (3 steps, so lora_B is far from its
   zero init); peft.PeftModel.from_pretrained(base, run/export) loads the exported directory with no
   missing or unexpected keys and gives the logits scorch computes with that adapter, max |delta|
   <= 1e-4; `scorch export --merge` gives the logits of PEFT's merge_and_unload() the same way.
2. An adapter PEFT creates and saves (random lora_B, rsLoRA scaling, a subset of modules) loads in
   scorch with the same logits.
scorch's side runs through `scorch_model_forward logits --adapter DIR`.
Environment: SCORCH_BIN and SCORCH_MODEL_FORWARD; registered by tests/model/CMakeLists.txt.
"""
import json
import os
import subprocess

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
from safetensors.torch import load_file, save_file  # noqa: E402

SCORCH_BIN = os.environ.get("SCORCH_BIN", "")
FORWARD_BIN = os.environ.get("SCORCH_MODEL_FORWARD", "")
if not (os.path.exists(SCORCH_BIN) and os.path.exists(FORWARD_BIN)):
    pytest.skip("set SCORCH_BIN and SCORCH_MODEL_FORWARD (ctest does)", allow_module_level=True)

TOL = 1e-4
SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(SOURCE, "configs", "quickstart", "tokenizer.model")
MODEL = {"model_type": "qwen2", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
         "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora")
    (d / "model.json").write_text(json.dumps(MODEL))
    run(SCORCH_BIN, "init-model", "--config", d / "model.json", "--out", d / "base", "--seed", "5",
        "--tokenizer", TOKENIZER)
    return d


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, MODEL["vocab_size"], (3, 13), generator=g)


def scorch_logits(model_dir, ids, tmp, adapter=None):
    inp, out = os.path.join(tmp, "in.safetensors"), os.path.join(tmp, "out.safetensors")
    save_file({"input_ids": ids}, inp)
    extra = ["--adapter", adapter] if adapter else []
    run(FORWARD_BIN, "logits", "--model", model_dir, "--input", inp, "--output", out, *extra)
    return load_file(out)["logits"]


def load_base(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def peft_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_scorch_trained_adapter_loads_in_peft_with_the_same_logits(base, tmp_path):
    run(SCORCH_BIN, "make-data", "--task", "arith", "--n", "32", "--seed", "3", "--out", tmp_path / "train.jsonl")
    (tmp_path / "job.yaml").write_text(
        f"trainer: sft\nseed: 3\nmodel: {{path: {base / 'base'}}}\n"
        f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
        f"data: {{train: {tmp_path / 'train.jsonl'}, max_length: 64}}\n"
        "train: {max_steps: 3, micro_batch_size: 4, threads: 1}\noptim: {learning_rate: 2.0e-2}\n"
        "lora: {enabled: true, r: 4, lora_alpha: 8, target_modules: all-linear}\nlog: {level: warn, progress: false}\n")
    run(SCORCH_BIN, "train", tmp_path / "job.yaml", "--run-dir", tmp_path / "run")
    adapter = str(tmp_path / "run" / "export")
    weights = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    assert len(weights) == 2 * 7 * 2
    assert min(w.abs().max().item() for k, w in weights.items() if "lora_B" in k) > 0  # trained
    # The tokenizer the run used travels with the adapter, as TRL saves it (byte-identical).
    with open(TOKENIZER, "rb") as want, open(os.path.join(adapter, "tokenizer.model"), "rb") as got:
        assert got.read() == want.read()

    model = peft.PeftModel.from_pretrained(load_base(base / "base"), adapter).eval()
    # Every adapter tensor of the file reached the model (PEFT warns, not fails, on missing keys).
    loaded = peft.get_peft_model_state_dict(model)
    assert set(loaded) == set(weights)
    for k in weights:
        assert torch.equal(loaded[k], weights[k]), k
    ids = batch()
    ours = scorch_logits(str(base / "base"), ids, str(tmp_path), adapter)
    theirs = peft_logits(model, ids)
    assert (ours - theirs).abs().max().item() <= TOL
    assert (theirs - peft_logits(load_base(base / "base"), ids)).abs().max().item() > 1e-2  # the adapter matters

    run(SCORCH_BIN, "export", "--model", adapter, "--merge", "--out", tmp_path / "merged")
    merged = peft_logits(model.merge_and_unload(), ids)
    assert (scorch_logits(str(tmp_path / "merged"), ids, str(tmp_path)) - merged).abs().max().item() <= TOL


def test_peft_made_adapter_loads_in_scorch_with_the_same_logits(base, tmp_path):
    torch.manual_seed(0)
    config = peft.LoraConfig(r=8, lora_alpha=16, use_rslora=True, target_modules=["k_proj", "o_proj", "up_proj"],
                             task_type="CAUSAL_LM")
    model = peft.get_peft_model(load_base(base / "base"), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.1 * torch.randn(p.shape))
    model.eval()
    model.save_pretrained(tmp_path / "adapter")
    ids = batch(1)
    ours = scorch_logits(str(base / "base"), ids, str(tmp_path), str(tmp_path / "adapter"))
    assert (ours - peft_logits(model, ids)).abs().max().item() <= TOL


def test_lora_on_a_model_with_fused_projections_is_refused(tmp_path):
    """phi3 keeps qkv_proj / gate_up_proj fused in its HF files: an adapter on scorch's separate
    projections would not load in PEFT, so LoRA training is refused up front (exit 2)."""
    phi3 = dict(MODEL, model_type="phi3", architectures=["Phi3ForCausalLM"])
    (tmp_path / "model.json").write_text(json.dumps(phi3))
    run(SCORCH_BIN, "init-model", "--config", tmp_path / "model.json", "--out", tmp_path / "base",
        "--tokenizer", TOKENIZER)
    run(SCORCH_BIN, "make-data", "--task", "arith", "--n", "8", "--seed", "3", "--out", tmp_path / "train.jsonl")
    (tmp_path / "job.yaml").write_text(
        f"trainer: sft\nmodel: {{path: {tmp_path / 'base'}}}\n"
        f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
        f"data: {{train: {tmp_path / 'train.jsonl'}, max_length: 64}}\n"
        "train: {max_steps: 1, micro_batch_size: 2, threads: 1}\n"
        "lora: {enabled: true, r: 4, target_modules: all-linear}\n")
    r = subprocess.run([SCORCH_BIN, "train", str(tmp_path / "job.yaml"), "--run-dir", str(tmp_path / "run")],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "qkv_proj" in r.stderr and "lora.enabled: false" in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "run" / "export")
