#!/usr/bin/env bash
# `make bench-api`: load on loopback against a real `gcleaner serve` (API only, no workers, so
# every job stays queued and the numbers are the API's and the queue table's):
# 1,000 concurrent job submissions, then status reads paced at 10,000/s for 30 s. Checks that no
# job is lost or duplicated; reports p50/p99 latency, achieved read rate and the server's peak
# memory (VmHWM) in bench/out/api.json. Needs target/release/gcleaner and the test binary built.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/target/release/gcleaner"
PORT="${GCLEANER_BENCH_PORT:-18181}"
OUT="$ROOT/bench/out"
mkdir -p "$OUT"

ADMIN_URL="${GCLEANER_DATABASE_URL:-$(scripts/local-postgres.sh start | tail -n 1)}"
DB="gcleaner_bench"
psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
DB_URL="$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$ADMIN_URL" "$DB")"

export GCLEANER_DATABASE_URL="$DB_URL"
"$BIN" migrate >/dev/null
TOKEN="$("$BIN" token create --name bench | tail -n 1)"
DATA_DIR="$(mktemp -d)"
"$BIN" serve --bind "127.0.0.1:$PORT" --workers 0 --data-dir "$DATA_DIR" \
    --rate-limit-per-sec 1000000 --rate-limit-burst 1000000 --db-max-connections 32 \
    > "$OUT/api-server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DATA_DIR"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

GCLEANER_BENCH_URL="http://127.0.0.1:$PORT" GCLEANER_BENCH_TOKEN="$TOKEN" \
    cargo test --release --test api -- --ignored --exact bench::bench_api_load --nocapture \
    | tee "$OUT/api-run.log"
PEAK_KB="$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)"
RESULT="$(grep -o 'BENCH_RESULT .*' "$OUT/api-run.log" | cut -d' ' -f2-)"
python3 - "$RESULT" "$PEAK_KB" > "$OUT/api.json" <<'PY'
import json, sys
result = json.loads(sys.argv[1])
result["server_peak_rss_mib"] = round(int(sys.argv[2]) / 1024, 1)
print(json.dumps(result, indent=2))
PY
cat "$OUT/api.json"
