#!/usr/bin/env python3
"""PNG curves from a run's metrics.jsonl (DESIGN.md "Run directory and metrics").

One subplot per metric, x = step. Non-numeric values and nulls (NaN/Inf are written as null) are
skipped; a metric logged only at some steps (eval_accuracy) is drawn at those steps with markers.

  tools/plot/plot_metrics.py runs/quickstart/sft/metrics.jsonl --out sft.png
  tools/plot/plot_metrics.py RUN/metrics.jsonl --metrics loss,learning_rate,eval_accuracy --out a.png
  tools/plot/plot_metrics.py A/metrics.jsonl B/metrics.jsonl --labels sft,grpo --out compare.png

Several files are overlaid on the same axes (one line each), to compare runs.
"""
import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    """Returns {metric: ([steps], [values])} for numeric values; bad lines are reported and skipped."""
    series = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{path}:{lineno}: skipping a line that is not JSON ({e.msg})", file=sys.stderr)
                continue
            if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
                continue
            step = row["step"]
            for key, value in row.items():
                if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if not math.isfinite(value):
                    continue
                xs, ys = series.setdefault(key, ([], []))
                xs.append(step)
                ys.append(value)
    return series


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="metrics.jsonl file(s)")
    p.add_argument("--metrics", default="", help="comma-separated metric names (default: every numeric key)")
    p.add_argument("--out", default="metrics.png", help="output PNG path (default: metrics.png)")
    p.add_argument("--labels", default="", help="comma-separated legend labels, one per file")
    p.add_argument("--cols", type=int, default=2, help="subplots per row (default 2)")
    p.add_argument("--logy", default="", help="comma-separated metrics drawn on a log y axis")
    args = p.parse_args(argv)

    runs = []
    for path in args.files:
        if not os.path.isfile(path):
            print(f"error: no such file: {path}", file=sys.stderr)
            return 2
        runs.append(read_metrics(path))
    labels = [s for s in args.labels.split(",") if s] or [os.path.dirname(f) or f for f in args.files]
    if len(labels) != len(args.files):
        print("error: --labels needs one label per file", file=sys.stderr)
        return 2

    if args.metrics:
        names = [m.strip() for m in args.metrics.split(",") if m.strip()]
        missing = [m for m in names if not any(m in r for r in runs)]
        if missing:
            known = sorted(set().union(*[r.keys() for r in runs]))
            print(f"error: metric(s) {', '.join(missing)} not found; the files have: {', '.join(known)}",
                  file=sys.stderr)
            return 2
    else:
        names = []
        for r in runs:  # first-seen order: the order the trainer logs them
            names += [k for k in r if k not in names]
    if not names:
        print("error: no numeric metrics in " + ", ".join(args.files), file=sys.stderr)
        return 2

    logy = {m for m in args.logy.split(",") if m}
    cols = max(1, min(args.cols, len(names)))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.2 * rows), squeeze=False)
    for i, name in enumerate(names):
        ax = axes[i // cols][i % cols]
        for run, label in zip(runs, labels):
            if name not in run:
                continue
            xs, ys = run[name]
            sparse = len(xs) < 30
            ax.plot(xs, ys, marker="o" if sparse else None, markersize=3, linewidth=1.2,
                    label=label if len(runs) > 1 else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
        if name in logy:
            ax.set_yscale("log")
        if len(runs) > 1:
            ax.legend(fontsize=7)
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(names)} metric(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
