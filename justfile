# order-svc tasks. `just` alone lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := false

export TEST_DATABASE_URL := env("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
export TEST_KAFKA_BROKERS := env("TEST_KAFKA_BROKERS", "127.0.0.1:19092")

[private]
default:
    @just --list --unsorted

# --- develop -------------------------------------------------------------------------------

# Run every test against a real PostgreSQL and a real broker, starting them when needed.
[group('develop')]
test *ARGS: test-services
    cargo test --all-targets {{ ARGS }}

# fmt --check and clippy with warnings as errors.
[group('develop')]
lint:
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings

# Format the code.
[group('develop')]
fmt:
    cargo fmt

# Start PostgreSQL (if stopped) and the tests' own tansu broker.
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
bench-ingest: test-services
    cargo bench --bench ingest

# Lookups over HTTP with 100 000 orders cached, fixed rate and max; baseline: a fixed body.
[group('measure')]
bench-http: test-services
    cargo bench --bench http
