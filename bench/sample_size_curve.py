#!/usr/bin/env python3
"""How purification's cost depends on the size of the clean sample.

For each model of an attack sweep cell (bench/attack_sweep.py), writes the dataset's graphs that
the attack did not hold out (its training split, defender and evaluation graphs excluded) as a
gcleaner.graphs/v1 sample, purifies the backdoored model with N of them drawn at random
(`gcleaner purify --sample-size N --seed S`, or all of them), and prints the mean over
seeds of ASR after purification and the change of balanced accuracy and of the target class's
recall, measured on the attack's evaluation sets. Resumable: a purification whose report.json
exists is not repeated. Unfiltered TU datasets only (not Fingerprint-4's class subset).

    python3 bench/sample_size_curve.py --dataset AIDS --attack subgraph --sizes 33,120,240,all
"""

import argparse
import collections
import json
import statistics
import subprocess
import sys
from pathlib import Path

from tu import read_tu

ROOT = Path(__file__).resolve().parent.parent


def training_sample(dataset_dir, attack_dir, out):
    """Writes the graphs the attack did not hold out; returns how many."""
    if out.is_file():
        return len(json.loads(out.read_text())["graphs"])
    attack = json.loads((attack_dir / "attack.json").read_text())
    sizes = json.loads((attack_dir / "metrics.json").read_text())["sizes"]
    held = set(attack["eval_indices"]) | set(attack["defender_indices"])
    graphs = read_tu(dataset_dir)
    kept = [g for i, g in enumerate(graphs) if i not in held]
    # The attack's indices number the dataset it attacked: a class filter (--keep-classes, as
    # Fingerprint-4 uses) would renumber it, and the split read here would be another one.
    if len(graphs) != sizes["n_graphs"] or len(kept) != sizes["n_train"]:
        sys.exit(f"{attack_dir}: the attack saw {sizes['n_graphs']} graphs and trained on {sizes['n_train']}, "
                 f"{dataset_dir} gives {len(graphs)} and {len(kept)} (a filtered dataset is not supported)")
    classes = sorted({g["label"] for g in graphs})
    out.write_text(json.dumps({"format": "gcleaner.graphs/v1", "name": dataset_dir.name, "class_labels": classes, "graphs": kept}))
    return len(kept)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="AIDS", help="a TU folder under --datasets-dir, as named in the attack sweep")
    parser.add_argument("--attack", default="subgraph")
    parser.add_argument("--arch", default="gin")
    parser.add_argument("--seeds", default="10,11,12,13,14")
    parser.add_argument("--sizes", default="33,120,240,all", help="sample sizes; `all` is the whole training split")
    parser.add_argument("--datasets-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--attacks-out", type=Path, default=ROOT / "bench" / "out" / "attacks")
    parser.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "gcleaner")
    parser.add_argument("extra", nargs="*", help="more `gcleaner purify` arguments, after --")
    args = parser.parse_args()

    sizes = [None if v == "all" else int(v) for v in args.sizes.split(",")]
    rows = collections.defaultdict(list)
    for seed in (int(v) for v in args.seeds.split(",")):
        attack_dir = args.attacks_out / args.dataset / args.arch / args.attack / f"seed{seed}"
        if not (attack_dir / "attack.json").is_file():
            print(f"skipping seed {seed}: no attack in {attack_dir}", file=sys.stderr)
            continue
        curve_dir = attack_dir / "sample-size-curve"
        curve_dir.mkdir(exist_ok=True)
        sample = curve_dir / "training_split.json"
        available = training_sample(args.datasets_dir / args.dataset, attack_dir, sample)
        for size in sizes:
            out = curve_dir / (f"n{size}" if size else "all")
            if not (out / "report.json").is_file():
                command = [str(args.bin), "purify", "--model", str(attack_dir / "model.safetensors"), "--data", str(sample),
                           "--attack", str(attack_dir), "--seed", str(seed), "--out", str(out), *args.extra]
                if size:
                    command += ["--sample-size", str(size)]
                with open(str(out) + ".log", "w") as log:
                    if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                        print(f"seed {seed} size {size}: failed, see {out}.log", file=sys.stderr)
                        continue
            report = json.loads((out / "report.json").read_text())
            before, after = report["attack"]["before"], report["attack"]["after"]
            target = before["target_label"]
            rows[size or available].append((
                report["sample"]["n_unlearning"],
                after["asr"] * 100,
                (after["balanced_accuracy"] - before["balanced_accuracy"]) * 100,
                (after["per_class_recall"][target] - before["per_class_recall"][target]) * 100,
            ))
    print("| sample (unlearning graphs) | runs | ASR after | bal. ACC | target recall |")
    print("|---|---|---|---|---|")
    for size in sorted(rows):
        values = rows[size]
        mean = lambda i: statistics.fmean(v[i] for v in values)
        print(f"| {size} ({mean(0):.0f}) | {len(values)} | {mean(1):.1f} | {mean(2):+.1f} | {mean(3):+.1f} |")


if __name__ == "__main__":
    main()
