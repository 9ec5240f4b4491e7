#!/usr/bin/env bash
# The Python client (clients/python) against a real `gcleaner serve` on PostgreSQL: installs the
# client into the project venv, creates a fresh database and two API tokens (two tenants), starts
# the server with one worker, and runs the client's pytest suite against it. The database is
# dropped and the server stopped whatever happens.
#
# Needs target/release/gcleaner, the venv from `make setup` (pytest and hatchling pinned there;
# torch_geometric for the PyG export test) and PostgreSQL at GCLEANER_TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres, as the API tests). Extra arguments go to pytest.
# The pytest report (JUnit) and the server log land in .run/client-report/.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
BIN="${GCLEANER_BIN:-$ROOT/target/release/gcleaner}"
PYTHON="$ROOT/.venv/bin/python"
ADMIN_URL="${GCLEANER_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REPORTS="$ROOT/.run/client-report"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gcleaner-client.XXXXXX")"
DB_NAME="gcleaner_client_$(date +%s)_$$"
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
        echo "server log: $REPORTS/server.log" >&2
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -x "$BIN" ]] || { echo "missing $BIN: run cargo build --release --locked" >&2; exit 2; }
[[ -x "$PYTHON" ]] || { echo "missing $PYTHON: run make setup" >&2; exit 2; }
"$PYTHON" -c 'import pytest, hatchling' 2>/dev/null || { echo "pytest or hatchling missing from the venv: run make setup" >&2; exit 2; }

# The client as a user gets it: built into a wheel by its own build backend and installed. No
# build isolation, so a test run needs no download beyond the client's dependencies.
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-build-isolation "$ROOT/clients/python"

DB_URL="$("$PYTHON" - "$ADMIN_URL" "$DB_NAME" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
print(urlunsplit(u._replace(path="/" + sys.argv[2])))
PY
)"
psql -q -X "$ADMIN_URL" -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null
DB_CREATED=1
export GCLEANER_DATABASE_URL="$DB_URL"
"$BIN" migrate >/dev/null
GCLEANER_TEST_TOKEN="$("$BIN" token create --name client --tenant client | tail -n 1)"
# A second tenant whose job list holds only what the pagination test puts there.
GCLEANER_TEST_TOKEN_2="$("$BIN" token create --name client-pages --tenant client-pages | tail -n 1)"
export GCLEANER_TEST_TOKEN GCLEANER_TEST_TOKEN_2
export GCLEANER_BIN="$BIN"

rm -rf "$REPORTS" && mkdir -p "$REPORTS"
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export GCLEANER_TEST_URL="http://127.0.0.1:$PORT"
# One worker: the tests rely on a second job waiting in the queue while the first runs. Rate
# limits far above what the tests send, so no answer is a 429 instead of the one under test.
"$BIN" serve --bind "127.0.0.1:$PORT" --data-dir "$WORK/data" --workers 1 \
    --rate-limit-per-sec 100000 --rate-limit-burst 100000 --poll-secs 0.5 \
    >"$REPORTS/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$GCLEANER_TEST_URL/readyz" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "gcleaner serve exited" >&2; exit 1; }
    sleep 0.2
done
curl -fsS -o /dev/null "$GCLEANER_TEST_URL/readyz"

# Run from the work directory, so pytest writes nothing into the tree and imports the installed
# package rather than the source folder.
cd "$WORK"
"$PYTHON" -m pytest -p no:cacheprovider --junitxml="$REPORTS/junit.xml" -ra "$@" "$ROOT/clients/python/tests"
