#!/usr/bin/env python3
"""Prints the comparison table (the paper's Table 3 layout) from `gcleaner reproduce`'s JSON, with
G-Cleaner's cells taken from bench/purify_sweep.py's reports on the same attack models (the attack
pipeline is deterministic under a seed, so `reproduce` and `attack_sweep.py` build the same
backdoored models: their "before" figures agree to the digit).

    python3 bench/defence_table.py bench/out/reproduce-baselines.json --purify-tag s1 --paper-tag paper

Per dataset and attack: ASR and clean accuracy (mean over seeds, percent) before, for each
baseline and for G-Cleaner, plus the never-backdoored model's ASR on the same triggered graphs.
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_sweep import PAPER_NAMES, run_dir  # noqa: E402

# reproduce names Fingerprint-4 after its folder.
SWEEP_NAME = {"Fingerprint": "Fingerprint-4"}
BASELINES = ["finetune", "prune", "smoothing", "abl"]


def mean(xs):
    return f"{statistics.fmean(xs) * 100:.1f}" if xs else "-"


def purified_cells(attacks_out, dataset, attack, group, tag):
    """ASR and clean accuracy after purification, per seed of `group`, from purify_sweep's reports."""
    asr, acc = [], []
    for c in group:
        d = run_dir(attacks_out, SWEEP_NAME.get(dataset, dataset), "gin", attack, c["seed"], "")
        f = d / f"purify-backdoored{'-' + tag if tag else ''}" / "report.json"
        if f.is_file():
            after = json.loads(f.read_text())["attack"]["after"]
            asr.append(after["asr"])
            acc.append(after["clean_accuracy"])
    return asr, acc


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--purify-tag", default="", help="bench/purify_sweep.py --tag of the G-Cleaner runs")
    parser.add_argument("--paper-tag", default=None,
                        help="bench/purify_sweep.py --tag of G-Cleaner runs in paper mode (`-- --mode paper`): adds a column")
    parser.add_argument("--attacks-out", type=Path, default=ROOT / "bench" / "out" / "attacks")
    args = parser.parse_args()
    cells = json.loads(args.results.read_text())["cells"]
    groups = defaultdict(list)
    for c in cells:
        groups[(c["dataset"], c["attack"])].append(c)
    purified = {"gcleaner": args.purify_tag}
    if args.paper_tag is not None:
        purified["gcleaner-paper"] = args.paper_tag
    cols = ["before"] + BASELINES + list(purified)
    print("| dataset | attack | seeds | clean-model ASR | " + " | ".join(f"{c} ASR / ACC" for c in cols) + " |")
    print("|" + "---|" * (4 + len(cols)))
    for (dataset, attack), group in sorted(groups.items()):
        group.sort(key=lambda c: c["seed"])
        row = {"before": ([c["backdoored"]["asr"] for c in group], [c["backdoored"]["accuracy"] for c in group])}
        for b in BASELINES:
            ms = [c["defenses"][b] for c in group if b in c["defenses"]]
            row[b] = ([m["asr"] for m in ms], [m["accuracy"] for m in ms])
        for column, tag in purified.items():
            row[column] = purified_cells(args.attacks_out, dataset, attack, group, tag)
        cells_text = " | ".join(f"{mean(row[c][0])} / {mean(row[c][1])}" for c in cols)
        print(f"| {SWEEP_NAME.get(dataset, dataset)} | {PAPER_NAMES[attack]} | {len(group)} "
              f"| {mean([c['clean_model']['asr'] for c in group])} | {cells_text} |")


if __name__ == "__main__":
    main()
