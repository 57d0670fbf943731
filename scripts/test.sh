#!/usr/bin/env bash
# Install everything the test suite needs into .venv and run it: lint, types, tests.
#
#   bash scripts/test.sh [pytest args...]
#
# Tests run in two worker processes (pytest-xdist, `-n 2`: CI has two cores); pass `-n 0` to run
# them in one. The suite takes free ports and keeps its files in temporary folders, so it also
# runs beside a local vLLM or Ollama, or beside another run of itself.
#
# The storage tests also run against PostgreSQL: as root, a throwaway server is started on
# 127.0.0.1 (Debian's postgresql is installed first if missing) and stopped on exit; otherwise
# set JIB_TEST_POSTGRES_URL to a database the tests may use (see tests/storage/postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
log "installing jib with the test extra"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

if [ -z "${JIB_TEST_POSTGRES_URL:-}" ] && [ "$(id -u)" = 0 ]; then
  log "starting a throwaway PostgreSQL on 127.0.0.1 (installs Debian's postgresql if missing)"
  export JIB_PG_DIR
  JIB_PG_DIR=$(mktemp -d /tmp/jib-pg.XXXXXX)
  export JIB_PG_PORT
  JIB_PG_PORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  trap 'bash tests/storage/postgres.sh stop >/dev/null 2>&1 || true; rm -rf "$JIB_PG_DIR"' EXIT
  JIB_TEST_POSTGRES_URL=$(bash tests/storage/postgres.sh start)
  export JIB_TEST_POSTGRES_URL
fi

log "ruff"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
log "mypy (strict, src/)"
.venv/bin/mypy
log "pytest"
set +e
.venv/bin/pytest -n 2 "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
