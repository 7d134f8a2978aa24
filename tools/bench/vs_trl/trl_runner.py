"""The TRL side of bench_vs_trl.py, run with the TRL venv's interpreter (never the project's venv).

    trl_runner.py tokenizer --spm configs/quickstart/tokenizer.model --out MODEL_DIR [--check data.jsonl]
    trl_runner.py sft  --model DIR --data train.jsonl --threads T --steps N --batch B --lr LR --out result.json
    trl_runner.py grpo --model DIR --data prompts.jsonl --threads T --steps N --prompts P --generations G
                       --completion C --temperature 1.0 --lr LR --out result.json [--samples samples.jsonl]

`tokenizer` writes a tokenizer.json (+ tokenizer_config.json) built from the SentencePiece model's
own settings into the model directory, so transformers and TRL load the tokenizer scorch uses;
--check compares its ids with SentencePiece's for scorch's `plain` template on every row.

The trainers run with TRL's defaults except what the comparison fixes (batch, lr, constant
schedule, no weight decay, clip 1.0, fp32 on the CPU, no shuffling, the template text). Step time
is measured from the Trainer's on_step_begin to on_step_end (the step's work, like scorch's
time/step: logging and the data fetch before the step are outside both)."""
import argparse
import json
import os
import sys
import time


def plain_prompt(prompt):
    """scorch's `plain` chat template for one user turn and the assistant header."""
    return "User: " + prompt + "\n" + "Assistant: "


