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

for var in DASHBOARD_PORT INGEST_GRPC_PORT INGEST_REDIS_PORT GRPC_WRITER_PORT REDIS_SUB_PORT AGGREGATE_PORT; do
  port=$(free_port)
  export "$var=$port"
done
# Writes need the ingest token: pick one, give it to the stack and to the tests.
export INGEST_TOKEN=${INGEST_TOKEN:-$(od -An -N32 -tx1 /dev/urandom | tr -d " \n")}
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

(
  cd dashboard
  DASHBOARD_URL="http://127.0.0.1:$DASHBOARD_PORT" \
  INGEST_GRPC_URL="http://127.0.0.1:$INGEST_GRPC_PORT" \
  INGEST_REDIS_URL="http://127.0.0.1:$INGEST_REDIS_PORT" \
  ARTIFACTS_DIR="${ARTIFACTS_DIR:-$PWD/test-artifacts}" \
    npm test
)

# loadtest/traffic.py keeps working: Locust headless for a few seconds
# against the same stack, every request accepted.
echo "== locust (loadtest/traffic.py)"
locust_bin="${COVID_TOOLS_DIR:-/opt/covid-realtime}/locust-venv/bin/locust"
[ -x "$locust_bin" ] || { echo "Locust is not installed at $locust_bin: run scripts/setup.sh" >&2; exit 1; }
LOADTEST_TOKEN="$INGEST_TOKEN" "$locust_bin" -f loadtest/traffic.py --headless -u 4 -r 4 -t 3s \
  --host "http://127.0.0.1:$INGEST_REDIS_PORT" --batch 3 --only-summary --csv "$work/locust" > "$work/locust.log" 2>&1 \
  || { cat "$work/locust.log" >&2; exit 1; }
python3 - "$work/locust_stats.csv" <<'PY'
import csv, sys
rows = {r["Name"]: r for r in csv.DictReader(open(sys.argv[1]))}
agg = rows["Aggregated"]
requests, failures = int(agg["Request Count"]), int(agg["Failure Count"])
print(f"locust: {requests} requests, {failures} failures")
sys.exit(0 if requests > 0 and failures == 0 else 1)
PY
