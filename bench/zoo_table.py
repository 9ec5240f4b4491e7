#!/usr/bin/env python3
"""The model-zoo tables: how purification does on every backdoored and never-backdoored model
of an attack sweep (bench/attack_sweep.py) purified by bench/purify_sweep.py.

Per dataset x attack (means over seeds, worst model): ASR before / after, the never-backdoored
model's ASR on the same triggered graphs, excess ASR after (max(0, ASR after - that ASR)), the
balanced-accuracy and target-recall change, and whether the cell meets the bounds:
excess ASR <= 5 points or ASR <= 10%; balanced accuracy at most 2 points below the backdoored
model's; target recall at most 5 points below (one graph's worth more when the evaluation set has
under 60 graphs); no model losing more than 5 points of balanced accuracy.

Then the verdict: real backdoors (ASR before minus the never-backdoored model's >= 30 points)
detected with the right target, never-backdoored models flagged, and the evidence AUROC (real
backdoors against never-backdoored models).

    python3 bench/zoo_table.py --datasets AIDS,MUTAG --seeds 10,11,12 [--tag TAG] [--json out.json]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_sweep import ATTACKS, DATASETS, PAPER_NAMES, ROOT, run_dir  # noqa: E402
from purify_sweep import first_attack_dir, purify_dir  # noqa: E402


def auroc(positives, negatives):
    """Probability that a random positive scores above a random negative (ties count half)."""
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def model_row(attack_dir, report):
    a = report["attack"]
    target = json.loads((attack_dir / "metrics.json").read_text())["target_class"]
    n_eval = a["before"].get("n_clean") or json.loads((attack_dir / "metrics.json").read_text())["sizes"]["n_eval_clean"]
    clean_asr = a["clean_model"]["asr"]
    v = report["verdict"]
    return {
        "dir": str(attack_dir),
        "target": target,
        "asr_before": a["before"]["asr"],
        "asr_after": a["after"]["asr"],
        "clean_asr": clean_asr,
        "excess_after": max(0.0, a["after"]["asr"] - clean_asr),
        "bal_before": a["before"]["balanced_accuracy"],
        "bal_after": a["after"]["balanced_accuracy"],
        "rec_before": a["before"]["per_class_recall"][target],
        "rec_after": a["after"]["per_class_recall"][target],
        "n_eval": n_eval,
        "flagged": v["backdoor_evidence"],
        "suspected": v["suspected_target"],
        "score": v["evidence_score"],
        "real": a["before"]["asr"] - clean_asr >= 0.30,
        "seconds": report["timings"]["total_s"],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--attacks", default=",".join(ATTACKS))
    p.add_argument("--arch", default="gin")
    p.add_argument("--seeds", default="10,11,12")
    p.add_argument("--attacks-out", type=Path, default=ROOT / "bench" / "out" / "attacks")
    p.add_argument("--attack-tag", default="")
    p.add_argument("--tag", default="", help="the purification variant's --tag")
    p.add_argument("--json", type=Path, help="also write every model's row here")
    args = p.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    attacks = [a for a in args.attacks.split(",") if a]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    args.archs = [args.arch]

    rows, clean_rows = [], []
    print("| dataset | attack | models | ASR before | ASR after | never-backdoored ASR | excess ASR after (worst) "
          "| bal. ACC change (worst) | target recall change | flagged | bounds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    cells_met = cells = 0
    for dataset in datasets:
        for attack in attacks:
            cell = []
            for seed in seeds:
                d = run_dir(args.attacks_out, dataset, args.arch, attack, seed, args.attack_tag)
                f = purify_dir(d, "backdoored", args.tag) / "report.json"
                if f.is_file():
                    r = model_row(d, json.loads(f.read_text()))
                    r.update(dataset=dataset, attack=attack, seed=seed)
                    cell.append(r)
            if not cell:
                continue
            rows.extend(cell)
            m = lambda k: statistics.fmean(r[k] for r in cell)
            excess, asr_after = m("excess_after"), m("asr_after")
            bal = [r["bal_after"] - r["bal_before"] for r in cell]
            rec = [r["rec_after"] - r["rec_before"] for r in cell]
            n_eval = min(r["n_eval"] for r in cell)
            rec_slack = 0.05 + (1.0 / max(1, n_eval) if n_eval < 60 else 0.0)
            ok = ((excess <= 0.05 or asr_after <= 0.10) and statistics.fmean(bal) >= -0.02
                  and statistics.fmean(rec) >= -rec_slack and min(bal) >= -0.05)
            cells += 1
            cells_met += ok
            print(f"| {dataset} | {PAPER_NAMES[attack]} | {len(cell)} | {m('asr_before') * 100:.1f} | {asr_after * 100:.1f} "
                  f"| {m('clean_asr') * 100:.1f} | {excess * 100:.1f} ({max(r['excess_after'] for r in cell) * 100:.1f}) "
                  f"| {statistics.fmean(bal) * 100:+.1f} ({min(bal) * 100:+.1f}) | {statistics.fmean(rec) * 100:+.1f} "
                  f"| {sum(r['flagged'] for r in cell)}/{len(cell)} | {'yes' if ok else 'no'} |")
        for seed in seeds:
            first = first_attack_dir(args, dataset, args.arch, seed)
            if first is None:
                continue
            f = purify_dir(first, "clean", args.tag) / "report.json"
            if f.is_file():
                rep = json.loads(f.read_text())
                a = rep["attack"]
                clean_rows.append({
                    "dataset": dataset, "seed": seed, "flagged": rep["verdict"]["backdoor_evidence"],
                    "score": rep["verdict"]["evidence_score"],
                    "bal_change": a["after"]["balanced_accuracy"] - a["before"]["balanced_accuracy"],
                    "acc_change": a["after"]["clean_accuracy"] - a["before"]["clean_accuracy"],
                })
    print(f"\ncells meeting every bound: {cells_met} of {cells}")
    real = [r for r in rows if r["real"]]
    detected = [r for r in real if r["flagged"] and r["suspected"] == r["target"]]
    flagged_clean = [r for r in clean_rows if r["flagged"]]
    print(f"real backdoors detected with the right target: {len(detected)} of {len(real)}")
    print(f"never-backdoored models flagged: {len(flagged_clean)} of {len(clean_rows)}"
          + (f" (worst accuracy change of a flagged one {min(r['acc_change'] for r in flagged_clean) * 100:+.1f} points)"
             if flagged_clean else ""))
    print(f"evidence AUROC, real backdoors vs never-backdoored: "
          f"{auroc([r['score'] for r in real], [r['score'] for r in clean_rows]):.3f}")
    for d in datasets:
        cr = [r for r in clean_rows if r["dataset"] == d]
        rr = [r for r in real if r["dataset"] == d]
        if cr or rr:
            print(f"  {d}: real {len(rr)} (detected {sum(r in detected for r in rr)}), clean flagged "
                  f"{sum(r['flagged'] for r in cr)}/{len(cr)}, clean scores "
                  f"{[round(r['score'], 2) for r in cr]}, real scores {[round(r['score'], 2) for r in rr]}")
    if args.json:
        args.json.write_text(json.dumps({"backdoored": rows, "clean": clean_rows}, indent=1))


if __name__ == "__main__":
    main()
