#!/usr/bin/env bash
# Runs a command beside the services the tests, benchmarks and fuzzers need: PostgreSQL (the
# machine's; scripts/test-services.sh starts it if stopped and drops the databases of runs
# that are over) and, unless TEST_KAFKA_BROKERS names a broker, a tansu broker of this run's
# own on a free port, stopped when the command ends. Runs at once (two `just test`, a test
# beside a benchmark, two CI runs) so share nothing but the PostgreSQL server, where each
# has databases of its own.
#
#   scripts/with-test-services.sh COMMAND [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: scripts/with-test-services.sh COMMAND [ARGS...]" >&2; exit 2; }

if [ -z "${TEST_KAFKA_BROKERS:-}" ]; then
  state=$(mktemp -d "${TMPDIR:-/tmp}/order-svc-broker-XXXXXX")
  trap 'scripts/tansu.sh stop "$state"; rm -rf "$state"' EXIT
  port=$(scripts/tansu.sh own "$state")
  export TEST_KAFKA_BROKERS=127.0.0.1:$port
fi
# PostgreSQL up, old databases dropped, the browser test's and the sign-in test's npm
# packages (the broker named above already answers: none is started there).
scripts/test-services.sh
export ORDER_SVC_TEST_SERVICES=1
"$@"
