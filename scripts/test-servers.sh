#!/usr/bin/env bash
# Starts (or stops) the servers the production-backend tests use, on loopback only:
#   PostgreSQL (Debian's postgresql package), in a throw-away cluster;
#   OpenStack Swift with its S3 API (Debian's python3-swift and swift packages): a proxy with the
#   s3api and tempauth middlewares and one account, container and object server, one replica.
#
#   scripts/test-servers.sh start   # prints the environment the tests read; eval it
#   scripts/test-servers.sh stop
#
# The state lives under $TEST_SERVERS_DIR (default /tmp/outpost-test-servers). Tests that
# need a server read its address from the printed variables and skip, saying so, when it is unset.
set -euo pipefail

root=${TEST_SERVERS_DIR:-/tmp/outpost-test-servers}
pg_port=${TEST_POSTGRES_PORT:-55432}
s3_port=${TEST_S3_PORT:-58080}
swift_python=/usr/bin/python3
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
  echo "export TEST_POSTGRES_URL=postgres://outpost:outpost@127.0.0.1:$pg_port/postgres"
}

stop_postgres() {
  local dir=$root/postgres
  [ -n "$pgbin" ] && [ -d "$dir/data" ] || return 0
  as_owner "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# --- Swift (s3api) -------------------------------------------------------------------------------
# Each server is one process (workers = 0) started in its own session, so that it outlives this
# script and holds none of its output open; its pid is in $root/swift/run/NAME.pid. The object,
# container and account servers listen on the three ports after the proxy's.
swift_dir=$root/swift
swift_servers=(account container object proxy)
s3_access_key=outpost:tester
s3_secret_key=outpost-testing

swift_port() {
  case $1 in
    proxy) echo "$s3_port" ;;
    object) echo $((s3_port + 1)) ;;
    container) echo $((s3_port + 2)) ;;
    account) echo $((s3_port + 3)) ;;
  esac
}

# The pid of a running server of ours (its command line names our configuration), or nothing.
swift_pid() {
  local file=$swift_dir/run/$1.pid pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$swift_dir/etc/$1-server.conf"; then echo "$pid"; fi
}

# Whether something answers HTTP on the port (any status).
answers() {
  [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1${2:-/}" 2>/dev/null)" != 000 ]
}

# The object server keeps each object's metadata in extended attributes (user.swift.metadata*,
# up to a few KiB per file): the directory must take them. Prints where the devices go.
swift_devices() {
  local probe
  for dir in "$swift_dir/srv" "${TEST_SWIFT_DEVICES_FALLBACK:-/dev/shm}/outpost-test-swift-$(id -u)"; do
    mkdir -p "$dir/d1" || continue
    probe=$dir/.xattr-probe
    if : >"$probe" && "$swift_python" -c 'import os, sys; os.setxattr(sys.argv[1], "user.swift.metadata", b"x" * 3000)' "$probe" 2>/dev/null; then
      rm -f "$probe"
      echo "$dir"
      return 0
    fi
    rm -f "$probe"
  done
  echo "test-servers: neither $swift_dir/srv nor the fallback under /dev/shm takes user extended attributes, which Swift's object server needs" >&2
  return 1
}

