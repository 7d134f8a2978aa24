"""Model families and sliding-window attention against transformers (small, random, fp32).

For each configuration (transformers builds and saves it; several per family: tied / untied
embeddings, GQA ratios, a sliding window shorter than the prompts or none):
  1. logits of random token batches (lengths 1, 7, 33) equal transformers' within 1e-4, and
     `scorch export` writes exactly transformers' tensor names and bits, and transformers loads the
     export and computes the same logits;
  2. greedy generation of 16 tokens for a ragged batch of prompts longer than the window, through
     `scorch generate` with dynamic steps, static steps and static steps with fused decode attention,
     equals transformers' generate on each prompt alone;
  3. one SFT and one GRPO run per family through the CLI.
Environment: SCORCH_BIN and SCORCH_MODEL_FORWARD (registered by tests/model/CMakeLists.txt).
"""
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_model_parity import (SCORCH_BIN, SMALL, TOL, hf_logits, load_hf, max_delta,  # noqa: E402
                               randomize, scorch_logits, token_batches)

NEW_TOKENS = 16
EOS = 2
PROMPT_LENGTHS = (21, 12, 30)  # every prompt longer than the windows below


def make_config(name):
    if name == "mistral_window":
        return transformers.MistralConfig(**SMALL, num_key_value_heads=2, sliding_window=8)
    if name == "mistral_window_tied":
        return transformers.MistralConfig(**SMALL, num_key_value_heads=8, sliding_window=5, tie_word_embeddings=True)
    if name == "qwen2_window_layers":
        # layers 0 full, 1 and 2 windowed (max_window_layers = 1)
        return transformers.Qwen2Config(**{**SMALL, "num_hidden_layers": 3}, num_key_value_heads=4,
                                        use_sliding_window=True, sliding_window=6, max_window_layers=1)
    if name == "qwen2_window_off":
        return transformers.Qwen2Config(**SMALL, num_key_value_heads=2, use_sliding_window=False, sliding_window=4,
                                        tie_word_embeddings=True)
    if name == "qwen3_head_dim_tied":
        # q_dim 128 != hidden 64: head_dim independent of hidden / heads
        return transformers.Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True)
    if name == "qwen3_window_bias":
        return transformers.Qwen3Config(**{**SMALL, "num_hidden_layers": 3}, num_key_value_heads=4, head_dim=8,
                                        use_sliding_window=True, sliding_window=7, max_window_layers=2,
                                        attention_bias=True)
    if name == "olmo2_gqa":
        return transformers.Olmo2Config(**SMALL, num_key_value_heads=2)
    if name == "olmo2_tied_bias":
        return transformers.Olmo2Config(**SMALL, num_key_value_heads=8, tie_word_embeddings=True, attention_bias=True)
    if name == "gemma_tied":
        return transformers.GemmaConfig(**SMALL, num_key_value_heads=2, head_dim=16)
    if name == "gemma2_window_caps":
        # layers 0 and 2 local (window 6), 1 global; attention and final logit soft-capping
        return transformers.Gemma2Config(**{**SMALL, "num_hidden_layers": 3}, num_key_value_heads=4, head_dim=16,
                                         sliding_window=6, query_pre_attn_scalar=24, attn_logit_softcapping=20.0,
                                         final_logit_softcapping=5.0)
    if name == "gemma2_untied_no_caps":
        return transformers.Gemma2Config(**SMALL, num_key_value_heads=2, head_dim=8, tie_word_embeddings=False,
                                         attn_logit_softcapping=None, final_logit_softcapping=None)
    if name == "gemma3_window_local_rope":
        # local layers: window 5, rope base 10000; global layers: base 1e6 with linear scaling
        return transformers.Gemma3TextConfig(
            **{**SMALL, "num_hidden_layers": 4}, num_key_value_heads=2, head_dim=16, sliding_window=5,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            rope_scaling={"rope_type": "linear", "factor": 4.0})
    if name == "gemma3_untied_pattern":
        return transformers.Gemma3TextConfig(**{**SMALL, "num_hidden_layers": 3}, num_key_value_heads=8, head_dim=8,
                                             tie_word_embeddings=False, sliding_window=9, sliding_window_pattern=3,
                                             final_logit_softcapping=8.0)
    if name == "phi3_longrope_partial":
        # rotary on 6 of 8 head dimensions, longrope short factors (every position < 64)
        return transformers.Phi3Config(
            **SMALL, num_key_value_heads=2, pad_token_id=0, original_max_position_embeddings=64,
            partial_rotary_factor=0.75,
            rope_scaling={"rope_type": "longrope", "short_factor": [1.0, 1.3, 2.1], "long_factor": [2.0, 3.0, 5.0]})
    if name == "phi3_window_tied":
        return transformers.Phi3Config(**SMALL, num_key_value_heads=4, pad_token_id=0, sliding_window=7,
                                       tie_word_embeddings=True)
    raise ValueError(name)


CONFIGS = ["mistral_window", "mistral_window_tied", "qwen2_window_layers", "qwen2_window_off",
           "qwen3_head_dim_tied", "qwen3_window_bias", "olmo2_gqa", "olmo2_tied_bias",
           "gemma_tied", "gemma2_window_caps", "gemma2_untied_no_caps", "gemma3_window_local_rope",
           "gemma3_untied_pattern", "phi3_longrope_partial", "phi3_window_tied"]


