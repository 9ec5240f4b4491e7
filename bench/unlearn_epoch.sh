#!/usr/bin/env bash
# Times gcleaner's robust-mode unlearning epoch and an equivalent PyTorch Geometric loop in one
# run on the same machine, prints the ratio of median epoch times, and times one whole purify()
# (recovery + unlearning) on the same 33-graph AIDS sample (issue 4). Called by `make bench`.
#
# Both sides use the same number of intra-op threads: the one thread gcleaner runs purification
# on (engine/src/threads.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets/AIDS}
if [ ! -d "$data" ]; then
  echo "skipping unlearning epoch benchmark: $data not found"
  exit 0
fi
data=$(realpath "$data")  # cargo bench runs from engine/
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rust=$(cargo bench -q -p gcleaner-engine --bench unlearn_epoch -- "$data" --sample-out "$work" | tail -n 1)
threads=$(python -c 'import json,sys; print(json.loads(sys.argv[1])["threads"])' "$rust")
pyg=$(python bench/pyg_unlearn_epoch.py --sample "$work" --threads "$threads" | tail -n 1)
python - "$rust" "$pyg" <<'PY'
import json, sys
rust, pyg = (json.loads(a) for a in sys.argv[1:])
r = rust["unlearn_epoch_s"]
print(f"Robust-mode unlearning epoch: {rust['unlearning_graphs']} AIDS graphs x "
      f"{rust['copies_per_epoch'] // rust['unlearning_graphs']} placements = {rust['copies_per_epoch']} "
      f"triggered copies, batch {rust['batch_size']}, {rust['threads']} thread(s), "
      f"median of {rust['epochs_timed']} epochs:")
print(f"  gcleaner (tch)                 {r*1000:8.1f} ms   (min {rust['unlearn_epoch_min_s']*1000:.1f}, "
      f"max {rust['unlearn_epoch_max_s']*1000:.1f})")
rmin = rust["unlearn_epoch_min_s"]
for k in ("per_graph", "batched"):
    p, pmin = pyg[f"{k}_epoch_s"], pyg[f"{k}_epoch_min_s"]
    print(f"  PyG, {k + ' montage':<25} {p*1000:8.1f} ms   gcleaner is {p/r:.2f}x faster "
          f"(fastest epochs: {pmin*1000:.1f} ms, {pmin/rmin:.2f}x; "
          f"PyG without the per-epoch monitoring: {pyg[f'{k}_train_s']*1000:.1f} ms)")
print(f"  loss, first / last epoch: gcleaner {rust['loss_first']:.2f} / {rust['loss_last']:.2f}, "
      f"PyG {pyg['batched_loss_first']:.2f} / {pyg['batched_loss_last']:.2f}; held-out flip rate after: "
      f"gcleaner {rust['holdout_flip_last']:.3f}, PyG {pyg['batched_holdout_flip_last']:.3f}")
t = rust["purify_timings"]
print(f"Whole purify() on the {rust['sample_graphs']}-graph sample (default configuration): "
      f"{rust['purify_s']:.1f} s = explain {t['explain_s']:.1f} + recovery {t['recovery_s']:.1f} + "
      f"unlearning {t['unlearning_s']:.1f} + evaluation {t['evaluation_s']:.1f}")
print(f"  verdict: backdoor {rust['purify_backdoor_verdict']} (evidence {rust['purify_evidence']:.2f}), "
      f"unlearned trigger sizes {rust['purify_unlearned_triggers']}, "
      f"median unlearning epoch there {rust['purify_unlearn_epoch_s']*1000:.1f} ms; "
      f"backdoored model's ASR {rust['backdoored_asr']:.3f}")
PY
