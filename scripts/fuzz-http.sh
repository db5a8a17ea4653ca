#!/usr/bin/env bash
# schemathesis against the OpenAPI document of a running `serve` that holds real orders (the
# canonical order, whose uid is the document's example, and generated ones), so that its
# requests reach real lookups, not only 404s. Every check: no server error, every status,
# header and body as documented, 405 with Allow for undocumented methods (what the document
# cannot state: scripts/schemathesis.toml). Authentication is on, as in production: every
# request carries an API key holding every scope (made by `order-svc keys create`), and
# /metrics is on METRICS_ADDR.
#
#   scripts/fuzz-http.sh [MAX_EXAMPLES]   (needs PostgreSQL and a broker: `just fuzz-http` starts them)
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${1:-100}
command -v schemathesis >/dev/null || python3 -m pip install --quiet "schemathesis==4.32.5"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet

# Names of this run's own (random, not the pid: another PID namespace may reuse it).
run_id="fuzzhttp_$(od -An -N6 -tx1 /dev/urandom | tr -d " \n")"
admin=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=$(mktemp -d)
# A copy of the binary, so that a build of another checkout into the shared build directory
# does not replace it under this run.
cp "$CARGO_TARGET_DIR/release/order-svc" "$work/order-svc"
bin="$work/order-svc"
cleanup() {
  [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $run_id WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

export DATABASE_URL="${admin%/*}/$run_id"
export KAFKA_BROKERS=${TEST_KAFKA_BROKERS:-127.0.0.1:19092}
export KAFKA_TOPIC="$run_id" KAFKA_DLQ_TOPIC="$run_id.dlq" KAFKA_GROUP_ID="$run_id"
"$bin" migrate >/dev/null
python3 -c 'import json,sys; print(json.dumps(json.load(open("tests/data/model.json"))))' >"$work/orders.jsonl"
"$bin" generate --count 50 --seed 3 >>"$work/orders.jsonl" 2>/dev/null
key=$("$bin" keys create --name fuzz-http --scopes all 2>/dev/null)
export ORDER_SVC_FUZZ_KEY="$key"
auth="Authorization: Bearer $key"

AUTH_API_KEYS=true LINK_KEYS=fuzz=order-svc-fuzz-link-key-of-32-characters METRICS_ADDR=127.0.0.1:0 RATE_LOOKUPS_PER_SECOND=0 RATE_SEARCHES_PER_SECOND=0 \
  HTTP_ADDR=127.0.0.1:0 "$bin" serve >"$work/serve.log" 2>&1 &
serve_pid=$!
port=""
for _ in $(seq 1 200); do
  port=$(grep -a 'serving HTTP' "$work/serve.log" | grep -oE '127\.0\.0\.1:[0-9]+' | head -1 | cut -d: -f2 || true)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/serve.log" >&2; echo "fuzz-http: serve did not start" >&2; exit 1; }
"$bin" produce --file "$work/orders.jsonl" --rps 1000 >/dev/null 2>&1
for _ in $(seq 1 100); do
  curl -fsS -H "$auth" "http://127.0.0.1:$port/order/b563feb7b2b84b6test" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS -H "$auth" "http://127.0.0.1:$port/order/b563feb7b2b84b6test" >/dev/null ||
  { echo "fuzz-http: the canonical order was not stored" >&2; exit 1; }

schemathesis --config-file scripts/schemathesis.toml run "http://127.0.0.1:$port/openapi.json" \
  --checks all --max-examples "$examples" --seed 1 --workers 2
