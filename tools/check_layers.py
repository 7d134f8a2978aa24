#!/usr/bin/env python3
"""Fails on an #include that points up the layer order (DESIGN.md "Layout").

    kernels <- csrc (common <- config <- {model, tokenizer, dist} <- data <- rollout <- train)
            <- rewards <- trainers <- cli

A file may include its own layer and any layer below it. Inside trainers/, an algorithm's folder
(sft/, dpo/, grpo/, score/) includes only itself, trainers/common/ and trainers/registry.h;
common/ includes only common/; registry.cpp, the dispatcher, includes every trainer. tests/ and
tools/ sit outside the order and are not checked.

    tools/check_layers.py [ROOT]     check the tree at ROOT (default: this checkout)
    tools/check_layers.py --self-test
                                     plant wrong-way includes in a scratch tree and check that
                                     each one is caught (and that a clean tree passes)
Exit status: 0 clean, 1 wrong-way includes found (each printed as file:line).
"""
import os
import re
import sys
import tempfile

# Each layer and the layers it may include directly (the closure below adds what they include).
DIRECT = {
    "kernels": [],
    "common": [],
    "config": ["common"],
    "model": ["config", "kernels"],
    "tokenizer": ["config"],
    "dist": ["config"],
    "data": ["tokenizer"],
    "rollout": ["model", "tokenizer", "data"],
    "train": ["rollout", "dist"],
    "rewards": ["train"],
    "trainers": ["rewards"],
    "cli": ["trainers"],
}
CSRC_LAYERS = {"common", "config", "model", "tokenizer", "dist", "data", "rollout", "train"}
SOURCE_SUFFIXES = (".h", ".hpp", ".cpp", ".cc", ".cu", ".cuh", ".inc")
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def allowed_layers():
    closure = {}

    def visit(layer):
        if layer not in closure:
            below = {layer}
            for dep in DIRECT[layer]:
                below |= visit(dep)
            closure[layer] = below
        return closure[layer]

    for layer in DIRECT:
        visit(layer)
    return closure


ALLOWED = allowed_layers()


def layer_of_file(rel):
    parts = rel.split("/")
    if parts[0] == "csrc" and len(parts) > 2 and parts[1] in CSRC_LAYERS:
        return parts[1]
    if parts[0] in ("kernels", "rewards", "trainers", "cli"):
        return parts[0]
    return None


def layer_of_include(path):
    parts = path.split("/")
    if parts[0] == "csrc" and len(parts) > 1:
        parts = parts[1:]
    if len(parts) > 1 and (parts[0] in DIRECT):
        return parts[0], parts
    return None, parts


def check_trainers(rel, inc_parts):
    """The rule inside trainers/: algorithms do not include each other."""
    if inc_parts[0] != "trainers" or len(inc_parts) < 2:
        return None
    file_parts = rel.split("/")
    if len(file_parts) == 2:  # trainers/registry.{h,cpp}: the dispatcher
        return None
    mine, target = file_parts[1], inc_parts[1]
    if target == "registry.h" and mine != "common":
        return None
    if target == mine or target == "common":
        return None
    return f"trainers/{mine}/ includes trainers/{target}/ (shared pieces belong in trainers/common/)"


def check(root):
    problems = []
    for top in ("kernels", "csrc", "rewards", "trainers", "cli"):
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(SOURCE_SUFFIXES):
                    continue
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                layer = layer_of_file(rel)
                if layer is None:
                    continue
                with open(full, encoding="utf-8", errors="replace") as f:
                    for lineno, line in enumerate(f, 1):
                        m = INCLUDE.match(line)
                        if not m:
                            continue
                        path = m.group(1)
                        if path.startswith("../") or "/../" in path:
                            problems.append(f"{rel}:{lineno}: #include \"{path}\" climbs out of its folder; "
                                            "include by layer path (e.g. \"model/transformer.h\")")
                            continue
                        target, parts = layer_of_include(path)
                        if target is None:
                            continue  # same-folder or third-party header
                        if target not in ALLOWED[layer]:
                            problems.append(f"{rel}:{lineno}: {layer}/ includes \"{path}\" from {target}/, "
                                            f"a higher layer (allowed below {layer}/: "
                                            f"{', '.join(sorted(ALLOWED[layer] - {layer})) or 'nothing'})")
                            continue
                        if layer == "trainers":
                            why = check_trainers(rel, parts)
                            if why:
                                problems.append(f"{rel}:{lineno}: {why}")
    return problems


def self_test():
    clean = {
        "csrc/common/log.h": "",
        "csrc/model/transformer.h": '#include "common/log.h"\n#include "kernels/ops.h"\n',
        "kernels/ops.h": "",
        "rewards/reward.h": '#include "rollout/engine.h"\n',
        "csrc/rollout/engine.h": '#include "model/transformer.h"\n',
        "trainers/common/policy_loss.h": "",
        "trainers/registry.cpp": '#include "trainers/grpo/grpo_trainer.h"\n#include "trainers/score/score_trainer.h"\n',
        "trainers/grpo/grpo_trainer.h": '#include "trainers/common/policy_loss.h"\n#include "trainers/registry.h"\n',
        "trainers/score/score_trainer.h": '#include "trainers/common/policy_loss.h"\n',
        "cli/main.cpp": '#include "trainers/registry.h"\n#include "csrc/model/transformer.h"\n',
    }
    planted = [
        ("csrc/model/bad.cpp", '#include "trainers/grpo/grpo_trainer.h"\n', "model/ includes"),
        ("csrc/train/bad.cpp", '#include "rewards/reward.h"\n', "train/ includes"),
        ("csrc/common/bad.h", '#include "config/config.h"\n', "common/ includes"),
        ("kernels/bad.cu", '#include "csrc/model/transformer.h"\n', "kernels/ includes"),
        ("rewards/bad.cpp", '#include "trainers/common/policy_loss.h"\n', "rewards/ includes"),
        ("trainers/score/bad.cpp", '#include "trainers/grpo/grpo_trainer.h"\n', "trainers/score/ includes trainers/grpo/"),
        ("trainers/common/bad.cpp", '#include "trainers/registry.h"\n', "trainers/common/ includes trainers/registry.h"),
        ("csrc/data/bad.cpp", '#include "../rollout/engine.h"\n', "climbs out"),
    ]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        def write(rel, text):
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

        for rel, text in clean.items():
            write(rel, text)
        if check(tmp):
            failures.append(f"a clean tree was reported: {check(tmp)}")
        for rel, text, expect in planted:
            write(rel, text)
            found = check(tmp)
            if len(found) != 1 or not found[0].startswith(rel + ":1:") or expect not in found[0]:
                failures.append(f"planted {rel} ({text.strip()}): expected one report containing "
                                f"'{expect}', got {found}")
            os.remove(os.path.join(tmp, rel))
    for f in failures:
        print("self-test FAILED:", f)
    if not failures:
        print(f"self-test: {len(planted)} planted wrong-way includes caught, clean tree passes")
    return 1 if failures else 0


def main(argv):
    if len(argv) > 1 and argv[1] == "--self-test":
        return self_test()
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    problems = check(root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} include(s) point up the layer order (DESIGN.md \"Layout\"): move the shared "
              "piece down to a layer both can include, or the including file up")
        return 1
    print("layering: every #include points down the layer order")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
