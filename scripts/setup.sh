#!/usr/bin/env bash
# Installs what `make up` and `make test` need, idempotently: quick when
# everything is already there. Debian 12; run as root (or with sudo).
#
#   COVID_TOOLS_DIR  where project tools go (default /opt/covid-realtime)
#   SETUP_SKIP_BROWSER=1  skip Chromium (make up does not need it)
set -euo pipefail

TOOLS_DIR=${COVID_TOOLS_DIR:-/opt/covid-realtime}
SECANTUS_VERSION=0.5.3-beta.196
SECANTUSD="$TOOLS_DIR/secantus/bin/secantusd-rs"

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: command -> package.
declare -A want=(
  [redis-server]=redis-server
  [protoc]=protobuf-compiler
  [nginx]=nginx-light
  [wrk]=wrk
  [kubectl]=kubernetes-client
  [shellcheck]=shellcheck
  [node]=nodejs
  [npm]=npm
)
[ "${SETUP_SKIP_BROWSER:-0}" = 1 ] || want[chromium]=chromium
[ -x "$SECANTUSD" ] || want[cmake]=cmake

missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -q
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The project starts its own nginx and Redis on free ports; the distribution's
# always-on services are not needed.
for svc in nginx redis-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    sudo_if_needed systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

# The MongoDB-compatible server for local runs and tests (GPL-2.0: a separate
# process, never linked). Production uses a real MongoDB via MONGODB_URI.
if [ ! -x "$SECANTUSD" ]; then
  echo "setup: building SecantusDB $SECANTUS_VERSION into $TOOLS_DIR/secantus (about 11 minutes, once)"
  sudo_if_needed mkdir -p "$TOOLS_DIR"
  cargo install secantus-mdb --version "=$SECANTUS_VERSION" --ignore-rust-version --locked --root "$TOOLS_DIR/secantus" \
    || cargo install secantus-mdb --version "=$SECANTUS_VERSION" --ignore-rust-version --root "$TOOLS_DIR/secantus"
fi

# Locust, for the test that keeps loadtest/traffic.py working and for the
# load generator benchmark (PyPI, in a virtualenv of its own).
LOCUST_VENV="$TOOLS_DIR/locust-venv"
if [ ! -x "$LOCUST_VENV/bin/locust" ]; then
  echo "setup: installing Locust into $LOCUST_VENV"
  sudo_if_needed mkdir -p "$TOOLS_DIR"
  python3 -m venv "$LOCUST_VENV"
  "$LOCUST_VENV/bin/pip" install --quiet --disable-pip-version-check locust
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: cargo-nextest not found; tests will run with cargo test"
fi
