#!/usr/bin/env bash
# cargo's runner for `just test` (scripts/test.sh): runs this run's copy of the test
# executable cargo names, never the file in the shared build directory, which another
# checkout's build may have replaced since.
set -euo pipefail
exe=$1
shift
copy=${ORDER_SVC_TEST_COPIES:?test-runner.sh runs under scripts/test.sh}/$(basename "$exe")
[ -x "$copy" ] || { echo "test-runner.sh: no copy of $exe in $ORDER_SVC_TEST_COPIES" >&2; exit 1; }
exec "$copy" "$@"
