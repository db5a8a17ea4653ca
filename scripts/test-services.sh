#!/usr/bin/env bash
# Makes sure what the integration tests talk to is running: PostgreSQL (the machine's own
# server) and a tansu broker of the tests' own on TEST_KAFKA_BROKERS' port. Starts what is
# missing; says what to install when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

pg_host=${TEST_PG_HOST:-127.0.0.1}
pg_port=${TEST_PG_PORT:-5432}
brokers=${TEST_KAFKA_BROKERS:-127.0.0.1:19092}
state=.data/test

if ! command -v pg_isready >/dev/null; then
  echo "PostgreSQL is not installed: apt-get install postgresql (or point TEST_DATABASE_URL at a server)" >&2
  exit 1
fi
if ! pg_isready -q -h "$pg_host" -p "$pg_port"; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version=$(ls /etc/postgresql | sort -V | tail -1)
    echo "starting PostgreSQL $version (cluster main)" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  for _ in $(seq 1 60); do pg_isready -q -h "$pg_host" -p "$pg_port" && break; sleep 0.5; done
  pg_isready -q -h "$pg_host" -p "$pg_port" || {
    echo "PostgreSQL does not answer on $pg_host:$pg_port; start it (pg_ctlcluster ... main start)" >&2
    exit 1
  }
fi

# Each test makes a database named itl_<lease>_<random>, and its test process holds the
# advisory lock (LEASE_CLASS, lease) while it runs (tests/it/helpers.rs). Drop those whose lock
# is free (a run that ended or crashed), never those of a run still going, whoever runs it.
# Databases of the older naming, it_<pid>_<random>, are dropped once that pid is gone.
lease_class=$((0x6f726472))
sql() { psql -q -h "$pg_host" -p "$pg_port" -U postgres -d postgres -Atc "$1"; }
sql "SELECT datname FROM pg_database WHERE datname LIKE 'it\_%' OR datname LIKE 'itl\_%'" |
  while read -r db; do
    key=$(echo "$db" | cut -d_ -f2)
    [[ "$key" =~ ^[0-9]+$ ]] || continue
    case "$db" in
      itl_*) [ "$(sql "SELECT pg_try_advisory_lock($lease_class, $key)")" = t ] || continue ;;
      it_*) if kill -0 "$key" 2>/dev/null; then continue; fi ;;
    esac
    sql "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
  done
# And the working directories and logs of binaries run by earlier tests.
find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'order-svc-it-*' -mmin +120 -exec rm -rf {} + 2>/dev/null || true

scripts/tansu.sh start "${brokers##*:}" "$state"

# axe-core for the browser test's accessibility checks (npm, pinned by tests/axe/package-lock.json).
if [ ! -f tests/axe/node_modules/axe-core/axe.min.js ]; then
  command -v npm >/dev/null || { echo "npm is not installed: apt-get install npm (axe-core for the UI test)" >&2; exit 1; }
  npm ci --prefix tests/axe --silent --no-audit --no-fund
fi

# The local OpenID provider of the sign-in tests and `just up` (npm oidc-provider, pinned by
# scripts/oidc/package-lock.json; runs on the machine's Node.js).
if [ ! -d scripts/oidc/node_modules/oidc-provider ]; then
  command -v npm >/dev/null || { echo "npm is not installed: apt-get install npm (the local OpenID provider)" >&2; exit 1; }
  npm ci --prefix scripts/oidc --silent --no-audit --no-fund
fi
