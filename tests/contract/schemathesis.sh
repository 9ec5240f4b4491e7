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

# Reports (JUnit) and the server log stay after the run, in the git-ignored .run/.
export GCLEANER_CONTRACT_REPORTS="$ROOT/.run/contract-report"
LIVE_NAME=contract
LIVE_REPORTS="$GCLEANER_CONTRACT_REPORTS"
# shellcheck source=tests/support/live-server.sh
source "$ROOT/tests/support/live-server.sh"

[[ -x "$BIN" ]] || { echo "missing $BIN: run cargo build --release --locked" >&2; exit 2; }
[[ -x "$SCHEMATHESIS" ]] || { echo "missing $SCHEMATHESIS: run make setup" >&2; exit 2; }

live_database
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
rm -rf "$GCLEANER_CONTRACT_REPORTS" && mkdir -p "$GCLEANER_CONTRACT_REPORTS"

# Two workers so accepted jobs end while the run goes on.
live_serve 2
BASE="$LIVE_URL"

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
