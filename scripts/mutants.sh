#!/usr/bin/env bash
# Mutation testing with cargo-mutants: each mutant of our code is built and the tests that
# cover it are run; a mutant no test fails is "missed". Settings: .cargo/mutants.toml.
#
#   scripts/mutants.sh domain     every mutant of src/domain, by the unit tests
#   scripts/mutants.sh core       the rule files (rules, validate, ingest), by the unit tests
#   scripts/mutants.sh postgres   every mutant of src/adapters/postgres, by the unit tests
#                                 and the integration tests that reach PostgreSQL
#   scripts/mutants.sh diff [REV] the domain lines changed since REV (default HEAD~1), by the
#                                 unit tests: what CI runs
#   scripts/mutants.sh all        domain, then postgres
#
# Mutants are made in the working tree itself (cargo-mutants --in-place: no copy to rebuild
# from scratch) and undone after each; the script refuses to start with uncommitted changes
# under src/, so that `git checkout src` undoes whatever an interrupted run left.
# Results: mutants.out/<part>/mutants.out/{caught,missed,timeout,unviable}.txt.
# Exit status: 0 when nothing was missed, 2 when a mutant was missed (cargo-mutants' own).
set -euo pipefail
cd "$(dirname "$0")/.."

part=${1:-all}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/order-svc/target}
command -v cargo-mutants >/dev/null || cargo install --quiet --locked cargo-mutants@27.1.0
if [ -n "$(git status --porcelain -- src)" ]; then
  echo "mutants.sh: src/ has uncommitted changes; commit or stash them first (mutants are made in place)" >&2
  exit 1
fi

# The unit tests that cover the domain: its own, and the generator's (which drives the gate).
unit=(--lib -- domain:: generate::)
# What reaches PostgreSQL: the adapter's unit tests, and the integration tests that store,
# read, list and migrate through it.
database=(--lib --test it -- adapters::postgres:: roundtrip:: ingest:: lookup:: browse:: migrate:: access:: operate::)

# CARGO_MUTANTS_PROFILE=test builds with the profile `cargo test` uses (CI: already built)
# instead of the no-debug one of .cargo/mutants.toml.
profile=()
[ -n "${CARGO_MUTANTS_PROFILE:-}" ] && profile=(--profile "$CARGO_MUTANTS_PROFILE")

run() {
  local name=$1; shift
  echo "== mutants: $name" >&2
  cargo mutants --in-place --no-shuffle "${profile[@]}" --output "mutants.out/$name" "$@"
}

case "$part" in
  domain) run domain -f 'src/domain/**/*.rs' -- "${unit[@]}" ;;
  core) run core -f src/domain/rules.rs -f src/domain/validate.rs -f src/domain/ingest.rs -- "${unit[@]}" ;;
  postgres) run postgres -f 'src/adapters/postgres/**/*.rs' -- "${database[@]}" ;;
  diff)
    rev=${2:-HEAD~1}
    if ! git rev-parse --verify --quiet "$rev^{commit}" >/dev/null; then
      echo "mutants.sh: no commit $rev to compare with; nothing to mutate" >&2
      exit 0
    fi
    mkdir -p mutants.out
    git diff "$rev" -- src/domain >mutants.out/changed.diff
    if [ ! -s mutants.out/changed.diff ]; then
      echo "mutants.sh: no change under src/domain since $rev; nothing to mutate" >&2
      exit 0
    fi
    run diff --in-diff mutants.out/changed.diff -f 'src/domain/**/*.rs' -- "${unit[@]}"
    ;;
  all)
    status=0
    "$0" domain || status=$?
    "$0" postgres || status=$?
    exit $status
    ;;
  *) echo "usage: mutants.sh domain | core | postgres | diff [REV] | all" >&2; exit 1 ;;
esac
