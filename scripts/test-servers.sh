#!/usr/bin/env bash
# Starts (or stops) the servers the production-backend tests use, on loopback only:
#   PostgreSQL (Debian's postgresql package), in a throw-away cluster.
#
#   scripts/test-servers.sh start   # prints the environment the tests read; eval it
#   scripts/test-servers.sh stop
#
# The state lives under $OUTPOST_TEST_SERVERS_DIR (default /tmp/outpost-test-servers). Tests that
# need a server read its address from the printed variables and skip, saying so, when it is unset.
set -euo pipefail

root=${OUTPOST_TEST_SERVERS_DIR:-/tmp/outpost-test-servers}
pg_port=${OUTPOST_TEST_POSTGRES_PORT:-55432}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)

# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres system user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  [ -n "$pgbin" ] || { echo "test-servers: PostgreSQL is not installed (apt-get install postgresql)" >&2; return 1; }
  local dir=$root/postgres
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner bash -c "umask 077; echo outpost > '$dir/pwfile'"
    as_owner "$pgbin/initdb" -D "$dir/data" -U outpost --pwfile="$dir/pwfile" --auth=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
  fi
  if ! as_owner "$pgbin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_owner "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 \
      -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir -c max_connections=300 -c fsync=off" start >/dev/null
  fi
  echo "export OUTPOST_TEST_POSTGRES_URL=postgres://outpost:outpost@127.0.0.1:$pg_port/postgres"
}

stop_postgres() {
  local dir=$root/postgres
  [ -n "$pgbin" ] && [ -d "$dir/data" ] || return 0
  as_owner "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) start_postgres ;;
  stop) stop_postgres ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