def build(name, tmp_path):
    torch.manual_seed(0)
    config = make_config(name)
    config.eos_token_id = EOS
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    randomize(model, seed=1)
    hf_dir = str(tmp_path / "hf")
    model.save_pretrained(hf_dir)
    return config, model, hf_dir


def run(*args):
    r = subprocess.run([SCORCH_BIN, *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_and_export_match_transformers(name, tmp_path):
    config, model, hf_dir = build(name, tmp_path)
    batches = token_batches(config.vocab_size, seed=2)
    theirs = hf_logits(model, batches)
    assert max(v.abs().max().item() for v in theirs.values()) > 1.0
    assert max_delta(scorch_logits(hf_dir, batches, str(tmp_path)), theirs) <= TOL

    out = str(tmp_path / "exported")
    run("export", "--model", hf_dir, "--out", out)
    before, after = load_file(os.path.join(hf_dir, "model.safetensors")), load_file(os.path.join(out, "model.safetensors"))
    if config.tie_word_embeddings:
        before.pop("lm_head.weight", None)
    assert sorted(before) == sorted(after)
    for k in before:
        assert before[k].dtype == after[k].dtype and torch.equal(before[k], after[k]), k
    reloaded = load_hf(out)
    assert reloaded.config.to_dict().get("layer_types") == model.config.to_dict().get("layer_types")
    assert getattr(reloaded.config, "sliding_window", None) == getattr(model.config, "sliding_window", None)
    again = hf_logits(reloaded, batches)
    assert all(torch.equal(again[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("name", CONFIGS)
def test_greedy_generation_matches_transformers(name, tmp_path):
    config, model, hf_dir = build(name, tmp_path)
    g = torch.Generator().manual_seed(4)
    prompts = [torch.randint(3, config.vocab_size, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]
    with open(tmp_path / "prompts.jsonl", "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_ids": p}) + "\n")
    theirs = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([p])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                 do_sample=False, eos_token_id=EOS, pad_token_id=0)
            theirs.append(out[0, ids.shape[1]:].tolist())
    for steps in (["--decode-steps", "dynamic"], ["--decode-steps", "static"],
                  ["--decode-steps", "static", "--fused-decode-attention"]):
        out = str(tmp_path / "out.jsonl")
        run("generate", "--model", hf_dir, "--prompts", str(tmp_path / "prompts.jsonl"), "--out", out,
            "--temperature", "0", "--max-new-tokens", str(NEW_TOKENS), "--batch-size", str(len(prompts)),
            "--device", "cpu", *steps)
        rows = [json.loads(line) for line in open(out)]
        ours = [r["completion_ids"] for r in rows]
        for o, t in zip(ours, theirs):
            assert o == t[: len(o)] and (len(o) == len(t) or o[-1] == EOS), (steps, ours, theirs)
        assert sum(len(o) for o in ours) >= NEW_TOKENS, "generation stopped at once: nothing compared"


# One SFT and one GRPO run through the CLI per family (2 steps each, a random model on the quickstart
# tokenizer's 512 tokens): training runs, logs finite losses and exports a model transformers loads.
SMOKE = {
    "mistral": {"sliding_window": 8},
    "qwen3": {"head_dim": 16, "use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1},
    "olmo2": {},
    "gemma": {"head_dim": 8},
    "gemma2": {"head_dim": 8, "sliding_window": 8},
    "gemma3_text": {"head_dim": 8, "sliding_window": 8, "sliding_window_pattern": 2},
    "phi3": {"partial_rotary_factor": 0.5, "sliding_window": 8},
}
TOKENIZER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                         "configs", "quickstart", "tokenizer.model")


@pytest.mark.parametrize("family", sorted(SMOKE))
def test_sft_and_grpo_smoke_through_the_cli(family, tmp_path):
    config = {"model_type": family, "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3, **SMOKE[family]}
    with open(tmp_path / "model.json", "w") as f:
        json.dump(config, f)
    d = str(tmp_path)
    run("make-data", "--task", "arith", "--n", "8", "--seed", "3", "--out", f"{d}/train.jsonl")
    run("init-model", "--config", f"{d}/model.json", "--out", f"{d}/base", "--seed", "5", "--tokenizer", TOKENIZER)
    common = (f"seed: 1\nmodel: {{path: {d}/base}}\ntokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
              f"data: {{train: {d}/train.jsonl}}\noptim: {{learning_rate: 1.0e-3}}\n")
    jobs = {
        "sft": "trainer: sft\ntrain: {max_steps: 2, micro_batch_size: 2, threads: 1}\n",
        "grpo": ("trainer: grpo\ntrain: {max_steps: 2, micro_batch_size: 2, threads: 1}\n"
                 "generation: {max_prompt_length: 96, max_completion_length: 6}\n"
                 "grpo: {num_generations: 2, beta: 0.04}\nrewards: [{name: math_answer}]\n"),
    }
    for trainer, job in jobs.items():
        with open(tmp_path / f"{trainer}.yaml", "w") as f:
            f.write(job + common + f"run_dir: {d}/{trainer}\n")
        run("train", f"{d}/{trainer}.yaml")
        lines = [json.loads(line) for line in open(f"{d}/{trainer}/metrics.jsonl") if line.strip()]
        assert len(lines) == 2 and all(torch.isfinite(torch.tensor(l["loss"])) for l in lines), lines
        model = load_hf(f"{d}/{trainer}/export")
        assert model.config.model_type == family
