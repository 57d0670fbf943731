#!/usr/bin/env bash
# Install everything the test suite needs into .venv and run it: lint, types, tests.
#
#   bash scripts/test.sh [pytest args...]
#
# On a machine where we are root and PostgreSQL is missing, installs it from Debian's packages;
# starts a throwaway PostgreSQL server on 127.0.0.1 for the storage tests and stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pg_bin)" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing PostgreSQL (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
log "installing jib with the test extra"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

if [ -z "${JIB_TEST_POSTGRES_URL:-}" ] && [ -n "$(pg_bin)" ]; then
  PGBIN=$(pg_bin)
  PGDATA=$(mktemp -d /tmp/jib-pg.XXXXXX)
  PGPORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
  log "starting PostgreSQL on 127.0.0.1:$PGPORT"
  as_pg "'$PGBIN/initdb' -D '$PGDATA' -A trust -U postgres >'$PGDATA.initdb.log' 2>&1"
  as_pg "'$PGBIN/pg_ctl' -D '$PGDATA' -l '$PGDATA/server.log' -w -t 60 -o \"-h 127.0.0.1 -p $PGPORT -k /tmp -F\" start >/dev/null"
  trap 'as_pg "\"$PGBIN/pg_ctl\" -D \"$PGDATA\" -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$PGDATA" "$PGDATA.initdb.log"' EXIT
  export JIB_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$PGPORT/postgres"
fi

log "ruff"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
log "mypy (strict, src/)"
.venv/bin/mypy
log "pytest"
set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
