#!/usr/bin/env bash
# The multi-process layout on one machine, with Debian's packages only:
#   a PostgreSQL primary cluster of its own (pg_createcluster, port $PRIMARY_PORT), a second cluster
#   as its streaming replica (pg_basebackup -R, port $REPLICA_PORT), PgBouncer in transaction mode in
#   front of the primary ($BOUNCER_PORT), $WEB `shequn serve` instances (gunicorn, 2 workers x 8
#   threads each, ports $WEB_PORT…) and $WORKERS `shequn worker`s (the first with the scheduler).
#
#   deploy/cluster.sh up | down | status
#
# Environment: NAME (cluster name prefix, default shequn), PRIMARY_PORT (5441), REPLICA_PORT (5442),
# BOUNCER_PORT (6441), WEB_PORT (8101), WEB (2), WORKERS (2), REDIS_URL (default: none),
# STATE (/tmp/shequn-cluster: pid files, logs, SHEQUN_HOME), PYTHON (python3), PG_VERSION (15).
# Needs root (pg_createcluster, running PgBouncer and PostgreSQL tools as the postgres user).
# The machine's own clusters are never touched: only ${NAME}_primary and ${NAME}_replica.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${NAME:-shequn}; V=${PG_VERSION:-15}
PRIMARY_PORT=${PRIMARY_PORT:-5441}; REPLICA_PORT=${REPLICA_PORT:-5442}; BOUNCER_PORT=${BOUNCER_PORT:-6441}
WEB_PORT=${WEB_PORT:-8101}; WEB=${WEB:-2}; WORKERS=${WORKERS:-2}
STATE=${STATE:-/tmp/shequn-cluster}; PYTHON=${PYTHON:-python3}
P=${NAME}_primary; R=${NAME}_replica
say() { printf '== %s\n' "$*"; }

shequn_env() {
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" DJANGO_SETTINGS_MODULE=shequn.settings
  export SHEQUN_HOME="$STATE/home" SHEQUN_DATABASE_POOLER=transaction
  export SHEQUN_DATABASE_URL="postgres://postgres@127.0.0.1:$BOUNCER_PORT/shequn"
  export SHEQUN_DATABASE_REPLICA_URL="postgres://postgres@127.0.0.1:$REPLICA_PORT/shequn"
  if [ -n "${REDIS_URL:-}" ]; then export SHEQUN_REDIS_URL="$REDIS_URL"; fi
}

start_bg() {  # name, command...: its own session, pid in $STATE/<name>.pid, log in $STATE/<name>.log
  local name=$1; shift
  setsid "$@" >>"$STATE/$name.log" 2>&1 < /dev/null &
  echo $! > "$STATE/$name.pid"
}

up() {
  mkdir -p "$STATE/home"; chown postgres "$STATE"
  say "primary $P on :$PRIMARY_PORT"
  pg_createcluster -p "$PRIMARY_PORT" "$V" "$P" -- -A trust >/dev/null
  pg_ctlcluster --skip-systemctl-redirect "$V" "$P" start
  runuser -u postgres -- psql -q -p "$PRIMARY_PORT" -h 127.0.0.1 -c "CREATE DATABASE shequn" postgres
  say "replica $R on :$REPLICA_PORT (pg_basebackup -R from the primary)"
  pg_createcluster -p "$REPLICA_PORT" "$V" "$R" -- -A trust >/dev/null  # its pg_hba (in /etc) is its own
  local rdata; rdata=$(pg_lsclusters -h | awk -v n="$R" '$2 == n {print $6}')
  find "$rdata" -mindepth 1 -delete  # keep the directory (postgres-owned, 0700), empty it
  runuser -u postgres -- pg_basebackup -h 127.0.0.1 -p "$PRIMARY_PORT" -D "$rdata" -R -X stream -c fast
  pg_ctlcluster --skip-systemctl-redirect "$V" "$R" start
  say "PgBouncer (transaction mode) on :$BOUNCER_PORT"
  cat > "$STATE/pgbouncer.ini" <<INI
[databases]
shequn = host=127.0.0.1 port=$PRIMARY_PORT dbname=shequn
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $STATE/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
pidfile = $STATE/pgbouncer.pid
logfile = $STATE/pgbouncer.log
INI
  echo '"postgres" ""' > "$STATE/userlist.txt"; chown postgres "$STATE"/pgbouncer.ini "$STATE"/userlist.txt
  runuser -u postgres -- pgbouncer -d "$STATE/pgbouncer.ini"
  shequn_env
  say "migrate (through PgBouncer)"
  "$PYTHON" -m shequn.cli migrate -v 0
  for i in $(seq 1 "$WEB"); do
    port=$((WEB_PORT + i - 1)); say "web $i: shequn serve on :$port"
    start_bg "web$i" "$PYTHON" -m shequn.cli serve --port "$port" --workers 2 --threads 8 --no-control-socket
  done
  for i in $(seq 1 "$WORKERS"); do
    if [ "$i" = 1 ]; then args=(worker --no-realtime); else args=(worker --no-scheduler --no-realtime); fi
    say "worker $i: shequn ${args[*]}"; start_bg "worker$i" "$PYTHON" -m shequn.cli "${args[@]}"
  done
  for i in $(seq 1 "$WEB"); do
    port=$((WEB_PORT + i - 1))
    for _ in $(seq 1 120); do
      if "$PYTHON" -c "import http.client,sys; c=http.client.HTTPConnection('127.0.0.1',$port,timeout=2); c.request('GET','/static/none'); sys.exit(c.getresponse().status>=500)" 2>/dev/null; then break; fi
      sleep 0.5
    done
  done
  status
}

status() {
  say "processes"
  for f in "$STATE"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f"); if kill -0 "$pid" 2>/dev/null; then s=up; else s=DOWN; fi
    printf '  %-12s pid %-8s %s\n' "$(basename "$f" .pid)" "$pid" "$s"
  done
  say "replication (on the primary)"
  runuser -u postgres -- psql -p "$PRIMARY_PORT" -h 127.0.0.1 -At -c \
    "SELECT application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS lag_bytes FROM pg_stat_replication" postgres || true
}

down() {
  for f in "$STATE"/web*.pid "$STATE"/worker*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f"); kill -TERM -- "-$pid" 2>/dev/null || true; rm -f "$f"
  done
  sleep 2
  if [ -e "$STATE/pgbouncer.pid" ]; then kill -TERM "$(cat "$STATE/pgbouncer.pid")" 2>/dev/null || true; fi
  pg_dropcluster --stop "$V" "$R" 2>/dev/null || true
  pg_dropcluster --stop "$V" "$P" 2>/dev/null || true
  say "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status"; exit 2 ;;
esac
