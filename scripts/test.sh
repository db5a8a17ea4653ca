#!/usr/bin/env bash
# `just test`: every test, beside the run's own services (scripts/with-test-services.sh:
# PostgreSQL is the machine's, each test in a database of its own leased by its run; the
# broker is this run's own, on a free port, stopped when the run ends). Set
# TEST_KAFKA_BROKERS to test against a broker of yours instead.
#
# The build directory is shared (CARGO_TARGET_DIR), so another checkout's build may replace
# the binaries while this run's tests go on. The run therefore executes copies of its own:
# built, copied, then checked unchanged by a second build that finds nothing to do; cargo
# runs each test executable through scripts/test-runner.sh, which runs the copy instead, and
# the tests start `order-svc` from ORDER_SVC_BIN, the copy of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -n "${ORDER_SVC_TEST_SERVICES:-}" ] || exec scripts/with-test-services.sh "$PWD/scripts/test.sh" "$@"
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/order-svc-test-XXXXXX")
trap 'rm -rf "$run_dir"' EXIT

# The executables of this build, one per line: every test harness, then the binary.
executables() {
  cargo test --no-run --lib --bins --tests --message-format=json-render-diagnostics "$@" |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])'
}
copies=$run_dir/bin
for attempt in 1 2 3 4 5; do
  rm -rf "$copies" && mkdir "$copies"
  mapfile -t built < <(executables "$@")
  [ ${#built[@]} -gt 0 ] || { echo "test.sh: the build named no executable" >&2; exit 1; }
  cp "${built[@]}" "$copies/"
  # Nothing to build a second time, and the same bytes: the copies are this checkout's.
  mapfile -t again < <(executables "$@")
  same=1
  for exe in "${again[@]}"; do cmp -s "$exe" "$copies/$(basename "$exe")" || same=
  done
  [ -n "$same" ] && [ "${#again[@]}" = "${#built[@]}" ] && break
  echo "test.sh: another build replaced the executables while they were copied; again ($attempt)" >&2
  [ "$attempt" = 5 ] && { echo "test.sh: could not take a stable copy of the build" >&2; exit 1; }
done
export ORDER_SVC_BIN=$copies/order-svc ORDER_SVC_TEST_COPIES=$copies
[ -x "$ORDER_SVC_BIN" ] || { echo "test.sh: the build made no order-svc binary" >&2; exit 1; }
host=$(rustc -vV | sed -n 's/^host: //p')
runner_var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$host")_RUNNER
export "$runner_var=$PWD/scripts/test-runner.sh"
cargo test --lib --bins --tests "$@"
