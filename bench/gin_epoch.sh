#!/usr/bin/env bash
# Times a GIN training epoch in gcleaner and in an equivalent PyTorch Geometric loop, in one run
# on the same machine, and prints the ratio of median epoch times. Called by `make bench`.
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
pyg=$(python bench/pyg_gin_epoch.py --data "$data" --max-degree "$(field max_degree)" \
    --batch-size "$(field batch_size)" --lr "$(field lr)" --epochs "$epochs" | tail -n 1)
python - "$rust" "$pyg" <<'PY'
import json, sys
rust, pyg = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r = rust["seconds_per_epoch"]
print(f"GIN training epoch on {rust['graphs']} graphs, batch {rust['batch_size']}, {rust['threads']} threads:")
print(f"  gcleaner (tch)         {r*1000:8.1f} ms")
for k in ("loader", "precollated"):
    p = pyg[f"{k}_seconds_per_epoch"]
    print(f"  PyG {k:<18} {p*1000:8.1f} ms   gcleaner is {p/r:.2f}x faster")
PY
