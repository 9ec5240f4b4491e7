# Sourced by the scripts that test a real `gcleaner serve` from outside (tests/contract,
# tests/client): a fresh PostgreSQL database with migrations, the server on a free loopback port,
# and one cleanup that stops the server, drops the database and removes the work directory
# whatever happens.
#
# Before sourcing, set ROOT, BIN, PYTHON, ADMIN_URL (an admin PostgreSQL URL), LIVE_NAME (a word
# for the database and work directory names) and LIVE_REPORTS (where server.log goes; kept).
# Afterwards: WORK (a temporary directory), live_database (creates the database, exports
# GCLEANER_DATABASE_URL, runs the migrations) and live_serve WORKERS (starts the server with
# the given number of workers and sets LIVE_URL once it answers /readyz).

WORK="$(mktemp -d "${TMPDIR:-/tmp}/gcleaner-$LIVE_NAME.XXXXXX")"
DB_NAME="gcleaner_${LIVE_NAME}_$(date +%s)_$$"
SERVER_PID=""
DB_CREATED=""

live_cleanup() {
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
        echo "server log: $LIVE_REPORTS/server.log" >&2
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap live_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

live_database() {
    local url
    url="$("$PYTHON" - "$ADMIN_URL" "$DB_NAME" <<'PY'
import sys
from urllib.parse import urlsplit, urlunsplit
u = urlsplit(sys.argv[1])
print(urlunsplit(u._replace(path="/" + sys.argv[2])))
PY
)"
    psql -q -X "$ADMIN_URL" -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null
    DB_CREATED=1
    export GCLEANER_DATABASE_URL="$url"
    "$BIN" migrate >/dev/null
}

# Rate limits far above what a test sends, so no answer is a 429 instead of the one under test.
live_serve() {
    local port
    port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    LIVE_URL="http://127.0.0.1:$port"
    "$BIN" serve --bind "127.0.0.1:$port" --data-dir "$WORK/data" --workers "$1" \
        --rate-limit-per-sec 100000 --rate-limit-burst 100000 --poll-secs 0.5 \
        >"$LIVE_REPORTS/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$LIVE_URL/readyz" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "gcleaner serve exited" >&2; exit 1; }
        sleep 0.2
    done
    curl -fsS -o /dev/null "$LIVE_URL/readyz"
}
