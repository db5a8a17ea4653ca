#!/usr/bin/env bash
# The whole service on this machine, as local processes (no Docker needed):
# PostgreSQL (its own cluster and port), the tansu broker, `order-svc migrate`, `serve`,
# `produce --rps 5` with 10% invalid orders, and Prometheus when it is installed.
# Everything lives under .data/ (ignored by git); process ids in .data/pids.
#
#   scripts/stack.sh up | down [--purge] | status | logs | latest-uid [TRIES]
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=${STACK_DATA:-.data/stack}
PG_PORT=${STACK_PG_PORT:-55432}
KAFKA_PORT=${STACK_KAFKA_PORT:-9092}
HTTP_PORT=${STACK_HTTP_PORT:-8080}
PROM_PORT=${STACK_PROMETHEUS_PORT:-9090}
RPS=${STACK_RPS:-5}
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/orders"
export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
export KAFKA_TOPIC=orders KAFKA_DLQ_TOPIC=orders.dlq KAFKA_GROUP_ID=order-svc
export HTTP_ADDR="127.0.0.1:$HTTP_PORT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$CARGO_TARGET_DIR/release/order-svc"

say() { printf '%s\n' "$*" >&2; }
die() { say "stack: $*"; exit 1; }
pidfile() { if [ "$1" = tansu ]; then echo "$DATA/tansu/tansu.pid"; else echo "$DATA/pids/$1.pid"; fi; }
alive() { local f; f=$(pidfile "$1"); [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_bg() { # name, command...
  local name=$1; shift
  nohup "$@" >"$DATA/logs/$name.log" 2>&1 &
  echo $! >"$DATA/pids/$name.pid"
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$dir" ] || die "PostgreSQL is not installed: apt-get install postgresql"
  echo "$dir"
}

# initdb and the server refuse to run as root; they run as the `postgres` user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start_postgres() {
  local bin pgdata="$DATA/pg"
  bin=$(pg_bin)
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    say "creating a PostgreSQL cluster in $pgdata"
    mkdir -p "$pgdata"
    [ "$(id -u)" = 0 ] && chown postgres: "$pgdata" && chmod 700 "$pgdata"
    as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >"$DATA/logs/initdb.log"
  fi
  if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] && touch "$DATA/logs/postgres.log" && chown postgres: "$DATA/logs/postgres.log"
    as_pg "$bin/pg_ctl" -D "$pgdata" -l "$DATA/logs/postgres.log" -w \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=" start >/dev/null
  fi
}

up() {
  command -v cargo >/dev/null || die "cargo is needed to build order-svc (https://rustup.rs)"
  command -v python3 >/dev/null || die "python3 is needed to install the broker: apt-get install python3 python3-pip"
  if alive serve; then
    say "the stack is already running (serve pid $(cat "$DATA/pids/serve.pid")); 'just down' stops it"
    urls
    return 0
  fi
  mkdir -p "$DATA/pids" "$DATA/logs"
  say "building order-svc (release)..."
  cargo build --release --quiet
  start_postgres
  scripts/tansu.sh start "$KAFKA_PORT" "$DATA/tansu"
  "$BIN" migrate >"$DATA/logs/migrate.log" 2>&1 || { cat "$DATA/logs/migrate.log" >&2; die "migrate failed"; }
  start_bg serve "$BIN" serve
  start_bg produce "$BIN" produce --rps "$RPS" --invalid-rate 0.1
  if command -v prometheus >/dev/null; then
    start_bg prometheus prometheus --config.file=deploy/prometheus/prometheus.local.yml \
      --storage.tsdb.path="$DATA/prometheus" --web.listen-address="127.0.0.1:$PROM_PORT"
  else
    say "Prometheus is not installed, so it is not started (apt-get install prometheus, then just up again)"
  fi
  say "waiting for /readyz..."
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then
      urls
      return 0
    fi
    alive serve || { tail -20 "$DATA/logs/serve.log" >&2; die "serve exited"; }
    sleep 0.5
  done
  die "serve did not become ready in 60 s (logs: $DATA/logs/serve.log)"
}

# The uid of the newest stored order, waiting up to $1 half-seconds for one.
latest_uid() {
  local uid=""
  for _ in $(seq 1 "${1:-20}"); do
    uid=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d orders -Atc \
      "SELECT order_uid FROM orders ORDER BY ingested_at DESC LIMIT 1" 2>/dev/null || true)
    [ -n "$uid" ] && break
    sleep 0.5
  done
  echo "$uid"
}

urls() {
  local uid
  uid=$(latest_uid 20)
  cat <<TXT

order-svc is running.
  UI        http://127.0.0.1:$HTTP_PORT/${uid:+?uid=$uid}
  API       http://127.0.0.1:$HTTP_PORT/order/${uid:-<order_uid>}
  page      http://127.0.0.1:$HTTP_PORT/orders/${uid:-<order_uid>}
  metrics   http://127.0.0.1:$HTTP_PORT/metrics
  OpenAPI   http://127.0.0.1:$HTTP_PORT/openapi.json
TXT
  alive prometheus && echo "  Prometheus http://127.0.0.1:$PROM_PORT/"
  cat <<TXT
  logs      $DATA/logs/ (just logs)       stop: just down      stop and delete data: just purge
TXT
}

down() {
  local purge=${1:-}
  for name in produce serve prometheus tansu; do
    if alive "$name"; then
      kill "$(cat "$(pidfile "$name")")" 2>/dev/null || true
      for _ in $(seq 1 40); do alive "$name" || break; sleep 0.25; done
      say "stopped $name"
    fi
    rm -f "$(pidfile "$name")"
  done
  if [ -f "$DATA/pg/postmaster.pid" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$DATA/pg" -m fast stop >/dev/null && say "stopped postgres"
  fi
  if [ "$purge" = "--purge" ]; then
    rm -rf "$DATA" && say "deleted $DATA"
  fi
}

status() {
  for name in serve produce tansu prometheus; do
    if alive "$name"; then echo "$name: running (pid $(cat "$(pidfile "$name")"))"; else echo "$name: stopped"; fi
  done
  if [ -f "$DATA/pg/postmaster.pid" ]; then echo "postgres: running (port $PG_PORT)"; else echo "postgres: stopped"; fi
}

case "${1:-}" in
  up) up ;;
  down) down "${2:-}" ;;
  status) status ;;
  latest-uid) latest_uid "${2:-20}" ;;
  logs) mkdir -p "$DATA/logs"; exec tail -n 50 -F "$DATA"/logs/*.log "$DATA"/tansu/tansu.log ;;
  *) die "usage: stack.sh up | down [--purge] | status | logs" ;;
esac
