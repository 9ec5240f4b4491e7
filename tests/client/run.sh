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

LIVE_NAME=client
LIVE_REPORTS="$REPORTS"
# shellcheck source=tests/support/live-server.sh
source "$ROOT/tests/support/live-server.sh"

[[ -x "$BIN" ]] || { echo "missing $BIN: run cargo build --release --locked" >&2; exit 2; }
[[ -x "$PYTHON" ]] || { echo "missing $PYTHON: run make setup" >&2; exit 2; }
"$PYTHON" -c 'import pytest, hatchling' 2>/dev/null || { echo "pytest or hatchling missing from the venv: run make setup" >&2; exit 2; }

# The client as a user gets it: built into a wheel by its own build backend and installed. No
# build isolation, so a test run needs no download beyond the client's dependencies.
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-build-isolation "$ROOT/clients/python"

live_database
GCLEANER_TEST_TOKEN="$("$BIN" token create --name client --tenant client | tail -n 1)"
# A second tenant whose job list holds only what the pagination test puts there.
GCLEANER_TEST_TOKEN_2="$("$BIN" token create --name client-pages --tenant client-pages | tail -n 1)"
export GCLEANER_TEST_TOKEN GCLEANER_TEST_TOKEN_2
export GCLEANER_BIN="$BIN"

rm -rf "$REPORTS" && mkdir -p "$REPORTS"
# One worker: the tests rely on a second job waiting in the queue while the first runs.
live_serve 1
export GCLEANER_TEST_URL="$LIVE_URL"

# Run from the work directory, so pytest writes nothing into the tree and imports the installed
# package rather than the source folder.
cd "$WORK"
"$PYTHON" -m pytest -p no:cacheprovider --junitxml="$REPORTS/junit.xml" -ra "$@" "$ROOT/clients/python/tests"
