#!/usr/bin/env bash
# The newcomer's path, automated: `just up` (local processes), wait until an order produced
# by the stack can be read through the API, then `just down`. Uses free ports of its own so
# that it never meets a stack someone is running.
#
# Run as root, it first copies the checkout into a fresh directory of mode 700 (as root's
# home is) and runs from there: the `postgres` user cannot enter it, which is the setup that
# once broke `just up`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && [ -z "${SMOKE_IN_PRIVATE_DIR:-}" ]; then
  private=$(mktemp -d)
  chmod 700 "$private"
  trap 'rm -rf "$private"' EXIT
  # The files git knows and the new ones it does not ignore: what a clone of this work holds.
  git ls-files -z --cached --others --exclude-standard |
    tar --null -T - -cf - 2>/dev/null | (mkdir -p "$private/order-svc" && tar -C "$private/order-svc" -xf -)
  echo "smoke: running from $private/order-svc (mode $(stat -c %a "$private"), owner $(stat -c %U "$private"))" >&2
  # The build cache stays where it is, so the copy does not rebuild from scratch.
  CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target} SMOKE_IN_PRIVATE_DIR=1 \
    "$private/order-svc/scripts/smoke.sh"
  exit 0
fi

# Ports free at the start, seven at once (held together while asked, so all differ): two
# smokes at once, or a smoke beside `just test` or a running stack, never meet. The stack's
# broker is its own, so its topics and group are too.
read -r pg kafka http prom oidc metrics _ < <(python3 -c '
import socket
held = [socket.socket() for _ in range(7)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in held))')
export STACK_DATA=.data/smoke STACK_PG_PORT=$pg STACK_KAFKA_PORT=$kafka STACK_HTTP_PORT=$http \
       STACK_PROMETHEUS_PORT=$prom STACK_OIDC_PORT=$oidc STACK_METRICS_PORT=$metrics STACK_RPS=20
echo "smoke: ports postgres $pg, kafka $kafka, http $http, prometheus $prom, oidc $oidc, metrics $metrics" >&2
trap 'scripts/stack.sh down --purge' EXIT
scripts/stack.sh up
uid=$(scripts/stack.sh latest-uid 60)
# The stack's PostgreSQL takes its own password only, kept where only this user reads it.
[ "$(stat -c %a "$STACK_DATA/pg.password")" = 600 ] ||
  { echo "smoke: $STACK_DATA/pg.password is not mode 600" >&2; exit 1; }
if PGPASSWORD=wrong psql -h 127.0.0.1 -p "$STACK_PG_PORT" -U postgres -d orders -Atc 'SELECT 1' >/dev/null 2>&1; then
  echo "smoke: the stack's PostgreSQL let a wrong password in" >&2; exit 1
fi
[ -n "$uid" ] || { echo "smoke: no order was stored" >&2; exit 1; }
base="http://127.0.0.1:$STACK_HTTP_PORT"
# Nothing without a credential; the demo API key the stack printed reads the order.
status=$(curl -sS -o /dev/null -w '%{http_code}' "$base/order/$uid")
[ "$status" = 401 ] || { echo "smoke: an anonymous lookup answered $status, not 401" >&2; exit 1; }
key=$(cat "$STACK_DATA/demo.key")
body=$(curl -fsS -H "Authorization: Bearer $key" "$base/order/$uid")
echo "$body" | python3 -c "import json,sys; o=json.load(sys.stdin); assert o['order_uid']=='$uid', o; print('smoke: found order', o['order_uid'], 'with', len(o['items']), 'items')"
# A person: the page sends the browser to the local provider; signed in there as support,
# back on the page, searching finds the order. (Each page is read whole before it is
# searched: `grep -q` would stop reading early, and curl, still writing, would fail the pipe.)
jar=$(mktemp)
form=$(curl -fsS -c "$jar" -b "$jar" -L "$base/?q=$uid")
action=$(grep -o 'action="/interaction/[^"]*"' <<<"$form" | cut -d'"' -f2)
[ -n "$action" ] || { echo "smoke: the UI did not send the browser to sign in" >&2; exit 1; }
found=$(curl -fsS -c "$jar" -b "$jar" -L --data-urlencode login=support --data-urlencode password=support \
  "http://127.0.0.1:$STACK_OIDC_PORT$action")
grep -q 'Signed in as <strong>support</strong>' <<<"$found" ||
  { echo "smoke: signing in as support did not come back signed in" >&2; exit 1; }
grep -q 'id="q"' <<<"$found" || { echo "smoke: the UI page is missing its search box" >&2; exit 1; }
grep -q "href=\"/orders/$uid\"" <<<"$found" ||
  { echo "smoke: the UI's search does not find order $uid" >&2; exit 1; }
rm -f "$jar"
echo "smoke: signed in as support through the local OpenID provider and found the order"
# Prometheus (installed by .ci/run) scrapes serve and has loaded the alert rules.
command -v prometheus >/dev/null || { echo "smoke: Prometheus is not installed (apt-get install prometheus)" >&2; exit 1; }
prom="http://127.0.0.1:$STACK_PROMETHEUS_PORT"
for i in $(seq 1 60); do
  if curl -fsS "$prom/api/v1/query" --data-urlencode 'query=order_svc_build_info{job="order-svc"} * on(instance) up' 2>/dev/null |
     python3 -c "import json,sys; r=json.load(sys.stdin)['data']['result']; sys.exit(0 if r and r[0]['value'][1]=='1' else 1)"; then
    break
  fi
  [ "$i" = 60 ] && { echo "smoke: Prometheus did not scrape serve within 60 s" >&2; exit 1; }
  sleep 1
done
curl -fsS "$prom/api/v1/rules" | python3 -c "
import json, sys
rules = [r['name'] for g in json.load(sys.stdin)['data']['groups'] for r in g['rules']]
assert 'OrderSvcTargetDown' in rules and len(rules) >= 12, rules
print('smoke: Prometheus scrapes serve and has loaded', len(rules), 'alert rules')"
echo "smoke: ok"
