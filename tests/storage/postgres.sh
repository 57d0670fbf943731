#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL server on 127.0.0.1 for jib's storage tests.
#
#   export JIB_TEST_POSTGRES_URL="$(bash tests/storage/postgres.sh start)"
#   ...run the tests...
#   bash tests/storage/postgres.sh stop
#
# Installs Debian's `postgresql` package when it is missing, then runs its own cluster with
# initdb + pg_ctl as the `postgres` user in $JIB_PG_DIR (default /tmp/jib-test-postgres), on port
# $JIB_PG_PORT (default 55432), trusting local connections. Prints the database URL on stdout.
set -euo pipefail

dir="${JIB_PG_DIR:-/tmp/jib-test-postgres}"
port="${JIB_PG_PORT:-55432}"

find_bin() {
    local version
    version="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$version" ] && [ -x "/usr/lib/postgresql/$version/bin/pg_ctl" ]; then
        echo "/usr/lib/postgresql/$version/bin"
    fi
}

as_postgres() {
    if [ "$(id -un)" = postgres ]; then bash -c "$1"; else su postgres -s /bin/bash -c "$1"; fi
}

case "${1:-start}" in
start)
    bin="$(find_bin)"
    if [ -z "$bin" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
        bin="$(find_bin)"
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        chown postgres "$dir"
        as_postgres "'$bin/initdb' -D '$dir' -A trust -U postgres --no-sync" >&2
    fi
    if ! as_postgres "'$bin/pg_ctl' -D '$dir' status" >/dev/null 2>&1; then
        as_postgres "'$bin/pg_ctl' -D '$dir' -l '$dir/server.log' -w -t 60 \
            -o \"-h 127.0.0.1 -p $port -k '$dir' -c fsync=off\" start" >&2
    fi
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    bin="$(find_bin)"
    if [ -n "$bin" ] && [ -f "$dir/PG_VERSION" ]; then
        as_postgres "'$bin/pg_ctl' -D '$dir' -m fast -w stop" >&2 || true
    fi
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
