"""tools/efficacy end to end in its --quick form (tiny budgets, one seed): every method trains from
the right start, every model is evaluated, the report's cells are the evaluation files' values, the
self_verify AUC equals a naive pairwise count over the scored samples, and a second run reuses
everything. The suite's numbers are in bench/EFFICACY.md; this only keeps the pipeline working."""
import json
import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SCORCH_BIN", os.path.join(ROOT, "build", "scorch"))
METHODS = ["sft", "grpo", "correction_sft", "score", "score_stage2", "ttrl", "restrain", "scpo", "dpo_gold",
           "grpo_verify", "ttrl_long"]


def naive_auc(rows):
    pos = [r["rewards"]["self_verify"] for r in rows if r["rewards"]["math_answer"] == 1]
    neg = [r["rewards"]["self_verify"] for r in rows if r["rewards"]["math_answer"] != 1]
    pos = [p for p in pos if p is not None and not math.isnan(p)]
    neg = [n for n in neg if n is not None and not math.isnan(n)]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    if not os.access(BIN, os.X_OK):
        pytest.fail(f"{BIN} missing: build scorch first")
    tmp = tmp_path_factory.mktemp("efficacy")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "efficacy"), "--quick", "--seeds", "1", "--jobs", "2",
           "--runs", str(tmp / "runs"), "--out", str(tmp / "EFFICACY.md"), "--build-dir", os.path.dirname(BIN)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    report = (tmp / "EFFICACY.md").read_text()
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return tmp, first, second, report


def test_every_method_is_trained_from_its_start_and_evaluated(suite):
    tmp, _, _, report = suite
    seed = tmp / "runs" / "seed-1"
    for m in METHODS:
        assert (seed / m / "export" / "config.json").exists(), m
        for name in ("greedy", "sampled", "verify"):
            assert (seed / m / "eval" / f"{name}.json").exists(), (m, name)
        assert f"\n| {m} |" in report, m
    # The start each method trained from is the one the suite says (the run's resolved config).
    for m, start in (("sft", "base"), ("grpo", "sft/export"), ("score", "sft/export"), ("dpo_gold", "sft/export")):
        resolved = (seed / m / "config.yaml").read_text()
        assert str(seed / start) in resolved, (m, start)
    assert re.search(r'\n  stage: "?2"?\n', (seed / "score_stage2" / "config.yaml").read_text())
    # dpo_gold's pairs come from the gold answer, scpo's from the vote.
    assert json.loads((seed / "dpo_gold" / "round-1" / "pairs_metrics.json").read_text())["pairs_by"] == "gold"
    assert json.loads((seed / "scpo" / "round-1" / "pairs_metrics.json").read_text())["pairs_by"] == "vote"
    # ttrl_long trains twice ttrl's steps.
    steps = lambda m: max(json.loads(l)["step"] for l in open(seed / m / "metrics.jsonl") if '"step"' in l)
    assert steps("ttrl_long") == 2 * steps("ttrl")


def test_report_cells_are_the_evaluation_files_values(suite):
    tmp, _, _, report = suite
    seed = tmp / "runs" / "seed-1"
    for m in ("sft", "score"):
        greedy = json.loads((seed / m / "eval" / "greedy.json").read_text())
        sampled = json.loads((seed / m / "eval" / "sampled.json").read_text())
        row = next(l for l in report.splitlines() if l.startswith(f"| {m} |"))
        assert f"({greedy['accuracy_t1']:.3f})" in row
        assert f"({greedy['accuracy_t2']:.3f})" in row
        assert f"({sampled['accuracy']:.3f})" in row


def test_self_verify_auc_is_the_pairwise_count(suite):
    tmp, _, _, _ = suite
    seed = tmp / "runs" / "seed-1"
    for m in ("sft", "grpo"):
        rows = [json.loads(l) for l in open(seed / m / "eval" / "verify_scored.jsonl")]
        verify = json.loads((seed / m / "eval" / "verify.json").read_text())
        assert verify["samples"] == len(rows) == 4 * 40
        expected = naive_auc(rows)
        if expected is None:
            assert verify["auc"] is None
        else:
            assert verify["auc"] == pytest.approx(expected, abs=1e-12)
        assert all(0.0 <= r["rewards"]["self_verify"] <= 1.0 for r in rows if r["rewards"]["self_verify"] is not None)


def test_a_second_run_reuses_every_step(suite):
    _, _, second, _ = suite
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    # Nothing trained or evaluated again: every method's line reports a few seconds at most.
    done = [l for l in second.stdout.splitlines() if l.startswith("[") and ": done (" in l]
    assert len(done) == len(METHODS), second.stdout[-2000:]
    for line in done:
        if line.startswith("[") and ": done (" in line:
            assert int(line.split(": done (")[1].split(" s")[0]) <= 5, line


def test_unknown_method_and_bad_seeds_exit_2(tmp_path):
    base = [sys.executable, os.path.join(ROOT, "tools", "efficacy"), "--runs", str(tmp_path / "r"),
            "--build-dir", os.path.dirname(BIN)]
    r = subprocess.run(base + ["--methods", "grpo,nonsense"], capture_output=True, text=True)
    assert r.returncode == 2 and "nonsense" in r.stderr
    r = subprocess.run(base + ["--seeds", "1,x"], capture_output=True, text=True)
    assert r.returncode == 2 and "--seeds" in r.stderr
    assert not (tmp_path / "r").exists()
