#!/usr/bin/env bash
# Browser tests: a fresh local stack (debug binaries, empty stores, free
# ports), then dashboard/tests in headless Chromium against it.
set -euo pipefail
cd "$(dirname "$0")/.."

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
stack_pid=
cleanup() {
  if [ -n "$stack_pid" ]; then kill -INT "$stack_pid" 2>/dev/null || true; wait "$stack_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

export DASHBOARD_PORT=$(free_port) INGEST_GRPC_PORT=$(free_port) INGEST_REDIS_PORT=$(free_port)
export GRPC_WRITER_PORT=$(free_port) REDIS_SUB_PORT=$(free_port) AGGREGATE_PORT=$(free_port)
env -u REDIS_URL -u MONGODB_URI RUST_LOG=warn STACK_DATA_DIR="$work/data" \
  target/debug/stack up --fresh --quiet --dashboard-dir dashboard/dist > "$work/stack.log" 2>&1 &
stack_pid=$!

for port in $DASHBOARD_PORT $INGEST_GRPC_PORT $INGEST_REDIS_PORT $GRPC_WRITER_PORT $REDIS_SUB_PORT $AGGREGATE_PORT; do
  for i in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    if ! kill -0 "$stack_pid" 2>/dev/null || [ "$i" = 600 ]; then
      echo "the local stack did not become ready (port $port):" >&2; cat "$work/stack.log" >&2; exit 1
    fi
    sleep 0.1
  done
done

cd dashboard
DASHBOARD_URL="http://127.0.0.1:$DASHBOARD_PORT" \
INGEST_GRPC_URL="http://127.0.0.1:$INGEST_GRPC_PORT" \
INGEST_REDIS_URL="http://127.0.0.1:$INGEST_REDIS_PORT" \
ARTIFACTS_DIR="${ARTIFACTS_DIR:-$PWD/test-artifacts}" \
  npm test