def write_tokenizer(a):
    from sentencepiece import sentencepiece_model_pb2
    import sentencepiece
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SpmConverter

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(open(a.spm, "rb").read())
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    tk = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=False)
    sp = sentencepiece.SentencePieceProcessor(model_file=a.spm)
    bos, eos, pad = sp.bos_id(), sp.eos_id(), sp.pad_id()
    tk.post_processor = processors.TemplateProcessing(single=f"{sp.id_to_piece(bos)} $A",
                                                      special_tokens=[(sp.id_to_piece(bos), bos)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=sp.id_to_piece(bos), eos_token=sp.id_to_piece(eos),
                                  unk_token=sp.id_to_piece(sp.unk_id()), pad_token=sp.id_to_piece(pad))
    tok.save_pretrained(a.out)
    if a.check:
        bad = 0
        rows = [json.loads(line) for line in open(a.check)]
        for r in rows:
            want = [bos] + sp.encode("User: " + r["prompt"] + "\n") + sp.encode("Assistant: ")
            got = tok(plain_prompt(r["prompt"]))["input_ids"]
            ok = got == want
            if "completion" in r:
                want_all = want + sp.encode(r["completion"]) + [eos]
                ok = ok and tok(plain_prompt(r["prompt"]) + r["completion"] + tok.eos_token)["input_ids"] == want_all
                ok = ok and tok.decode(sp.encode(r["completion"]), skip_special_tokens=True) == r["completion"]
            bad += not ok
        print(json.dumps({"rows": len(rows), "mismatches": bad}))


class StepTimer:
    """A TrainerCallback (built lazily: transformers is imported only in the runner's modes)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self):
                self.begin, self.times, self.logs = None, [], []

            def on_step_begin(self, args, state, control, **kw):
                self.begin = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                self.times.append(time.perf_counter() - self.begin)

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "train_runtime" not in logs:
                    self.logs.append(dict(logs, step=state.global_step))

        return _Timer()


def setup(threads):
    import torch
    torch.set_num_threads(threads)
    return torch


def run_sft(a):
    torch = setup(a.threads)
    import datasets
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [json.loads(line) for line in open(a.data)][:a.steps * a.batch]
    ds = datasets.Dataset.from_list([{"prompt": plain_prompt(r["prompt"]), "completion": r["completion"]} for r in rows])
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    losses, tokens = [], []

    class Recording(trl.SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            tokens.append(int((inputs["labels"][:, 1:] != -100).sum()))
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            losses.append(float((out[0] if return_outputs else out).detach()))
            return out

    cfg = trl.SFTConfig(output_dir=a.out + ".trainer", per_device_train_batch_size=a.batch, max_steps=a.steps,
                        learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                        max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
                        bf16=False, fp16=False, seed=1234, completion_only_loss=True, packing=False, max_length=None,
                        train_sampling_strategy="sequential", shuffle_dataset=False, dataloader_num_workers=0,
                        disable_tqdm=True)
    timer = StepTimer()
    trainer = Recording(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[timer])
    trainer.train()
    json.dump({"times": timer.times, "losses": losses, "tokens": tokens, "optim": str(cfg.optim),
               "torch_threads": torch.get_num_threads(), "trl": trl.__version__,
               "transformers": transformers.__version__}, open(a.out, "w"))


def run_grpo(a):
    torch = setup(a.threads)
    import datasets
    import transformers
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.extras import profiling

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from math_answer import math_answer

    # TRL times generation and rewards with ProfilingContext, which reports only to wandb / mlflow /
    # trackio; keep its durations here, per step.
    timings = []
    original = profiling.ProfilingContext._log_metrics

    def keep(self, duration):
        timings.append({"name": self.name, "step": self.step, "seconds": duration})
        return original(self, duration)

    profiling.ProfilingContext._log_metrics = keep

    rows = [json.loads(line) for line in open(a.data)][:a.steps * a.prompts]
    ds = datasets.Dataset.from_list([{"prompt": plain_prompt(r["prompt"]), "question": r["prompt"],
                                      "answer": str(r["answer"])} for r in rows])
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    cfg = trl.GRPOConfig(output_dir=a.out + ".trainer", per_device_train_batch_size=a.prompts * a.generations,
                         num_generations=a.generations, gradient_accumulation_steps=1, max_steps=a.steps,
                         max_completion_length=a.completion, temperature=a.temperature, top_p=1.0, top_k=0,
                         learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                         max_grad_norm=1.0, loss_type="dapo", beta=0.0, epsilon=0.2, epsilon_high=0.28,
                         scale_rewards="group", num_iterations=1, logging_steps=1, save_strategy="no",
                         report_to="none", use_cpu=True, bf16=False, fp16=False, seed=1234, shuffle_dataset=False,
                         log_completions=False, disable_tqdm=True)
    timer = StepTimer()
    samples = []

    def recorded_math_answer(prompts, completions, question, answer, **kw):
        values = math_answer(prompts, completions, question, answer)
        if len(samples) < a.keep_samples:
            samples.extend({"prompt": q, "completion": c, "answer": g, "python_reward": v}
                           for q, c, g, v in zip(question, completions, answer, values))
        return values

    recorded_math_answer.__name__ = "math_answer"
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[recorded_math_answer], args=cfg, train_dataset=ds,
                              processing_class=tok, callbacks=[timer])
    trainer.train()
    by_step = {}
    for t in timings:  # the step counter is global_step when the block started: 0 for the first step
        d = by_step.setdefault(t["step"], {})
        d[t["name"]] = d.get(t["name"], 0.0) + t["seconds"]
    phases = [by_step.get(i, {}) for i in range(len(timer.times))]
    json.dump({"times": timer.times, "phases": phases, "logs": timer.logs, "optim": str(cfg.optim),
               "torch_threads": torch.get_num_threads(), "trl": trl.__version__,
               "transformers": transformers.__version__}, open(a.out, "w"))
    if a.samples:
        with open(a.samples, "w") as f:
            for s in samples[:a.keep_samples]:
                f.write(json.dumps(s) + "\n")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("tokenizer")
    t.add_argument("--spm", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--check")
    for name in ("sft", "grpo"):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True)
        p.add_argument("--data", required=True)
        p.add_argument("--threads", type=int, required=True)
        p.add_argument("--steps", type=int, required=True)
        p.add_argument("--lr", type=float, required=True)
        p.add_argument("--out", required=True)
        if name == "sft":
            p.add_argument("--batch", type=int, required=True)
        else:
            p.add_argument("--prompts", type=int, required=True)
            p.add_argument("--generations", type=int, required=True)
            p.add_argument("--completion", type=int, required=True)
            p.add_argument("--temperature", type=float, required=True)
            p.add_argument("--samples", help="write the first --keep-samples completions with their Python rewards")
            p.add_argument("--keep-samples", type=int, default=128)
    a = ap.parse_args()
    {"tokenizer": write_tokenizer, "sft": run_sft, "grpo": run_grpo}[a.mode](a)


if __name__ == "__main__":
    main()