write_swift_config() {
  local etc=$swift_dir/etc devices=$1 user
  user=$(id -un)
  mkdir -p "$etc" "$swift_dir/run" "$swift_dir/log"
  local common="[DEFAULT]
bind_ip = 127.0.0.1
workers = 0
user = $user
swift_dir = $etc
devices = $devices
mount_check = false
disable_fallocate = true
log_level = INFO
"
  printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = account-server\n\n[app:account-server]\nuse = egg:swift#account\n' \
    "$common" "$(swift_port account)" >"$etc/account-server.conf"
  printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = container-server\n\n[app:container-server]\nuse = egg:swift#container\n' \
    "$common" "$(swift_port container)" >"$etc/container-server.conf"
  # A container update slower than its timeout would be left for an updater that is not running,
  # and the object would be missing from listings: give it time on a busy test machine.
  printf '%sbind_port = %s\n\n[pipeline:main]\npipeline = object-server\n\n[app:object-server]\nuse = egg:swift#object\ncontainer_update_timeout = 30\n' \
    "$common" "$(swift_port object)" >"$etc/object-server.conf"
  # s3api before its auth (tempauth: the S3 access key is ACCOUNT:USER, the secret its password);
  # slo for multipart uploads. tempauth insists on a cache in the pipeline; no memcached runs, and
  # S3 requests are checked against the configured users, not cached tokens.
  cat >"$etc/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $(swift_port proxy)
workers = 0
user = $user
swift_dir = $etc
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
node_timeout = 30

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_${s3_access_key%%:*}_${s3_access_key#*:} = $s3_secret_key .admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:11211

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
CONF
  # One device per ring, one replica, 2^6 partitions (the ports are in the rings: rebuilt each time).
  "$swift_python" - "$etc" "$(swift_port account)" "$(swift_port container)" "$(swift_port object)" <<'PY'
import sys
from swift.common.ring import RingBuilder
etc, ports = sys.argv[1], dict(zip(('account', 'container', 'object'), map(int, sys.argv[2:5])))
for name, port in ports.items():
    builder = RingBuilder(6, 1, 1)
    builder.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port, 'device': 'd1', 'weight': 1.0})
    builder.rebalance()
    builder.save(f'{etc}/{name}.builder')
    builder.get_ring().save(f'{etc}/{name}.ring.gz')
PY
}

start_swift() {
  "$swift_python" -c 'import swift.common.middleware.s3api.s3api, swift.common.middleware.tempauth' 2>/dev/null && [ -f /etc/swift/swift.conf ] \
    || { echo "test-servers: Swift is not installed (apt-get install python3-swift swift)" >&2; return 1; }
  local running=1 name devices
  for name in "${swift_servers[@]}"; do [ -n "$(swift_pid "$name")" ] || running=0; done
  if [ "$running" = 0 ]; then
    stop_swift
    devices=$(swift_devices) || return 1
    write_swift_config "$devices"
    for name in "${swift_servers[@]}"; do
      # (the object server's global_conf_callback, as swift-object-server passes it)
      setsid "$swift_python" -c '
import sys
from swift.common.wsgi import run_wsgi
kwargs = {}
if sys.argv[2] == "object-server":
    from swift.obj.server import global_conf_callback
    kwargs["global_conf_callback"] = global_conf_callback
sys.exit(run_wsgi(sys.argv[1], sys.argv[2], verbose=True, **kwargs))' "$swift_dir/etc/$name-server.conf" "$name-server" \
        </dev/null >"$swift_dir/log/$name.log" 2>&1 &
      echo $! >"$swift_dir/run/$name.pid"
    done
  fi
  # Ready when every server answers and so does the proxy's S3 API (403 to a bad signature).
  local deadline=$((SECONDS + 60)) ready
  while :; do
    ready=1
    for name in account container object; do answers "$(swift_port "$name")" || ready=0; done
    [ "$ready" = 1 ] && [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' -H 'Authorization: AWS readiness:probe' \
      -H "Date: $(date -uR)" "http://127.0.0.1:$s3_port/" 2>/dev/null)" = 403 ] && break
    for name in "${swift_servers[@]}"; do
      if [ -z "$(swift_pid "$name")" ]; then
        echo "test-servers: the Swift $name server did not start; its log, $swift_dir/log/$name.log, ends:" >&2
        tail -n 20 "$swift_dir/log/$name.log" >&2
        return 1
      fi
    done
    [ "$SECONDS" -lt "$deadline" ] || { echo "test-servers: Swift did not answer on 127.0.0.1:$s3_port within 60 s (logs in $swift_dir/log)" >&2; return 1; }
    sleep 0.2
  done
  echo "export TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port"
  echo "export TEST_S3_ACCESS_KEY=$s3_access_key"
  echo "export TEST_S3_SECRET_KEY=$s3_secret_key"
}

stop_swift() {
  local name pid pids=()
  for name in "${swift_servers[@]}"; do
    pid=$(swift_pid "$name")
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$swift_dir/run/$name.pid"
  done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      [ "$SECONDS" -lt "$deadline" ] || { kill -9 "$pid" 2>/dev/null; break; }
      sleep 0.1
    done
  done
  return 0
}

case "${1:-}" in
  start) start_postgres; start_swift ;;
  stop) stop_postgres; stop_swift ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
