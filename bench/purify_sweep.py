#!/usr/bin/env python3
"""Purifies the models of an attack sweep (bench/attack_sweep.py) with `gcleaner purify` and prints
a table: per dataset and attack, mean +- std over seeds of ASR before / after, the
never-backdoored model's ASR on the same triggered graphs, clean accuracy, balanced accuracy and
the target class's recall before / after, and how often the verdict found a backdoor.

The never-backdoored model of each dataset and seed (clean_model.safetensors, shared by its
attacks) is purified once too, with the first attack's clean sample: the verdict should find no backdoor there, and the model should come back
unchanged. Both error rates of the verdict are printed under the table.

Resumable: a purification whose report.json exists is not repeated. Options after `--` go to
`gcleaner purify` (e.g. `-- --mode paper`); give such a variant its own `--tag`.

    python3 bench/purify_sweep.py --datasets bitcoin,AIDS --seeds 10,11
    python3 bench/purify_sweep.py --tag paper -- --mode paper
    python3 bench/purify_sweep.py --tag clean1pct --clean-fraction 0.01
    python3 bench/purify_sweep.py --tag nci1 --datasets AIDS --aux-data ../shared/datasets/NCI1
    python3 bench/purify_sweep.py --summary-only
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_sweep import ATTACKS, DATASETS, PAPER_NAMES, mean_std, parse_grid, run_dir, run_logged  # noqa: E402

MODELS = {"backdoored": "model.safetensors", "clean": "clean_model.safetensors"}


def purify_dir(attack_dir, which, tag):
    return attack_dir / f"purify-{which}{'-' + tag if tag else ''}"


def run_one(args, attack_dir, which):
    out = purify_dir(attack_dir, which, args.tag)
    if (out / "report.json").is_file():
        return "kept"
    model = attack_dir / MODELS[which]
    if not (attack_dir / "metrics.json").is_file() or not model.is_file():
        return "missing"
    data, sample = attack_dir / "defender_clean.json", []
    if args.clean_fraction is not None:
        # A smaller clean sample: that share of the whole dataset, drawn from the defender's.
        n_graphs = json.loads((attack_dir / "metrics.json").read_text())["sizes"]["n_graphs"]
        sample = ["--sample-size", str(max(2, round(args.clean_fraction * n_graphs)))]
    if args.aux_data is not None:
        # Auxiliary data (the paper's Table 5): as many graphs of another dataset as the
        # defender's sample holds, labelled by the model itself.
        n_defender = json.loads((attack_dir / "metrics.json").read_text())["sizes"]["n_defender"]
        data, sample = args.aux_data, ["--sample-size", str(n_defender), "--pseudo-labels"]
    command = [
        str(args.bin), "purify", "--model", str(model), "--data", str(data), *sample,
        "--attack", str(attack_dir), "--device", args.device, "--out", str(out), *args.extra,
    ]
    return run_logged(command, out, f"{attack_dir.relative_to(args.out)} {which}")


def first_attack_dir(args, dataset, arch, seed):
    """The attack folder whose clean sample purifies the dataset/seed's never-backdoored model."""
    for attack in ATTACKS:
        d = run_dir(args.attacks_out, dataset, arch, attack, seed, args.attack_tag)
        if (d / "metrics.json").is_file():
            return d
    return None


