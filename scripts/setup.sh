#!/usr/bin/env bash
# Installs everything `make up`, `make test`, `make bench`, `make rollout-demo`,
# `make fuzz` and `make soak` use, idempotently: quick when it is all there.
# Debian 12; run as root (or with sudo). What a person must have before this:
# Debian 12, Rust (rustup, with clippy and rustfmt), Node.js 20 and npm.
#
#   scripts/setup.sh                  install what is missing
#   scripts/setup.sh --list-packages  print the Debian packages it installs
#   scripts/setup.sh --list-paths     print the files and folders it installs
#
#   COVID_TOOLS_DIR       where project tools go (default /opt/covid-realtime)
#   SETUP_SKIP_BROWSER=1  skip Chromium (make up does not need it)
set -euo pipefail

TOOLS_DIR=${COVID_TOOLS_DIR:-/opt/covid-realtime}
SECANTUS_VERSION=0.5.3-beta.196
SECANTUSD="$TOOLS_DIR/secantus/bin/secantusd-rs"
LOCUST_VENV="$TOOLS_DIR/locust-venv"

# Debian packages, as command -> package. protoc is not one of them: protox
# compiles proto/ inside the build.
declare -A want=(
  [redis-server]=redis-server # the local stack's Redis
  [nginx]=nginx-light         # rollout rehearsal and the nginx ingress checks
  [wrk]=wrk                   # make bench: the load generator against wrk
  [kubectl]=kubernetes-client # knative/tests: kustomize renders every overlay (needs kubectl 1.21+; Debian 12 has 1.20: install a newer one if it is missing)
  [shellcheck]=shellcheck     # knative/tests: rollout.sh
  [curl]=curl                 # browser tests: readiness of the stack
  [cmake]=cmake               # builds SecantusDB's storage engine (once)
  [chromium]=chromium         # browser tests
)
# The rollout rehearsal (knative/src/rehearsal/prometheus.rs) runs its own
# Prometheus to judge the automated canary by PromQL (the package brings promtool too).
want[prometheus]=prometheus
# python3 -m venv: part of the interpreter on some machines, python3-venv on Debian's.
venv_pkg=python3-venv

case "${1:-}" in
  --list-packages) printf '%s\n' "${want[@]}" "$venv_pkg" | sort -u; exit 0 ;;
  --list-paths) printf '%s\n' "$TOOLS_DIR"; exit 0 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--list-packages | --list-paths]" >&2; exit 2 ;;
esac

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
need() {
  command -v "$1" >/dev/null 2>&1 || { echo "setup: $1 is required first: $2" >&2; exit 1; }
}

# What a person brings (README, "Requirements"); everything else is ours.
need cargo "install Rust with rustup (https://rustup.rs)"
need node "install Node.js 20 or newer with npm"
need npm "install npm (it comes with Node.js from NodeSource; on Debian: apt-get install npm)"
need python3 "apt-get install -y python3"
for component in clippy fmt; do
  cargo "$component" --version >/dev/null 2>&1 \
    || rustup component add "${component/fmt/rustfmt}" \
    || { echo "setup: cargo $component is missing: rustup component add ${component/fmt/rustfmt}" >&2; exit 1; }
done

[ "${SETUP_SKIP_BROWSER:-0}" = 1 ] && unset 'want[chromium]'
[ -x "$SECANTUSD" ] && unset 'want[cmake]'
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=("$venv_pkg")
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -q
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The project starts its own nginx, Redis and Prometheus on free ports; the distribution's
# always-on services are not needed.
for svc in nginx redis-server prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    sudo_if_needed systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done

# cargo-nextest runs the Rust tests (one process per test).
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest (a few minutes, once)"
  cargo install cargo-nextest --locked
fi

# The MongoDB-compatible server for local runs and tests (GPL-2.0: a separate
# process, never linked). Production uses a real MongoDB via MONGODB_URI.
if [ ! -x "$SECANTUSD" ]; then
  echo "setup: building SecantusDB $SECANTUS_VERSION into $TOOLS_DIR/secantus (about 5 minutes, once)"
  sudo_if_needed mkdir -p "$TOOLS_DIR"
  cargo install secantus-mdb --version "=$SECANTUS_VERSION" --ignore-rust-version --locked --root "$TOOLS_DIR/secantus" \
    || cargo install secantus-mdb --version "=$SECANTUS_VERSION" --ignore-rust-version --root "$TOOLS_DIR/secantus"
fi

# ---- Knative checks (knative/tests): upstream schemas. (promtool, which
# lints every function's /metrics, comes with the prometheus package above.)
# The schemas every rendered manifest is validated against, from PyPI, pinned:
# Kubernetes' own (kubernetes-validate, strict) and Knative Serving's,
# Knative Eventing's and the Prometheus Operator's (cloudcoil's models,
# generated from their published CRDs). knative/src/schemas.rs names the versions.
SCHEMA_VENV="$TOOLS_DIR/schema-venv"
SCHEMA_PACKAGES=(kubernetes-validate==1.37.0 cloudcoil-models-knative-serving==1.17.0.1
  cloudcoil-models-knative-eventing==1.17.1.1 cloudcoil-models-prometheus-operator==0.80.1.0)
if ! "$SCHEMA_VENV/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(any(m.version(p.split("==")[0]) != p.split("==")[1] for p in sys.argv[1:]))' "${SCHEMA_PACKAGES[@]}" >/dev/null 2>&1; then
  echo "setup: installing the Kubernetes and Knative schemas into $SCHEMA_VENV"
  sudo_if_needed mkdir -p "$TOOLS_DIR"
  python3 -m venv "$SCHEMA_VENV"
  "$SCHEMA_VENV/bin/pip" install --quiet --disable-pip-version-check "${SCHEMA_PACKAGES[@]}"
fi
# ---- end of the Knative checks' block

# Locust, for the test that keeps loadtest/traffic.py working and for the
# load generator benchmark (PyPI, in a virtualenv of its own).
if [ ! -x "$LOCUST_VENV/bin/locust" ]; then
  echo "setup: installing Locust into $LOCUST_VENV"
  sudo_if_needed mkdir -p "$TOOLS_DIR"
  python3 -m venv "$LOCUST_VENV"
  "$LOCUST_VENV/bin/pip" install --quiet --disable-pip-version-check locust
fi
