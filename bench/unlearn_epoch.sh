#!/usr/bin/env bash
# Times gcleaner's robust-mode unlearning epoch and an equivalent PyTorch Geometric loop on the
# same machine, prints the ratio of median epoch times, and times one whole purify()
# (recovery + unlearning) on the same 33-graph AIDS sample. Called by `make bench`.
#
# Both sides use the same number of intra-op threads: the one thread gcleaner runs purification
# on (engine/src/threads.rs). A shared or throttled machine can run 1.5x slower for tens of
# seconds and then recover, so the two sides alternate: ROUNDS rounds (default 5) of a full
# unlearning run each, gcleaner then PyG's batched loop, on the same model and sample; the
# ratio is taken over the epochs of all rounds, and per round. The slower per-graph PyG loop
# runs in the first round only.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets/AIDS}
rounds=${ROUNDS:-5}
if [ ! -d "$data" ]; then
  echo "skipping unlearning epoch benchmark: $data not found"
  exit 0
fi
data=$(realpath "$data")  # cargo bench runs from engine/
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo bench -q -p gcleaner-engine --bench unlearn_epoch --no-run
bench() { cargo bench -q -p gcleaner-engine --bench unlearn_epoch -- "$@" | tail -n 1; }
# Round 1: the attack that makes the model, the whole purify(), and both PyG montages.
bench "$data" --sample-out "$work" > "$work/rust1.json"
threads=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["threads"])' "$work/rust1.json")
python bench/pyg_unlearn_epoch.py --sample "$work" --threads "$threads" | tail -n 1 > "$work/pyg1.json"
for round in $(seq 2 "$rounds"); do
  bench "$data" --from "$work" --skip-purify > "$work/rust$round.json"
  python bench/pyg_unlearn_epoch.py --sample "$work" --threads "$threads" --variants batched | tail -n 1 > "$work/pyg$round.json"
done
python - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
rust = [json.load(open(f"{work}/rust{r}.json")) for r in range(1, rounds + 1)]
pyg = [json.load(open(f"{work}/pyg{r}.json")) for r in range(1, rounds + 1)]
first = rust[0]
ms = lambda s: f"{s * 1000:7.1f} ms"
r_all = [e for r in rust for e in r["epochs_s"]]
b_all = [e for p in pyg for e in p["batched_epochs_s"]]
r_med, b_med = statistics.median(r_all), statistics.median(b_all)
print(f"Robust-mode unlearning epoch: {first['unlearning_graphs']} AIDS graphs x "
      f"{first['copies_per_epoch'] // first['unlearning_graphs']} placements = {first['copies_per_epoch']} "
      f"triggered copies, batch {first['batch_size']}, {first['threads']} thread(s); "
      f"{rounds} alternating rounds of {first['epochs_timed']} timed epochs each:")
for i, (r, p) in enumerate(zip(rust, pyg), 1):
    print(f"  round {i}: gcleaner {ms(r['unlearn_epoch_s'])}, PyG batched {ms(p['batched_epoch_s'])}: "
          f"{p['batched_epoch_s'] / r['unlearn_epoch_s']:.2f}x")
print(f"  all rounds, median epoch: gcleaner (tch) {ms(r_med)}, PyG batched montage {ms(b_med)}: "
      f"gcleaner is {b_med / r_med:.2f}x faster")
p1 = pyg[0]
print(f"  round 1, PyG per-graph montage {ms(p1['per_graph_epoch_s'])}: gcleaner is "
      f"{p1['per_graph_epoch_s'] / first['unlearn_epoch_s']:.2f}x faster "
      f"(PyG without the per-epoch monitoring: batched {ms(p1['batched_train_s'])}, per-graph {ms(p1['per_graph_train_s'])})")
print(f"  loss, first / last epoch: gcleaner {first['loss_first']:.2f} / {first['loss_last']:.2f}, "
      f"PyG {p1['batched_loss_first']:.2f} / {p1['batched_loss_last']:.2f}; held-out flip rate after: "
      f"gcleaner {first['holdout_flip_last']:.3f}, PyG {p1['batched_holdout_flip_last']:.3f}")
t = first["purify_timings"]
print(f"Whole purify() on the {first['sample_graphs']}-graph sample (default configuration): "
      f"{first['purify_s']:.1f} s = explain {t['explain_s']:.1f} + recovery {t['recovery_s']:.1f} + "
      f"unlearning {t['unlearning_s']:.1f} + evaluation {t['evaluation_s']:.1f}")
epoch = first['purify_unlearn_epoch_s']
unlearned = (f"unlearned trigger sizes {first['purify_unlearned_triggers']}, median unlearning epoch there "
             f"{epoch * 1000:.1f} ms" if epoch is not None else "returned unchanged (no unlearning)")
print(f"  verdict: backdoor {first['purify_backdoor_verdict']} (evidence {first['purify_evidence']:.2f}), "
      f"{unlearned}; backdoored model's ASR {first['backdoored_asr']:.3f}")
PY
