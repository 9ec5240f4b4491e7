#!/usr/bin/env python3
"""Checks that two gcleaner binaries purify alike: both purify the same models with the same
clean samples, and the reports must be identical apart from timings (and the input hash,
which names the file). For refactors that must not change results.

    python3 bench/same_reports.py --old /tmp/gcleaner-before --new target/release/gcleaner \\
        bench/out/attacks/AIDS/gin/subgraph/seed10 bench/out/attacks/ENZYMES/gin/subgraph/seed10

Each argument is an attack folder (bench/attack_sweep.py's output); its backdoored and its
never-backdoored model are purified. Exit status 0 when every pair of reports agrees.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

IGNORED = {"timings", "total_s"}


def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in IGNORED and not k.endswith("_s")}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def first_difference(a, b, path="$"):
    if type(a) is not type(b):
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: present in only one report"
            d = first_difference(a[key], b[key], f"{path}.{key}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def purify(binary, model, data, out):
    subprocess.run([str(binary), "purify", "--model", str(model), "--data", str(data), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return strip(json.loads((out / "report.json").read_text()))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", type=Path, required=True)
    p.add_argument("--new", type=Path, required=True)
    p.add_argument("--ignore", action="append", default=[], help="a report field to leave out of the comparison "
                   "(one the change adds or removes on purpose); repeatable")
    p.add_argument("attack_dirs", type=Path, nargs="+")
    args = p.parse_args()
    IGNORED.update(args.ignore)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, d in enumerate(args.attack_dirs):
            for model in ["model.safetensors", "clean_model.safetensors"]:
                reports = [purify(b, d / model, d / "defender_clean.json", Path(tmp) / f"{i}-{model}-{k}")
                           for k, b in enumerate([args.old, args.new])]
                diff = first_difference(*reports)
                failures += diff is not None
                print(f"{d} {model}: {'same' if diff is None else 'DIFFERENT at ' + diff}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
