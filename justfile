# order-svc tasks. `just` alone lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

export TEST_DATABASE_URL := env("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# Empty: each recipe that needs a broker starts one of its run's own on a free port
# (scripts/with-test-services.sh); set, that broker is used instead.
export TEST_KAFKA_BROKERS := env("TEST_KAFKA_BROKERS", "")

[private]
default:
    @just --list --unsorted

# --- develop -------------------------------------------------------------------------------

# Run every test against a real PostgreSQL and a broker of the run's own (scripts/test.sh).
[group('develop')]
test *ARGS:
    scripts/test.sh {{ ARGS }}

# fmt --check and clippy with warnings as errors.
[group('develop')]
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cargo clippy --all-targets --features bench-baseline -- -D warnings

# Check deploy/ with real tools: promtool (rules, rule tests, dashboard queries), kustomize
# and kubernetes-validate (Kubernetes), a Compose parser.
[group('develop')]
check-deploy:
    scripts/check-deploy.sh

# Write deploy/kubernetes/components/prometheus-operator/prometheusrule.yaml from rules.yml.
[group('develop')]
k8s-rules:
    scripts/k8s-rules.sh

# Format the code.
[group('develop')]
fmt:
    cargo fmt

# Start PostgreSQL (if stopped) and a shared tansu broker on 127.0.0.1:19092, for running
# `cargo test` by hand (the recipes start brokers of their own).
[group('develop')]
test-services:
    scripts/test-services.sh

# Stop the tests' broker.
[group('develop')]
test-services-down:
    scripts/tansu.sh stop .data/test

# --- run -----------------------------------------------------------------------------------

# Create the database (DATABASE_URL) if missing and apply pending migrations.
[group('run')]
migrate:
    cargo run --release --quiet -- migrate

# Write generated orders, e.g. `just generate --count 1000 --invalid-rate 0.1 --seed 7`.
[group('run')]
generate *ARGS:
    cargo run --release --quiet -- generate {{ ARGS }}

# --- measure -------------------------------------------------------------------------------

# Drain 200 000 pre-produced orders (10% invalid) with `serve`; baseline: binary COPY.
[group('measure')]
bench-ingest:
    scripts/with-test-services.sh cargo bench --bench ingest

# Lookups over HTTP with 100 000 orders cached, fixed rate and max; baseline: a fixed body.
[group('measure')]
bench-http:
    scripts/with-test-services.sh cargo bench --bench http --features bench-baseline

# The cache filled past CACHE_MAX_BYTES by ingest and by the preload; resident memory of
# serve against 1.3 x the bound + 64 MiB; baseline: the same ingest with the cache off.
[group('measure')]
bench-memory:
    scripts/with-test-services.sh cargo bench --bench memory

# 1 000 000 orders stored: time to ready and to a warm cache with 100 000 to preload
# (baseline: nothing to preload), and lookups that all miss the cache (baseline: pgbench
# running the same statement).
[group('measure')]
bench-cold:
    scripts/with-test-services.sh cargo bench --bench cold

# Browse and search with 1 000 000 orders stored: the newest page, an older page and each
# search, closed loop and at a fixed rate; baseline: the cached GET /order/{uid}, same run.
[group('measure')]
bench-browse:
    scripts/with-test-services.sh cargo bench --bench browse

# A steady stream (1 000 orders/s) ingested while lookups run (5 000/s) for a minute: produce
# to visible against the broker's own produce-to-consume time, lookups against the same load
# without ingest, memory, errors, lag. Settings: see benches/live.rs.
[group('measure')]
bench-live:
    scripts/with-test-services.sh cargo bench --bench live

# bench-live for 30 minutes with the cache bounded at 128 MiB: memory must stay flat.
[group('measure')]
soak SECONDS="1800":
    BENCH_SECONDS={{ SECONDS }} BENCH_REPORT_SECONDS=60 BENCH_CACHE_MIB=128 scripts/with-test-services.sh cargo bench --bench live

# --- the whole stack -----------------------------------------------------------------------

# Start everything: compose where a Docker engine answers, local processes otherwise
# (`just up local` / `just up compose` to choose). A second `just up` changes nothing.
[group('stack')]
up MODE="auto":
    #!/usr/bin/env bash
    set -euo pipefail
    mode="{{ MODE }}"
    if [ "$mode" = auto ]; then
      if command -v docker >/dev/null && docker info >/dev/null 2>&1; then mode=compose; else mode=local; fi
    fi
    case "$mode" in
      local) scripts/stack.sh up ;;
      compose)
        # Fresh random passwords on the first run, kept for the next (mode 600).
        env_file=.data/compose.env
        if [ ! -f "$env_file" ]; then
          mkdir -p .data
          secret() { head -c 18 /dev/urandom | base64 | tr -d '/+='; }
          (umask 077; printf 'POSTGRES_PASSWORD=%s\nSERVE_DB_PASSWORD=%s\nGRAFANA_ADMIN_PASSWORD=%s\n' \
            "$(secret)" "$(secret)" "$(secret)" > "$env_file")
        fi
        docker compose --env-file "$env_file" -f deploy/compose.yaml up -d --build --wait
        echo "order-svc: http://127.0.0.1:8080/  Grafana: http://127.0.0.1:3000/ (user admin, password in $env_file)  Prometheus: http://127.0.0.1:9090/"
        ;;
      *) echo "just up [auto|local|compose]" >&2; exit 2 ;;
    esac

# Stop what `just up` started; `just down --purge` also deletes its data.
[group('stack')]
down *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    compose=(docker compose --env-file .data/compose.env -f deploy/compose.yaml)
    if [ -f .data/compose.env ] && command -v docker >/dev/null && docker info >/dev/null 2>&1 && "${compose[@]}" ps -q 2>/dev/null | grep -q .; then
      if [ "{{ ARGS }}" = "--purge" ]; then "${compose[@]}" down -v; else "${compose[@]}" down; fi
    fi
    scripts/stack.sh down {{ ARGS }}

# Stop everything and delete the stack's data.
[group('stack')]
purge: (down "--purge")

# Follow the stack's logs.
[group('stack')]
logs:
    scripts/stack.sh logs

# What of the local stack is running.
[group('stack')]
status:
    scripts/stack.sh status

# Start the local stack, find a produced order through the API, stop: what a newcomer does.
[group('stack')]
smoke:
    scripts/smoke.sh

# Coverage-guided fuzzing of the gate and the dead-letter detail, SECONDS per target.
[group('measure')]
fuzz SECONDS="600":
    scripts/fuzz.sh {{ SECONDS }}

# Mutation testing (cargo-mutants): PART is domain, core (rules, validate, ingest), postgres,
# diff (the domain lines the last commit changed: what CI runs) or all. See scripts/mutants.sh.
[group('measure')]
mutants PART="all":
    scripts/with-test-services.sh scripts/mutants.sh {{ PART }}

# schemathesis against /openapi.json of a running serve with real orders.
[group('measure')]
fuzz-http EXAMPLES="100":
    scripts/with-test-services.sh scripts/fuzz-http.sh {{ EXAMPLES }}

# Faults from outside while a mixed stream flows (kill -9, PostgreSQL restarts and silence,
# a frozen broker, consumers joining and leaving, the dead-letter topic gone), release build.
[group('measure')]
chaos:
    scripts/with-test-services.sh cargo test --release --test it chaos_full -- --ignored --nocapture --test-threads 1
