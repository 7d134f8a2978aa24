"""The bad-input corpus: every kind of input a user can get wrong, generated here, run through the
scorch binary as a user runs it, with the same four checks for each case:

  1. exit code 2 (a user error: no abort, no "internal error", no stack trace);
  2. the output names what is wrong: the file (with its line), the config key or the flag
     (a per-case expected substring), in a message of sane length (huge values are shortened);
  3. nothing that existed is changed: every file and directory under the case's directory and the
     shared fixtures has the same SHA-256 (or kind, for FIFOs and links) afterwards, and a failing
     command leaves no new file beyond what the case allows (e.g. a run directory's config.yaml,
     written before the job found its data or model bad);
  4. no process is left behind: the command ends within 30 s (else its process group is killed and
     the case fails), and neither its process group nor any process working in the case directory
     is alive afterwards.

The classes of bad input (the CASES table below, one entry per case, >= 3 per class):
  alloc     sizes a user can set that would allocate more than exists: generate --n and the KV
            cache of n x max_new_tokens, init-model vocab / hidden / layers, train.micro_batch_size,
            train.gradient_accumulation_steps, data.max_length, grpo.num_generations;
  damage    commands that must not damage existing outputs: export / init-model over a non-empty
            directory (with and without --force, with a missing tokenizer), make-data, reward,
            eval and generate writing over an existing file or over their own input, a run
            directory that belongs to another job;
  nonfinite NaN / Inf weights: export, training from them, resuming from such a checkpoint;
  yaml      strict YAML: duplicate keys and sections (both line numbers), a scalar where a list is
            expected, rewards params errors naming the file, a 2 MB value shortened in the message,
            bad --set overrides;
  cli       option values: eval --batch-size 0, --seed -1, --decode-steps cuda_graph on a CPU,
            --fused-decode-attention with dynamic steps, --temperature 1e30, init-model --dtype,
            train --run-dir '', `scorch --bogus`, messages with an unknown role;
  internal  inputs that once reached internal errors: a JSONL number overflowing a double, deeply
            nested JSON, invalid UTF-8, a safetensors entry of shape [0, 2^62, 2^62], init-model
            sizes whose product overflows, a directory as tokenizer.model, a FIFO as
            model.safetensors / config.json / a data file;
  modelcfg  config.json nonsense: token ids outside the vocabulary or negative, heads that do not
            divide the hidden size, a config.json that is not JSON;
  makedata  make-data --n above int64, negative, above its cap, and bad difficulty flags.

Every child runs with its address space capped (RLIMIT_AS, 8 GiB) so that a size check that fails
to trigger ends in the allocator (and this test) rather than in the machine's OOM killer.

Environment: SCORCH_BIN (the binary; ctest sets it), else build/scorch. Registered in
tests/CMakeLists.txt (labels integration, python).
"""
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import signal
import stat
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable, List, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCORCH = os.path.abspath(os.environ.get("SCORCH_BIN", str(ROOT / "build" / "scorch")))
TOKENIZER = str(ROOT / "configs" / "quickstart" / "tokenizer.model")
TIMEOUT_S = 30
ADDRESS_SPACE_CAP = 8 << 30
MAX_MESSAGE_CHARS = 1000  # longer: a value echoed that should have been shortened (the longest now: ~400)

