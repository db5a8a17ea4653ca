#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the gate (decode -> validate ->
# canonical JSON) and of the dead-letter detail, SECONDS per target. The corpus of the gate
# is seeded from `order-svc generate` (valid orders and every corruption kind) and the
# canonical order. Exits non-zero on the first crash; the input is kept under fuzz/artifacts.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(decode_validate dead_letter_detail dead_letter_headers)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz..." >&2
  cargo install --quiet --locked cargo-fuzz@0.13.1
fi

corpus=fuzz/corpus/decode_validate
if [ ! -d "$corpus" ]; then
  mkdir -p "$corpus"
  cp tests/data/model.json "$corpus/model.json"
  cargo run --quiet --release --bin order-svc -- generate --count 300 --invalid-rate 0.5 --seed 9 \
    --max-message-bytes 65536 2>/dev/null |
    split -l 1 -a 4 - "$corpus/generated-"
fi
# Hostile seeds: an unknown key of a producer's words, free text past its bound.
if [ ! -f "$corpus/hostile-unknown-key.json" ]; then
  python3 - "$corpus" <<'PY'
import json, sys
model = json.load(open("tests/data/model.json"))
unknown = dict(model); unknown["Appelez le 0900 pour récupérer votre colis"] = 1
json.dump(unknown, open(sys.argv[1] + "/hostile-unknown-key.json", "w"), ensure_ascii=False)
nested = json.loads(json.dumps(model)); nested["delivery"]["Zahlung überfällig melden"] = "x"
json.dump(nested, open(sys.argv[1] + "/hostile-nested-key.json", "w"), ensure_ascii=False)
long = json.loads(json.dumps(model)); long["delivery"]["city"] = "é" * 257
json.dump(long, open(sys.argv[1] + "/hostile-long-text.json", "w"), ensure_ascii=False)
PY
fi
# The fuzz build has its own flags: its own target directory keeps the main build cache warm.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/order-svc/fuzz-target}
# libFuzzer's instrumentation needs unstable rustc flags; this is the one toolchain here.
export RUSTC_BOOTSTRAP=1

mkdir -p fuzz/corpus/dead_letter_detail fuzz/corpus/dead_letter_headers

for target in "${targets[@]}"; do
  echo "fuzzing $target for ${seconds}s" >&2
  log=$(mktemp)
  if ! cargo fuzz run --sanitizer none "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $target crashed; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | sed "s/^/$target: /"
  rm -f "$log"
done