def summarize(args):
    header = ("| dataset | attack | seeds | ASR before | ASR after | never-backdoored ASR | ACC before | ACC after "
              "| bal. ACC before | bal. ACC after | target recall before | after | verdict: backdoor | s/run |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    verdict_errors = {"backdoored": [0, 0], "clean": [0, 0]}
    clean_acc_change = []
    for dataset in args.datasets:
        for arch in args.archs:
            for attack in args.attacks:
                rows = []
                for seed in args.seeds:
                    attack_dir = run_dir(args.attacks_out, dataset, arch, attack, seed, args.attack_tag)
                    f = purify_dir(attack_dir, "backdoored", args.tag) / "report.json"
                    if not f.is_file():
                        continue
                    report = json.loads(f.read_text())
                    target = json.loads((attack_dir / "metrics.json").read_text())["target_class"]
                    rows.append((report, target))
                    verdict_errors["backdoored"][0] += not report["verdict"]["backdoor_evidence"]
                    verdict_errors["backdoored"][1] += 1
                    c = purify_dir(attack_dir, "clean", args.tag) / "report.json"
                    if attack_dir == first_attack_dir(args, dataset, arch, seed) and c.is_file():
                        clean = json.loads(c.read_text())
                        verdict_errors["clean"][0] += clean["verdict"]["backdoor_evidence"]
                        verdict_errors["clean"][1] += 1
                        a = clean["attack"]
                        clean_acc_change.append(a["after"]["clean_accuracy"] - a["before"]["clean_accuracy"])
                if not rows:
                    continue
                att = [r["attack"] for r, _ in rows]
                recall = lambda key: [a[key]["per_class_recall"][t] for a, (_, t) in zip(att, rows)]
                label = dataset + (f" ({arch})" if arch != "gin" else "")
                print(
                    f"| {label} | {PAPER_NAMES[attack]} | {len(rows)} "
                    f"| {mean_std([a['before']['asr'] for a in att])} | **{mean_std([a['after']['asr'] for a in att])}** "
                    f"| {mean_std([a['clean_model']['asr'] for a in att if a.get('clean_model')])} "
                    f"| {mean_std([a['before']['clean_accuracy'] for a in att])} | {mean_std([a['after']['clean_accuracy'] for a in att])} "
                    f"| {mean_std([a['before']['balanced_accuracy'] for a in att])} | {mean_std([a['after']['balanced_accuracy'] for a in att])} "
                    f"| {mean_std(recall('before'))} | {mean_std(recall('after'))} "
                    f"| {sum(r['verdict']['backdoor_evidence'] for r, _ in rows)}/{len(rows)} "
                    f"| {statistics.fmean(r['timings']['total_s'] for r, _ in rows):.0f} |"
                )
    missed, n_back = verdict_errors["backdoored"]
    false_alarms, n_clean = verdict_errors["clean"]
    print()
    print(f"verdict: {missed}/{n_back} backdoored models judged clean (missed), "
          f"{false_alarms}/{n_clean} never-backdoored models judged backdoored (false alarms)")
    if clean_acc_change:
        print(f"never-backdoored models' clean accuracy change after purify: mean {statistics.fmean(clean_acc_change) * 100:+.1f} "
              f"points, worst {min(clean_acc_change) * 100:+.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--archs", default="gin")
    parser.add_argument("--seeds", default="10,11,12,13,14")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "gcleaner")
    parser.add_argument("--attacks-out", type=Path, default=ROOT / "bench" / "out" / "attacks",
                        help="the attack sweep's output folder")
    parser.add_argument("--attack-tag", default="", help="the attack sweep's --tag")
    parser.add_argument("--tag", default="", help="suffix for this purification variant's folders")
    parser.add_argument("--no-clean", action="store_true", help="skip purifying the never-backdoored models")
    parser.add_argument("--clean-fraction", type=float, help="purify with this share of the dataset, drawn "
                        "from the defender's sample (e.g. 0.01), instead of the whole sample")
    parser.add_argument("--aux-data", type=Path, help="purify with graphs of this dataset instead (as many as "
                        "the defender's sample, labelled by the model: --pseudo-labels)")
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("extra", nargs="*", help="more `gcleaner purify` arguments, after --")
    args = parse_grid(parser)
    args.out = args.attacks_out
    if not args.summary_only:
        if not args.bin.is_file():
            sys.exit(f"{args.bin} not found: run `cargo build --release` first")
        for seed in args.seeds:
            for dataset in args.datasets:
                for arch in args.archs:
                    for attack in args.attacks:
                        attack_dir = run_dir(args.attacks_out, dataset, arch, attack, seed, args.attack_tag)
                        run_one(args, attack_dir, "backdoored")
                    if not args.no_clean:
                        first = first_attack_dir(args, dataset, arch, seed)
                        if first is not None:
                            run_one(args, first, "clean")
    summarize(args)


if __name__ == "__main__":
    main()
