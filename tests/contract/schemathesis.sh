#!/usr/bin/env bash
# The API contract, checked by an independent fuzzer: schemathesis (the version pinned by
# `make setup`) against a real `gcleaner serve` on PostgreSQL, with the document the server
# serves at /openapi.json, every check and every phase (stateful included), a fixed seed
# (tests/contract/schemathesis.toml). A fresh database is created for the run and dropped after
# it; the server is stopped whatever happens.
#
# Needs target/release/gcleaner and PostgreSQL at GCLEANER_TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres, as the API tests). Extra arguments go to
# `schemathesis run`. Exit status 0 when schemathesis found no failure and every operation
# answered with success at least once (tests/contract/reached.py).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
BIN="${GCLEANER_BIN:-$ROOT/target/release/gcleaner}"
SCHEMATHESIS="${SCHEMATHESIS:-$ROOT/.venv/bin/schemathesis}"
PYTHON="$ROOT/.venv/bin/python"
ADMIN_URL="${GCLEANER_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gcleaner-contract.XXXXXX")"
DB_NAME="gcleaner_contract_$(date +%s)_$$"
DB_URL="$("$PYTHON" - "$ADMIN_URL" "$DB_NAME" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
print(urlunsplit(u._replace(path="/" + sys.argv[2])))
PY
)"
SERVER_PID=""
DB_CREATED=""

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n "$DB_CREATED" ]]; then
        psql -q -X "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 ||
            echo "warning: could not drop database $DB_NAME" >&2
    fi
    if [[ $status -ne 0 && -n "$SERVER_PID" ]]; then
        echo "server log: $GCLEANER_CONTRACT_REPORTS/server.log" >&2
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -x "$BIN" ]] || { echo "missing $BIN: run cargo build --release --locked" >&2; exit 2; }
[[ -x "$SCHEMATHESIS" ]] || { echo "missing $SCHEMATHESIS: run make setup" >&2; exit 2; }

psql -q -X "$ADMIN_URL" -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null
DB_CREATED=1
export GCLEANER_DATABASE_URL="$DB_URL"
"$BIN" migrate >/dev/null
GCLEANER_CONTRACT_TOKEN="$("$BIN" token create --name contract --tenant contract | tail -n 1)"
export GCLEANER_CONTRACT_TOKEN

# A known-good submission for the hooks: a small clean sample and a model trained on it for one
# epoch (seconds on a CPU).
"$BIN" synth --graphs 24 --seed 8 --out "$WORK/sample.json" >/dev/null
"$BIN" train --data "$WORK/sample.json" --hidden 16 --layers 3 --epochs 1 --device cpu \
    --out "$WORK/model" >/dev/null
export GCLEANER_CONTRACT_MODEL="$WORK/model/model.safetensors"
# Hypothesis's own files (schemathesis generates with it) go with the run, not into the tree.
export HYPOTHESIS_STORAGE_DIRECTORY="$WORK/hypothesis"
export GCLEANER_CONTRACT_DATA="$WORK/sample.json"
# Reports (JUnit) and the server log stay after the run, in the git-ignored .run/.
export GCLEANER_CONTRACT_REPORTS="$ROOT/.run/contract-report"
rm -rf "$GCLEANER_CONTRACT_REPORTS" && mkdir -p "$GCLEANER_CONTRACT_REPORTS"

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
# Two workers so accepted jobs end while the run goes on; rate limits well above what one
# fuzzer sends, so no request is answered 429 instead of being checked.
"$BIN" serve --bind "127.0.0.1:$PORT" --data-dir "$WORK/data" --workers 2 \
    --rate-limit-per-sec 100000 --rate-limit-burst 100000 --poll-secs 0.5 \
    >"$GCLEANER_CONTRACT_REPORTS/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "gcleaner serve exited" >&2; exit 1; }
    sleep 0.2
done
curl -fsS -o /dev/null "$BASE/readyz"

# The document the server serves; GCLEANER_CONTRACT_SCHEMA=FILE checks the server against a
# local file instead (to try a schema change without rebuilding the server, which embeds it).
if [[ -n "${GCLEANER_CONTRACT_SCHEMA:-}" ]]; then
    LOCATION=("$GCLEANER_CONTRACT_SCHEMA" --url "$BASE")
else
    LOCATION=("$BASE/openapi.json")
fi
"$SCHEMATHESIS" --config-file tests/contract/schemathesis.toml run "${LOCATION[@]}" "$@"

# No operation left unreached: each must have answered with success at least once.
if [[ -n "${GCLEANER_CONTRACT_SCHEMA:-}" ]]; then
    "$PYTHON" -c 'import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)' \
        "$GCLEANER_CONTRACT_SCHEMA" >"$WORK/openapi.json"
    "$PYTHON" tests/contract/reached.py "$WORK/openapi.json" "$GCLEANER_CONTRACT_REPORTS/requests.har"
else
    curl -fsS -o "$WORK/openapi.json" "$BASE/openapi.json"
    "$PYTHON" tests/contract/reached.py "$WORK/openapi.json" "$GCLEANER_CONTRACT_REPORTS/requests.har" \
        /openapi.json
fi