TINY_MODEL = {"model_type": "llama", "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
              "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 3}
NAN_TENSOR = "model.layers.0.mlp.up_proj.weight"

if not os.path.exists(SCORCH):
    pytest.skip(f"no scorch binary at {SCORCH} (set SCORCH_BIN)", allow_module_level=True)


# ----------------------------------------------------------------------------------------------
# Running one command and what it leaves behind


def cap_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


def run_scorch(args, cwd, timeout=TIMEOUT_S):
    """Runs scorch in its own process group; returns (exit code, output, leftovers) where leftovers
    lists what was still alive after it ended (or was killed at the timeout: exit code None)."""
    proc = subprocess.Popen([SCORCH, *map(str, args)], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=cap_address_space)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    leftovers = alive_after(proc.pid, cwd)
    return code, out.decode("utf-8", "replace"), leftovers


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def processes_in(directory):
    """Processes whose working directory is inside `directory` (a child that left our group)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == str(directory) or cwd.startswith(str(directory) + "/"):
            found.append(int(pid))
    return found


def alive_after(pgid, cwd):
    deadline = time.monotonic() + 2.0  # an exiting child may need a moment to be reaped
    while time.monotonic() < deadline and (group_alive(pgid) or processes_in(cwd)):
        time.sleep(0.05)
    left = ([f"process group {pgid}"] if group_alive(pgid) else []) + [f"pid {p}" for p in processes_in(cwd)]
    if left:  # do not leave them running for the next case
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for p in processes_in(cwd):
            os.kill(p, signal.SIGKILL)
    return left


def snapshot(*roots):
    """{path: sha256 | 'dir' | 'fifo' | 'link -> target'} of everything under `roots`."""
    state = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    state[path] = "link -> " + os.readlink(path)
                elif stat.S_ISDIR(st.st_mode):
                    state[path] = "dir"
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        state[path] = hashlib.sha256(f.read()).hexdigest()
                else:
                    state[path] = "special " + oct(stat.S_IFMT(st.st_mode))
    return state


# ----------------------------------------------------------------------------------------------
# Fixtures shared by the cases (made once per session)


@dataclasses.dataclass
class Shared:
    root: Path
    model: str       # the tiny random model (init-model, seed 5, quickstart tokenizer)
    data: str        # 8 arithmetic SFT lines with answers (make-data, seed 3)
    trained: Path    # a directory holding job.yaml and run/ (2 SFT steps, checkpoints at 1 and 2)


def job_yaml(model, data, extra=""):
    return (f"trainer: sft\nseed: 11\nmodel: {{path: {model}}}\n"
            f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
            f"data: {{train: {data}, max_length: 96}}\n"
            "train: {max_steps: 2, micro_batch_size: 2, gradient_accumulation_steps: 1, threads: 1}\n"
            "optim: {learning_rate: 1.0e-3}\n"
            "checkpoint: {save_every: 1, keep_last: 2}\n"
            "log: {every: 1, level: warn}\n" + extra)


def grpo_yaml(model, data, rewards="rewards:\n  - name: math_answer\n    weight: 1.0\n", extra=""):
    return (f"trainer: grpo\nseed: 1\nmodel: {{path: {model}}}\n"
            f"tokenizer: {{path: {TOKENIZER}, chat_template: plain}}\n"
            f"data: {{train: {data}}}\n"
            "train: {max_steps: 1, micro_batch_size: 2, threads: 1}\n"
            "generation: {max_prompt_length: 32, max_completion_length: 8}\n"
            "grpo: {num_generations: 2}\n" + extra + rewards)


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    base = root / "shared"
    base.mkdir()
    (base / "model.json").write_text(json.dumps(TINY_MODEL))
    ok = lambda args: run_ok(args, base)  # noqa: E731
    ok(["init-model", "--config", base / "model.json", "--out", base / "model", "--seed", "5", "--tokenizer", TOKENIZER])
    ok(["make-data", "--task", "arith", "--n", "8", "--seed", "3", "--out", base / "train.jsonl"])
    trained = base / "trained"
    trained.mkdir()
    (trained / "job.yaml").write_text(job_yaml(base / "model", base / "train.jsonl"))
    run_ok(["train", "job.yaml", "--run-dir", "run"], trained)
    return Shared(root, str(base / "model"), str(base / "train.jsonl"), trained)


def run_ok(args, cwd):
    code, out, _ = run_scorch(args, cwd, timeout=300)
    assert code == 0, f"fixture command failed: scorch {' '.join(map(str, args))}\n{out}"


# ----------------------------------------------------------------------------------------------
# Helpers the cases build their inputs with


def write(path, text):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    return str(path)


def copy_model(s, d, name="model", config_changes=None):
    """A copy of the tiny model in d/name, config.json updated with `config_changes`."""
    dst = Path(d) / name
    shutil.copytree(s.model, dst)
    if config_changes:
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(config_changes)
        (dst / "config.json").write_text(json.dumps(cfg))
    return str(dst)


def model_config(**changes):
    cfg = dict(TINY_MODEL)
    cfg.update(changes)
    return json.dumps(cfg)


def poison_safetensors(path, tensor, value):
    """Sets element 5 of `tensor` (F32) in the safetensors file `path` to `value`, in place."""
    raw = bytearray(Path(path).read_bytes())
    (header_len,) = struct.unpack("<Q", raw[:8])
    entry = json.loads(raw[8:8 + header_len])[tensor]
    assert entry["dtype"] == "F32"
    at = 8 + header_len + entry["data_offsets"][0] + 5 * 4
    raw[at:at + 4] = struct.pack("<f", value)
    Path(path).write_bytes(bytes(raw))


def safetensors_file(path, header, data=b""):
    text = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + data)


def copy_trained_run(s, d):
    """The trained job (job.yaml + run/) copied into d: run from d with the same command line."""
    shutil.copytree(s.trained / "run", Path(d) / "run", symlinks=True)
    shutil.copy(s.trained / "job.yaml", Path(d) / "job.yaml")


def last_checkpoint(d):
    return sorted((Path(d) / "run" / "checkpoints").glob("step-*"))[-1]


def last_checkpoint_of_shared(s):
    return last_checkpoint(s.trained)


# ----------------------------------------------------------------------------------------------
# The table: each case builds its inputs in its own directory `d` (also the working directory)
# and returns the arguments of the one scorch command that must fail.


@dataclasses.dataclass
class Case:
    cls: str
    name: str
    expect: Sequence[str]              # substrings the output must hold ("{d}" stands for d)
    build: Callable[[Path, Shared], List]
    allow_new: Sequence[str] = ()      # paths (relative to d) the failing command may create


CASES: List[Case] = []
CLASSES = ("alloc", "damage", "nonfinite", "yaml", "cli", "internal", "modelcfg", "makedata")


def case(cls, name, expect, allow_new=()):
    assert cls in CLASSES, cls
    def register(build):
        CASES.append(Case(cls, name, [expect] if isinstance(expect, str) else list(expect), build, tuple(allow_new)))
        return build
    return register


# A run directory's config.yaml is written before the job loads its model and data; a job that
# stops there leaves it (the next run with a corrected config takes its place).
RUN_CONFIG = ("run", "run/config.yaml")

# --- alloc: sizes that would allocate more than exists ---------------------------------------

@case("alloc", "generate --n 1e8", "--n: Value 100000000 not in range 1 to 1048576")
def _(d, s):
    return ["generate", "--model", s.model, "--prompt", "hi", "--n", "100000000"]


@case("alloc", "generate KV cache of n x max_new_tokens", ["KV cache", "--n"])
def _(d, s):
    long_model = copy_model(s, d, config_changes={"max_position_embeddings": 131072})
    return ["generate", "--model", long_model, "--prompt", "hi", "--n", "1048576", "--max-new-tokens", "100000"]


@case("alloc", "init-model vocab_size 1e13", "vocab_size")
def _(d, s):
    return ["init-model", "--config", write(d / "c.json", model_config(vocab_size=10**13)), "--out", d / "out"]


@case("alloc", "init-model hidden_size 4M", ["hidden_size 4000000", "of memory is available"])
def _(d, s):
    cfg = model_config(vocab_size=16_000_000, hidden_size=4_000_000, num_attention_heads=4, num_key_value_heads=4)
    return ["init-model", "--config", write(d / "c.json", cfg), "--out", d / "out"]


@case("alloc", "init-model 1e6 layers", ["num_hidden_layers 1000000", "of memory is available"])
def _(d, s):
    return ["init-model", "--config", write(d / "c.json", model_config(num_hidden_layers=1_000_000)), "--out", d / "out"]


@case("alloc", "train.gradient_accumulation_steps 1e9", "train.gradient_accumulation_steps")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data, "train: {gradient_accumulation_steps: 1e9}\n").replace(
        "train: {max_steps: 2, micro_batch_size: 2, gradient_accumulation_steps: 1, threads: 1}\n", ""))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("alloc", "train.micro_batch_size 1e12", "train.micro_batch_size")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data))
    return ["train", "job.yaml", "--run-dir", "run", "--set", "train.micro_batch_size=1e12"]


@case("alloc", "data.max_length 1e12", "data.max_length")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data))
    return ["train", "job.yaml", "--run-dir", "run", "--set", "data.max_length=1000000000000"]


@case("alloc", "an SFT micro-batch whose activations cannot fit",
      ["training (gradients", "activations", "65536 rows × 1048576 tokens", "of memory is available",
       "train.micro_batch_size (now 65536)", "model.gradient_checkpointing"], allow_new=RUN_CONFIG)
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data))
    return ["train", "job.yaml", "--run-dir", "run", "--set", "train.micro_batch_size=65536",
            "--set", "data.packing=true", "--set", "data.max_length=1048576"]


@case("alloc", "a GRPO micro-batch whose activations cannot fit",
      ["activations", "of memory is available", "generation.max_prompt_length / max_completion_length"],
      allow_new=RUN_CONFIG)
def _(d, s):
    write(d / "job.yaml", grpo_yaml(s.model, s.data))
    return ["train", "job.yaml", "--run-dir", "run", "--set", "train.micro_batch_size=65536",
            "--set", "grpo.num_generations=16384"]


@case("alloc", "grpo.num_generations 1e9", "grpo.num_generations")
def _(d, s):
    write(d / "job.yaml", grpo_yaml(s.model, s.data))
    return ["train", "job.yaml", "--run-dir", "run", "--set", "grpo.num_generations=1000000000"]


# --- damage: failing commands leave existing outputs as they were --------------------------

@case("damage", "export over an existing directory without --force", "--force")
def _(d, s):
    copy_model(s, d, "existing")
    return ["export", "--model", s.model, "--out", d / "existing", "--tokenizer", d / "missing"]


@case("damage", "export --force over an existing directory, missing tokenizer", "missing")
def _(d, s):
    copy_model(s, d, "existing")
    return ["export", "--model", s.model, "--out", d / "existing", "--force", "--tokenizer", d / "missing"]


@case("damage", "init-model over a trained model without --force", "--force")
def _(d, s):
    shutil.copytree(last_checkpoint_of_shared(s), d / "trained")
    return ["init-model", "--config", write(d / "c.json", model_config()), "--out", d / "trained"]


@case("damage", "init-model --force with a bad config", "vocab_size")
def _(d, s):
    copy_model(s, d, "existing")
    return ["init-model", "--config", write(d / "c.json", model_config(vocab_size=-4)), "--out", d / "existing", "--force"]


@case("damage", "make-data with a bad --n over an existing file", "--n")
def _(d, s):
    shutil.copy(s.data, d / "existing.jsonl")
    return ["make-data", "--task", "arith", "--n", "-3", "--seed", "1", "--out", d / "existing.jsonl"]


@case("damage", "make-data --out a directory", "{d}/dir")
def _(d, s):
    write(d / "dir" / "keep.txt", "keep")
    return ["make-data", "--task", "arith", "--n", "4", "--seed", "1", "--out", d / "dir"]


@case("damage", "reward --out is --in", "--in")
def _(d, s):
    shutil.copy(s.data, d / "s.jsonl")
    write(d / "r.yaml", "rewards: [{name: math_answer}]\n")
    return ["reward", "--config", "r.yaml", "--in", "s.jsonl", "--out", "s.jsonl"]


@case("damage", "reward --out is --in spelled another way", "--in")
def _(d, s):
    shutil.copy(s.data, d / "s.jsonl")
    write(d / "r.yaml", "rewards: [{name: math_answer}]\n")
    return ["reward", "--config", "r.yaml", "--in", "s.jsonl", "--out", d / "." / "s.jsonl"]


@case("damage", "reward with a bad config over an existing --out", "r.yaml")
def _(d, s):
    shutil.copy(s.data, d / "s.jsonl")
    shutil.copy(s.data, d / "scored.jsonl")
    write(d / "r.yaml", "rewards: [{name: no_such_reward}]\n")
    return ["reward", "--config", "r.yaml", "--in", "s.jsonl", "--out", "scored.jsonl"]


@case("damage", "eval with a bad data line over an existing --out", "e.jsonl:2")
def _(d, s):
    write(d / "e.jsonl", '{"prompt": "1+1", "answer": "2"}\n{"prompt": \n')
    write(d / "report.json", "{}\n")
    return ["eval", "--model", s.model, "--data", "e.jsonl", "--out", "report.json"]


@case("damage", "eval --out is --data", "--data")
def _(d, s):
    shutil.copy(s.data, d / "e.jsonl")
    return ["eval", "--model", s.model, "--data", "e.jsonl", "--out", "e.jsonl", "--max-new-tokens", "2"]


@case("damage", "generate with a bad prompt line over an existing --out", "p.jsonl:2")
def _(d, s):
    write(d / "p.jsonl", '{"prompt": "1+1"}\n{"prompt": 7}\n')
    write(d / "out.jsonl", "keep\n")
    return ["generate", "--model", s.model, "--prompts", "p.jsonl", "--out", "out.jsonl"]


@case("damage", "generate --out is --prompts", "--prompts")
def _(d, s):
    write(d / "p.jsonl", '{"prompt": "1+1"}\n')
    return ["generate", "--model", s.model, "--prompts", "p.jsonl", "--out", "p.jsonl", "--max-new-tokens", "2"]


@case("damage", "train into a run directory of another job", "belongs to another job")
def _(d, s):
    copy_trained_run(s, d)
    write(d / "job.yaml", (d / "job.yaml").read_text().replace("learning_rate: 1.0e-3", "learning_rate: 2.0e-3"))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("damage", "train --run-dir that is a file", "run")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data))
    write(d / "run", "a file\n")
    return ["train", "job.yaml", "--run-dir", "run"]


# --- nonfinite: NaN / Inf weights are never trained from or written -----------------------

@case("nonfinite", "export a model holding NaN", [NAN_TENSOR, "NaN"])
def _(d, s):
    bad = copy_model(s, d, "nan")
    poison_safetensors(Path(bad) / "model.safetensors", NAN_TENSOR, float("nan"))
    return ["export", "--model", bad, "--out", d / "out"]


@case("nonfinite", "export --force an Inf model over an existing directory", NAN_TENSOR)
def _(d, s):
    bad = copy_model(s, d, "inf")
    poison_safetensors(Path(bad) / "model.safetensors", NAN_TENSOR, float("inf"))
    copy_model(s, d, "existing")
    return ["export", "--model", bad, "--out", d / "existing", "--force"]


@case("nonfinite", "train from a model holding NaN", [NAN_TENSOR, "NaN"], allow_new=RUN_CONFIG)
def _(d, s):
    bad = copy_model(s, d, "nan")
    poison_safetensors(Path(bad) / "model.safetensors", NAN_TENSOR, float("nan"))
    write(d / "job.yaml", job_yaml(bad, s.data))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("nonfinite", "resume from a checkpoint holding NaN", [NAN_TENSOR, "NaN"])
def _(d, s):
    copy_trained_run(s, d)
    poison_safetensors(last_checkpoint(d) / "model.safetensors", NAN_TENSOR, float("nan"))
    return ["train", "job.yaml", "--run-dir", "run"]


# --- yaml: strict YAML ------------------------------------------------------------------------

@case("yaml", "duplicate key", ["job.yaml:9", "optim.learning_rate", "first at line 8"])
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data).replace(
        "optim: {learning_rate: 1.0e-3}\n", "optim:\n  learning_rate: 1.0e-3\n  learning_rate: 1.0e-2\n"))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("yaml", "duplicate section", ["job.yaml:10", "`log`", "first at line 9"])
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data) + "log: {every: 2}\n")
    return ["train", "job.yaml", "--run-dir", "run"]


@case("yaml", "generation.stop as a scalar", "generation.stop")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data, 'generation: {stop: "</s>"}\n'))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("yaml", "rewards as a scalar", "rewards")
def _(d, s):
    write(d / "job.yaml", grpo_yaml(s.model, s.data, rewards="rewards: math_answer\n"))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("yaml", "rewards params error in a job config", ["job.yaml:12", "rewards[0].params.rel_tol"])
def _(d, s):
    rewards = "rewards:\n  - name: math_answer\n    params:\n      rel_tol: [1, 2]\n"
    write(d / "job.yaml", grpo_yaml(s.model, s.data, rewards=rewards))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("yaml", "rewards params error in a rewards file", ["r.yaml:4", "no_answr"])
def _(d, s):
    shutil.copy(s.data, d / "s.jsonl")
    write(d / "r.yaml", "rewards:\n  - name: math_answer\n    params:\n      no_answr: nan\n")
    return ["reward", "--config", "r.yaml", "--in", "s.jsonl", "--out", "scored.jsonl"]


@case("yaml", "duplicate key in a rewards entry", ["r.yaml:3", "first at line 2"])
def _(d, s):
    shutil.copy(s.data, d / "s.jsonl")
    write(d / "r.yaml", "rewards:\n  - name: math_answer\n    name: format\n")
    return ["reward", "--config", "r.yaml", "--in", "s.jsonl", "--out", "scored.jsonl"]


@case("yaml", "a 2 MB value is shortened", "optim.lr_scheduler_type")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data).replace(
        "optim: {learning_rate: 1.0e-3}", "optim: {learning_rate: 1.0e-3, lr_scheduler_type: " + "x" * 2_000_000 + "}"))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("yaml", "a list where a number is expected", "optim.learning_rate")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data).replace("learning_rate: 1.0e-3", "learning_rate: [1, 2]"))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("yaml", "--set of an unknown key", ["optim.lerning_rate", "learning_rate"])
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data))
    return ["train", "job.yaml", "--run-dir", "run", "--set", "optim.lerning_rate=0.1"]


@case("yaml", "--set without a value", "--set")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data))
    return ["train", "job.yaml", "--run-dir", "run", "--set", "optim.learning_rate"]


@case("yaml", "invalid YAML", "job.yaml:")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data) + "train: [unclosed\n")
    return ["train", "job.yaml", "--run-dir", "run"]


# --- cli: option values are checked as strictly as config keys -------------------------------

@case("cli", "eval --batch-size 0", "--batch-size: must be > 0, got 0")
def _(d, s):
    return ["eval", "--model", s.model, "--data", s.data, "--batch-size", "0"]


@case("cli", "eval --seed -1", "--seed: must be >= 0, got -1")
def _(d, s):
    return ["eval", "--model", s.model, "--data", s.data, "--seed", "-1"]


@case("cli", "generate --seed -1", "--seed: must be >= 0, got -1")
def _(d, s):
    return ["generate", "--model", s.model, "--prompt", "hi", "--seed", "-1"]


@case("cli", "generate --decode-steps cuda_graph on a CPU", ["--decode-steps `cuda_graph`", "CUDA"])
def _(d, s):
    return ["generate", "--model", s.model, "--prompt", "hi", "--device", "cpu", "--decode-steps", "cuda_graph"]


@case("cli", "eval --decode-steps cuda_graph on a CPU", ["--decode-steps `cuda_graph`", "CUDA"])
def _(d, s):
    return ["eval", "--model", s.model, "--data", s.data, "--device", "cpu", "--decode-steps", "cuda_graph"]


@case("cli", "--fused-decode-attention with dynamic steps", ["--fused-decode-attention", "--decode-steps `dynamic`"])
def _(d, s):
    return ["generate", "--model", s.model, "--prompt", "hi", "--decode-steps", "dynamic", "--fused-decode-attention"]


@case("cli", "generate --temperature 1e30", "--temperature: Value 1e30 not in range")
def _(d, s):
    return ["generate", "--model", s.model, "--prompt", "hi", "--temperature", "1e30"]


@case("cli", "eval --temperature 1e30", "--temperature")
def _(d, s):
    return ["eval", "--model", s.model, "--data", s.data, "--temperature", "1e30"]


@case("cli", "init-model --dtype float64", "float64")
def _(d, s):
    return ["init-model", "--config", write(d / "c.json", model_config()), "--out", d / "out", "--dtype", "float64"]


@case("cli", "train --run-dir ''", "--run-dir")
def _(d, s):
    write(d / "job.yaml", job_yaml(s.model, s.data))
    return ["train", "job.yaml", "--run-dir", ""]


@case("cli", "scorch --bogus", "--bogus")
def _(d, s):
    return ["--bogus"]


@case("cli", "generate --max-new-tokens 0", "--max-new-tokens: must be > 0, got 0")
def _(d, s):
    return ["generate", "--model", s.model, "--prompt", "hi", "--max-new-tokens", "0"]


@case("cli", "generate --device tpu", ["--device", "tpu"])
def _(d, s):
    return ["generate", "--model", s.model, "--prompt", "hi", "--device", "tpu"]


@case("cli", "eval --attempts 3", "--attempts")
def _(d, s):
    return ["eval", "--model", s.model, "--data", s.data, "--attempts", "3"]


@case("cli", "export --max-shard-bytes 0", "--max-shard-bytes")
def _(d, s):
    return ["export", "--model", s.model, "--out", d / "out", "--max-shard-bytes", "0"]


@case("cli", "generate messages with an unknown role", ["p.jsonl:1", "wizard"])
def _(d, s):
    write(d / "p.jsonl", '{"messages": [{"role": "wizard", "content": "1+1"}]}\n')
    return ["generate", "--model", s.model, "--prompts", "p.jsonl", "--out", "out.jsonl"]


@case("cli", "SFT messages with an unknown role", ["t.jsonl:1", "wizard"], allow_new=RUN_CONFIG)
def _(d, s):
    write(d / "t.jsonl", '{"messages": [{"role": "user", "content": "1+1"}, {"role": "wizard", "content": "2"}]}\n')
    write(d / "job.yaml", job_yaml(s.model, d / "t.jsonl"))
    return ["train", "job.yaml", "--run-dir", "run"]


# --- internal: inputs that once reached internal errors ---------------------------------------

@case("internal", "SFT JSONL number overflowing a double", "t.jsonl:2", allow_new=RUN_CONFIG)
def _(d, s):
    write(d / "t.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": "b", "x": 1e400}\n')
    write(d / "job.yaml", job_yaml(s.model, d / "t.jsonl"))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("internal", "reward JSONL number overflowing a double", "s.jsonl:1")
def _(d, s):
    write(d / "s.jsonl", '{"prompt": "a", "completion": "b", "answer": 1e999}\n')
    write(d / "r.yaml", "rewards: [{name: math_answer}]\n")
    return ["reward", "--config", "r.yaml", "--in", "s.jsonl", "--out", "scored.jsonl"]


@case("internal", "eval JSONL number overflowing a double", "e.jsonl:1")
def _(d, s):
    write(d / "e.jsonl", '{"prompt": "a", "answer": -1e400}\n')
    return ["eval", "--model", s.model, "--data", "e.jsonl"]


@case("internal", "deeply nested JSON in a prompts file", "p.jsonl:1")
def _(d, s):
    write(d / "p.jsonl", '{"prompt": "a", "x": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    return ["generate", "--model", s.model, "--prompts", "p.jsonl", "--out", "out.jsonl"]


@case("internal", "invalid UTF-8 in an SFT line", "t.jsonl:1", allow_new=RUN_CONFIG)
def _(d, s):
    (d / "t.jsonl").write_bytes(b'{"prompt": "a\xff\xfe", "completion": "b"}\n')
    write(d / "job.yaml", job_yaml(s.model, d / "t.jsonl"))
    return ["train", "job.yaml", "--run-dir", "run"]


@case("internal", "safetensors entry of shape [0, 2^62, 2^62]", ["model.safetensors", "overflow"])
def _(d, s):
    m = copy_model(s, d)
    big = 1 << 62
    safetensors_file(Path(m) / "model.safetensors",
                     {"model.embed_tokens.weight": {"dtype": "F32", "shape": [0, big, big], "data_offsets": [0, 0]}})
    return ["export", "--model", m, "--out", d / "out"]


@case("internal", "init-model sizes whose product overflows", ["num_hidden_layers", "hidden_size", "vocab_size"])
def _(d, s):
    big = 1 << 24  # each size at its limit; layers x hidden x intermediate is 2^72
    cfg = model_config(vocab_size=big, hidden_size=big, intermediate_size=big, num_hidden_layers=big,
                       num_attention_heads=1 << 12, num_key_value_heads=1 << 12)
    return ["init-model", "--config", write(d / "c.json", cfg), "--out", d / "out"]


@case("internal", "tokenizer.model that is a directory", "tokenizer.model")
def _(d, s):
    m = copy_model(s, d)
    os.remove(Path(m) / "tokenizer.model")
    write(Path(m) / "tokenizer.model" / "x", "not a tokenizer")
    return ["generate", "--model", m, "--prompt", "hi"]


@case("internal", "a FIFO as tokenizer.model", ["tokenizer.model", "not a regular file"])
def _(d, s):
    m = copy_model(s, d)
    os.remove(Path(m) / "tokenizer.model")
    os.mkfifo(Path(m) / "tokenizer.model")
    return ["generate", "--model", m, "--prompt", "hi"]


@case("internal", "init-model --tokenizer whose tokenizer.model is a directory", "tokenizer.model")
def _(d, s):
    write(d / "tok" / "tokenizer.model" / "x", "not a tokenizer")
    return ["init-model", "--config", write(d / "c.json", model_config()), "--out", d / "out", "--tokenizer", d / "tok"]


@case("internal", "a FIFO in place of model.safetensors", ["model.safetensors", "not a regular file"])
def _(d, s):
    m = copy_model(s, d)
    os.remove(Path(m) / "model.safetensors")
    os.mkfifo(Path(m) / "model.safetensors")
    return ["export", "--model", m, "--out", d / "out"]


@case("internal", "a FIFO in place of config.json", "config.json")
def _(d, s):
    m = copy_model(s, d)
    os.remove(Path(m) / "config.json")
    os.mkfifo(Path(m) / "config.json")
    return ["generate", "--model", m, "--prompt", "hi"]


@case("internal", "a FIFO as the eval data", "e.jsonl")
def _(d, s):
    os.mkfifo(d / "e.jsonl")
    return ["eval", "--model", s.model, "--data", "e.jsonl"]


# --- modelcfg: config.json values are validated against the vocabulary and each other -------

@case("modelcfg", "eos_token_id outside the vocabulary", "eos_token_id")
def _(d, s):
    return ["generate", "--model", copy_model(s, d, config_changes={"eos_token_id": 5000}), "--prompt", "hi"]


@case("modelcfg", "negative bos_token_id", "bos_token_id")
def _(d, s):
    return ["export", "--model", copy_model(s, d, config_changes={"bos_token_id": -3}), "--out", d / "out"]


@case("modelcfg", "eos_token_id list with an id outside the vocabulary", "eos_token_id")
def _(d, s):
    return ["generate", "--model", copy_model(s, d, config_changes={"eos_token_id": [2, 99999]}), "--prompt", "hi"]


@case("modelcfg", "generation_config.json eos_token_id outside a SentencePiece vocabulary",
      ["generation_config.json", "eos_token_id 7000"])
def _(d, s):
    model = copy_model(s, d)
    assert (Path(model) / "tokenizer.model").exists()
    write(Path(model) / "generation_config.json", json.dumps({"eos_token_id": [2, 7000]}))
    return ["generate", "--model", model, "--prompt", "hi"]


@case("modelcfg", "pad_token_id outside the vocabulary", "pad_token_id")
def _(d, s):
    return ["init-model", "--config", write(d / "c.json", model_config(pad_token_id=512)), "--out", d / "out"]


@case("modelcfg", "heads that do not divide hidden_size", "num_attention_heads")
def _(d, s):
    return ["init-model", "--config", write(d / "c.json", model_config(num_attention_heads=5)), "--out", d / "out"]


@case("modelcfg", "config.json that is not JSON", "config.json")
def _(d, s):
    m = copy_model(s, d)
    write(Path(m) / "config.json", '{"model_type": "llama",')
    return ["eval", "--model", m, "--data", s.data]


# --- makedata: make-data's numbers ----------------------------------------------------------

@case("makedata", "--n above int64", "--n")
def _(d, s):
    return ["make-data", "--task", "arith", "--n", "99999999999999999999", "--seed", "1", "--out", d / "d.jsonl"]


@case("makedata", "--n negative", "--n")
def _(d, s):
    return ["make-data", "--task", "arith", "--n", "-1", "--seed", "1", "--out", d / "d.jsonl"]


@case("makedata", "--n above the cap", "--n")
def _(d, s):
    return ["make-data", "--task", "arith", "--n", "2000000000", "--seed", "1", "--out", d / "d.jsonl"]


@case("makedata", "--with-correction above 100", "--with-correction")
def _(d, s):
    return ["make-data", "--task", "arith", "--n", "4", "--seed", "1", "--with-correction", "200", "--out", d / "d.jsonl"]


@case("makedata", "--min-ops above --max-ops", "--min-ops")
def _(d, s):
    return ["make-data", "--task", "arith", "--n", "4", "--seed", "1", "--min-ops", "5", "--max-ops", "2",
            "--out", d / "d.jsonl"]


# ----------------------------------------------------------------------------------------------
# The test


def test_every_class_has_cases():
    counts = {c: sum(1 for k in CASES if k.cls == c) for c in CLASSES}
    assert all(n >= 3 for n in counts.values()), counts
    assert len(CASES) >= 40, len(CASES)
    assert len({k.name for k in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("c", CASES, ids=[f"{c.cls}:{c.name}" for c in CASES])
def test_bad_input_fails_cleanly(c, shared):
    d = shared.root / "cases" / "".join(ch if ch.isalnum() else "_" for ch in f"{c.cls}_{c.name}")
    d.mkdir(parents=True)
    args = c.build(d, shared)
    shared_dir = shared.root / "shared"
    before = snapshot(d, shared_dir)
    code, out, leftovers = run_scorch(args, d)
    after = snapshot(d, shared_dir)
    shown = f"scorch {' '.join(map(str, args))[:300]}\n--- output ({len(out)} chars) ---\n{out[:3000]}"

    assert code is not None, f"still running after {TIMEOUT_S} s (killed)\n{shown}"
    assert not leftovers, f"left running: {leftovers}\n{shown}"
    assert code == 2, f"exit code {code}, expected 2\n{shown}"
    for fragment in (e.replace("{d}", str(d)) for e in c.expect):
        assert fragment in out, f"the message does not name {fragment!r}\n{shown}"
    for bad in ("internal error", "Exception raised from", "terminate called"):
        assert bad not in out, f"{bad!r} in the output\n{shown}"
    assert len(out) <= MAX_MESSAGE_CHARS, f"a {len(out)}-character message\n{shown}"

    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"changed or removed: {changed}\n{shown}"
    allowed = {str(d / p) for p in c.allow_new}
    created = sorted(p for p in after if p not in before and p not in allowed)
    assert not created, f"new files left by a failing command: {created}\n{shown}"
