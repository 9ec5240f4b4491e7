#!/usr/bin/env bash
# `make bench-scan`: scan-job throughput of the service on a real model. A GIN backdoored on AIDS
# (Sub-BA, `gcleaner attack`, cached in bench/out/scan-aids) and its defender sample (3% of AIDS)
# are submitted as N scan jobs (`{"mode": "scan"}`, each its own seed) to `gcleaner serve
# --workers 0`; once all are queued, 1 and then 2 `gcleaner worker` processes drain the queue.
# For each: jobs/min (N over first start to last finish), p50/p99 job latency (claim to finish,
# the job's own run time, and submit to finish, which with a full queue is mostly waiting) and
# each worker's peak RSS (VmHWM). Every job must succeed. Result: bench/out/scan_throughput.json.
#
#   bench/scan_throughput.sh [N]          N defaults to 30; DATASETS (default ../shared/datasets)
#
# Needs target/release/gcleaner and PostgreSQL (GCLEANER_DATABASE_URL, else the private cluster
# of scripts/local-postgres.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/target/release/gcleaner"
N="${1:-30}"
DATASETS="${DATASETS:-$ROOT/../shared/datasets}"
PORT="${GCLEANER_BENCH_PORT:-18182}"
OUT="$ROOT/bench/out"
ATTACK="$OUT/scan-aids"
mkdir -p "$OUT"
[[ -x "$BIN" ]] || { echo "missing $BIN: run cargo build --release --locked" >&2; exit 2; }
[[ -d "$DATASETS/AIDS" ]] || { echo "no AIDS dataset in $DATASETS (set DATASETS)" >&2; exit 2; }

if [[ ! -f "$ATTACK/model.safetensors" ]]; then
    echo "training the backdoored AIDS GIN into $ATTACK" >&2
    "$BIN" attack --data "$DATASETS/AIDS" --attack subgraph --arch gin --seed 10 --device cpu \
        --out "$ATTACK" >"$OUT/scan-attack.log"
fi
MODEL="$ATTACK/model.safetensors"
SAMPLE="$ATTACK/defender_clean.json"

ADMIN_URL="${GCLEANER_DATABASE_URL:-$(scripts/local-postgres.sh start | tail -n 1)}"
SERVER=""
WORKERS=()
DATA_DIR="$(mktemp -d)"
cleanup() {
    for pid in "${WORKERS[@]}" $SERVER; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DATA_DIR"
}
trap cleanup EXIT

# One configuration: a fresh database, N queued scan jobs, then `workers` worker processes.
run() {
    local workers=$1 db="gcleaner_bench_scan_$1"
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    local url
    url="$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$ADMIN_URL" "$db")"
    export GCLEANER_DATABASE_URL="$url"
    "$BIN" migrate >/dev/null
    local token
    token="$("$BIN" token create --name bench | tail -n 1)"
    rm -rf "${DATA_DIR:?}"/*
    "$BIN" serve --bind "127.0.0.1:$PORT" --workers 0 --data-dir "$DATA_DIR" \
        --rate-limit-per-sec 1000000 --rate-limit-burst 1000000 >"$OUT/scan-server-$workers.log" 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
    for i in $(seq 1 "$N"); do
        curl -sf -o /dev/null -H "Authorization: Bearer $token" -F "model=@$MODEL" -F "data=@$SAMPLE" \
            -F "config={\"mode\":\"scan\",\"seed\":$i};type=application/json" "http://127.0.0.1:$PORT/v1/jobs"
    done
    WORKERS=()
    for w in $(seq 1 "$workers"); do
        "$BIN" worker --workers 1 --data-dir "$DATA_DIR" --poll-secs 0.2 >"$OUT/scan-worker-$workers-$w.log" 2>&1 &
        WORKERS+=($!)
    done
    while [[ "$(psql "$url" -tAc "SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded','failed','canceled')")" != 0 ]]; do
        sleep 0.5
    done
    local rss=()
    for pid in "${WORKERS[@]}"; do
        rss+=("$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")")
        kill "$pid"
    done
    for pid in "${WORKERS[@]}"; do wait "$pid" 2>/dev/null || true; done
    WORKERS=()
    kill "$SERVER"
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
    psql "$url" -tAF, -c "SELECT state, extract(epoch FROM created_at), extract(epoch FROM started_at),
                                 extract(epoch FROM finished_at) FROM jobs" >"$OUT/scan-jobs-$workers.csv"
    echo "$workers ${rss[*]}" >>"$OUT/scan-rss.txt"
}

rm -f "$OUT/scan-rss.txt"
run 1
run 2

python3 - "$OUT" "$N" >"$OUT/scan_throughput.json" <<'PY'
import json, platform, sys
out, n = sys.argv[1], int(sys.argv[2])

def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]

rss = {}
for line in open(f"{out}/scan-rss.txt"):
    workers, *kb = line.split()
    rss[int(workers)] = [round(int(k) / 1024, 1) for k in kb]
results = []
for workers in (1, 2):
    rows = [line.strip().split(",") for line in open(f"{out}/scan-jobs-{workers}.csv") if line.strip()]
    failed = [r for r in rows if r[0] != "succeeded"]
    if failed or len(rows) != n:
        sys.exit(f"{workers} worker(s): {len(rows)} jobs, {len(failed)} not succeeded")
    created, started, finished = ([float(r[i]) for r in rows] for i in (1, 2, 3))
    run = [f - s for s, f in zip(started, finished)]
    total = [f - c for c, f in zip(created, finished)]
    span = max(finished) - min(started)
    results.append({
        "workers": workers,
        "jobs": n,
        "wall_s": round(span, 1),
        "jobs_per_min": round(n / span * 60, 1),
        "run_p50_s": round(pct(run, 50), 2),
        "run_p99_s": round(pct(run, 99), 2),
        "submit_to_finish_p50_s": round(pct(total, 50), 1),
        "submit_to_finish_p99_s": round(pct(total, 99), 1),
        "peak_rss_mib_per_worker": rss[workers],
    })
print(json.dumps({"model": "AIDS GIN, Sub-BA (bench/out/scan-aids)", "machine": platform.processor() or platform.machine(),
                  "results": results}, indent=2))
PY
python3 - "$OUT/scan_throughput.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
print("workers  jobs  wall s  jobs/min  run p50 s  run p99 s  submit->finish p50/p99 s  peak RSS MiB per worker")
for r in doc["results"]:
    print(f"{r['workers']:>7}  {r['jobs']:>4}  {r['wall_s']:>6}  {r['jobs_per_min']:>8}  {r['run_p50_s']:>9}  {r['run_p99_s']:>9}  "
          f"{r['submit_to_finish_p50_s']:>12} / {r['submit_to_finish_p99_s']:<10}  {', '.join(map(str, r['peak_rss_mib_per_worker']))}")
PY
