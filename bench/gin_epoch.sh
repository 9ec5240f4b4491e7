#!/usr/bin/env bash
# Times a GIN training epoch in gcleaner and in an equivalent PyTorch Geometric loop, in one run
# on the same machine, and prints the ratio of median epoch times. Called by `make bench`.
#
# PyG runs twice: with as many intra-op threads as gcleaner's GIN trainer uses (the like-for-like
# comparison) and with torch's default (what a PyG user gets without setting anything).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets/AIDS}
epochs=${2:-20}
if [ ! -d "$data" ]; then
  echo "skipping GIN epoch benchmark: $data not found"
  exit 0
fi
data=$(realpath "$data")  # cargo bench runs from engine/
rust=$(cargo bench -q -p gcleaner-engine --bench gin_epoch -- "$data" "$epochs" | tail -n 1)
field() { python -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$rust" "$1"; }
pyg() {
  python bench/pyg_gin_epoch.py --data "$data" --max-degree "$(field max_degree)" \
    --batch-size "$(field batch_size)" --lr "$(field lr)" --epochs "$epochs" --threads "$1" | tail -n 1
}
same=$(pyg "$(field threads)")
default=$(pyg 0)
python - "$rust" "$same" "$default" <<'PY'
import json, sys
rust, *pygs = (json.loads(a) for a in sys.argv[1:])
r = rust["seconds_per_epoch"]
print(f"GIN training epoch on {rust['graphs']} graphs, batch {rust['batch_size']} (median epoch):")
print(f"  {'gcleaner (tch), ' + str(rust['threads']) + ' thread(s)':<46} {r*1000:8.1f} ms")
for pyg, how in zip(pygs, ("same threads", "torch default")):
    for k in ("loader", "precollated"):
        p = pyg[f"{k}_seconds_per_epoch"]
        label = f"PyG {k}, {pyg['threads']} thread(s) ({how})"
        print(f"  {label:<46} {p*1000:8.1f} ms   gcleaner is {p/r:.2f}x faster")
PY
