"""Bring your own HuggingFace model, end to end: a random-initialised Qwen2.5-shaped model saved by
transformers (tiny sizes, the full 151,936-token vocabulary) with a real Qwen2 tokenizer.json, the
Qwen2.5-Instruct chat template and a generation_config.json listing two stop ids runs `scorch train`
(SFT, then GRPO from the SFT export), `scorch generate --prompt`, `scorch eval` and `scorch export`;
the export loads in transformers and gives the same prompt ids as scorch.

The tokenizer files come from tools/setup's cache ($SCORCH_VOCAB_DIR/chat/qwen2.5); a missing
cache fails.
"""
import json
import os
import shutil
import subprocess
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCORCH = os.environ.get("SCORCH_BIN", os.path.join(ROOT, "build", "scorch"))
VOCAB_DIR = os.environ.get("SCORCH_VOCAB_DIR") or os.path.expanduser("~/.cache/scorch/vocab")
FIXTURE = os.path.join(VOCAB_DIR, "chat", "qwen2.5")
IM_END, ENDOFTEXT = 151645, 151643


def run(*args):
    r = subprocess.run([SCORCH, *args], capture_output=True, text=True)
    assert r.returncode == 0, (args, r.stderr[-3000:])
    return r


def make_model(out):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=151936, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=ENDOFTEXT,
                      eos_token_id=IM_END)
    Qwen2ForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(os.path.join(FIXTURE, f), out)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": ENDOFTEXT, "eos_token_id": [IM_END, ENDOFTEXT]}, f)


def write_config(path, trainer, model, run_dir, data, extra):
    lines = [f"trainer: {trainer}", "seed: 1", f"run_dir: {run_dir}",
             "model: {path: " + model + ", dtype: float32, device: cpu}",
             "tokenizer: {chat_template: auto}",
             f"data: {{train: {data}, max_length: 96}}",
             "train: {max_steps: 2, micro_batch_size: 2, eval_every: 0}",
             "optim: {learning_rate: 1.0e-4}"] + extra
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def test_qwen2_5_shaped_model_trains_generates_evaluates_and_exports():
    from transformers import AutoTokenizer
    assert os.path.exists(os.path.join(FIXTURE, "tokenizer.json")), f"{FIXTURE} missing: run tools/setup"
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "qwen")
        make_model(model)
        sft_data = os.path.join(tmp, "sft.jsonl")
        with open(sft_data, "w") as f:
            for a, b in [(2, 3), (4, 5), (1, 1), (6, 2)]:
                f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {a}+{b}?"},
                                                 {"role": "assistant", "content": f"{a + b}"}]}) + "\n")
        write_config(f"{tmp}/sft.yaml", "sft", model, f"{tmp}/run_sft", sft_data, [])
        run("train", f"{tmp}/sft.yaml")
        sft_export = f"{tmp}/run_sft/export"
        assert os.path.exists(os.path.join(sft_export, "tokenizer.json"))

        rl_data = os.path.join(tmp, "rl.jsonl")
        with open(rl_data, "w") as f:
            for a, b in [(2, 3), (4, 5)]:
                f.write(json.dumps({"prompt": f"What is {a}+{b}?", "answer": str(a + b)}) + "\n")
        write_config(f"{tmp}/grpo.yaml", "grpo", sft_export, f"{tmp}/run_grpo", rl_data,
                     ["generation: {max_prompt_length: 64, max_completion_length: 6, temperature: 1.0}",
                      "grpo: {num_generations: 2}", "rewards: [{name: math_answer, weight: 1.0}]"])
        run("train", f"{tmp}/grpo.yaml")

        out = run("generate", "--model", f"{tmp}/run_grpo/export", "--prompt", "What is 2+2?", "--temperature", "0",
                  "--max-new-tokens", "4").stdout
        assert out.strip()
        run("eval", "--model", f"{tmp}/run_grpo/export", "--data", rl_data, "--max-new-tokens", "4",
            "--out", f"{tmp}/eval.json")
        assert "accuracy" in json.load(open(f"{tmp}/eval.json"))

        run("export", "--model", f"{tmp}/run_grpo/export", "--out", f"{tmp}/final")
        prompts = os.path.join(tmp, "prompts.jsonl")
        messages = [{"role": "user", "content": "What is 7+1?"}]
        with open(prompts, "w") as f:
            f.write(json.dumps({"messages": messages}) + "\n")
        run("generate", "--model", f"{tmp}/final", "--prompts", prompts, "--out", f"{tmp}/gen.jsonl",
            "--temperature", "0", "--max-new-tokens", "3")
        row = json.loads(open(f"{tmp}/gen.jsonl").readline())
        hf = AutoTokenizer.from_pretrained(f"{tmp}/final")
        want = hf.apply_chat_template(messages, tokenize=True, return_dict=False, add_generation_prompt=True)
        assert row["prompt_ids"] == want
        assert hf.encode("héllo 🙂 wörld", add_special_tokens=False) == \
            AutoTokenizer.from_pretrained(model).encode("héllo 🙂 wörld", add_special_tokens=False)
