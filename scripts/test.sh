#!/usr/bin/env bash
# `just test`: every test. PostgreSQL is the machine's (each test in a database of its own,
# leased by its run: scripts/test-services.sh); the broker is this run's own, on a free port,
# stopped when the run ends, so that runs at once share nothing but the server. Set
# TEST_KAFKA_BROKERS to test against a broker of yours instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TEST_KAFKA_BROKERS:-}" ]; then
  state=$(mktemp -d "${TMPDIR:-/tmp}/order-svc-test-broker-XXXXXX")
  trap 'scripts/tansu.sh stop "$state"; rm -rf "$state"' EXIT
  port=$(scripts/tansu.sh own "$state")
  export TEST_KAFKA_BROKERS=127.0.0.1:$port
fi
# PostgreSQL up, the databases of finished runs dropped, the browser test's and the sign-in
# test's npm packages (the broker named above already answers: none is started).
scripts/test-services.sh
cargo test --lib --bins --tests "$@"
