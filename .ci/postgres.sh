#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the test run (Debian's packages) and print
# the URL the tests use. Usage: eval "$(.ci/postgres.sh start)"; ...; .ci/postgres.sh stop
# `down` (an immediate shutdown, as a crash) and `up` (the same server again, its data kept) are
# for the chaos scenario that restarts the database under load; `start` exports what they need.
set -euo pipefail
PORT="${LINDUNG_PG_PORT:-55432}"
DATA="${LINDUNG_PG_DATA:-/tmp/lindung-ci-pg}"

bin_dir() {
  local pg_config
  pg_config=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  echo "$pg_config"
}

set_run() {
  RUN=()
  if [ "$(id -u)" = 0 ]; then RUN=(runuser -u postgres --); fi  # initdb refuses root
}

serve() {
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -o \
    "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off" start >&2
}

case "${1:-start}" in
  start)
    if [ -z "$(bin_dir)" ]; then
      echo "installing PostgreSQL from Debian's packages" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2
      apt-get install -y -qq postgresql >&2
    fi
    BIN=$(bin_dir)
    [ -n "$BIN" ] || { echo "PostgreSQL is not installed" >&2; exit 1; }
    set_run
    "${RUN[@]}" "$BIN/pg_ctl" -D "$DATA" stop -m immediate >/dev/null 2>&1 || true
    rm -rf "$DATA"
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
    "${RUN[@]}" "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 >/dev/null
    serve
    echo "export LINDUNG_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:$PORT/postgres"
    echo "export LINDUNG_TEST_POSTGRES_CTL='$(cd "$(dirname "$0")" && pwd)/postgres.sh'"
    echo "export LINDUNG_PG_PORT=$PORT LINDUNG_PG_DATA='$DATA'"
    ;;
  down)
    set_run
    "${RUN[@]}" "$(bin_dir)/pg_ctl" -D "$DATA" stop -m immediate >&2
    ;;
  up)
    set_run
    BIN=$(bin_dir)
    serve
    ;;
  stop)
    BIN=$(bin_dir)
    set_run
    "${RUN[@]}" "$BIN/pg_ctl" -D "$DATA" stop -m fast >&2 || true
    ;;
esac
