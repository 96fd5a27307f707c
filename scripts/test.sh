#!/usr/bin/env bash
# `make test`: lint, then every test of the project against real servers.
#  0. rustfmt and clippy, warnings as errors (`make lint`);
#  1. builds the workspace (the end-to-end tests run the function binaries);
#  2. starts one Redis and one MongoDB-compatible server shared by the Rust
#     tests (each test uses its own database and key prefix);
#  3. runs the Rust tests (nextest when present);
#  4. builds the dashboard and runs the browser tests against a fresh stack.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== lint (rustfmt, clippy -D warnings)"
make --no-print-directory lint

echo "== build"
cargo build --workspace --bins --quiet

echo "== test servers"
target/debug/stack servers > "$work/servers.env" &
pids+=($!)
for _ in $(seq 1 300); do
  [ "$(wc -l < "$work/servers.env")" -ge 2 ] && break
  sleep 0.1
done
COVID_TEST_REDIS_URL=$(sed -n 's/^REDIS_URL=//p' "$work/servers.env")
COVID_TEST_MONGODB_URI=$(sed -n 's/^MONGODB_URI=//p' "$work/servers.env")
if [ -z "$COVID_TEST_REDIS_URL" ] || [ -z "$COVID_TEST_MONGODB_URI" ]; then
  echo "test servers did not start" >&2
  exit 1
fi
export COVID_TEST_REDIS_URL COVID_TEST_MONGODB_URI

echo "== rust tests"
cargo nextest run --workspace --no-fail-fast --failure-output final

if [ -f dashboard/package.json ]; then
  echo "== dashboard build"
  make --no-print-directory dashboard
  echo "== browser tests"
  scripts/browser-test.sh
fi
