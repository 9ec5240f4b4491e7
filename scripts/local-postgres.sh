#!/usr/bin/env bash
# A private PostgreSQL cluster for `make run`, under the git-ignored .pgdata/ of the repository,
# using the system's initdb/pg_ctl (installed with apt-get when missing).
#
#   scripts/local-postgres.sh start   # starts it if needed; prints the database URL as the last line
#   scripts/local-postgres.sh stop
#   scripts/local-postgres.sh url
#
# PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` user.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PORT="${GCLEANER_LOCAL_PG_PORT:-54329}"
DB_NAME="gcleaner"
DATA="$ROOT/.pgdata"
SOCKET_DIR="$ROOT/.run/pg"

find_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

install_postgres() {
    echo "PostgreSQL server binaries not found; installing them with apt-get" >&2
    local sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
}

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

prepare_dirs() {
    if [[ $(id -u) -eq 0 ]]; then
        # The postgres user must reach the data dir; a repository under a private home may not be.
        if ! runuser -u postgres -- test -x "$ROOT"; then
            local key
            key="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
            DATA="/var/tmp/gcleaner-pgdata-$key"
            SOCKET_DIR="/var/tmp/gcleaner-pgsock-$key"
            echo "note: $ROOT is not readable by user postgres; cluster data in $DATA" >&2
        fi
        mkdir -p "$DATA" "$SOCKET_DIR"
        chown postgres:postgres "$DATA" "$SOCKET_DIR"
        chmod 700 "$DATA"
    else
        mkdir -p "$DATA" "$SOCKET_DIR"
        chmod 700 "$DATA"
    fi
}

url() {
    echo "postgres://postgres@127.0.0.1:$PORT/$DB_NAME"
}

start() {
    local bin
    bin="$(find_bin)" || { install_postgres; bin="$(find_bin)"; }
    prepare_dirs
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        echo "creating a private PostgreSQL cluster in $DATA" >&2
        as_owner "$bin/initdb" -D "$DATA" -A trust -U postgres -E UTF8 >/dev/null
    fi
    if ! as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
            -o "-p $PORT -k $SOCKET_DIR -c listen_addresses=127.0.0.1" start >&2
    fi
    local psql="$bin/psql"
    [[ -x "$psql" ]] || psql="psql"
    if ! as_owner "$psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
        as_owner "$psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qc "CREATE DATABASE $DB_NAME" >&2
    fi
    url
}

stop() {
    local bin
    bin="$(find_bin)" || exit 0
    prepare_dirs
    if as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >&2
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
