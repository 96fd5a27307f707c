#!/usr/bin/env bash
# Proves the two commands on a machine that lacks what a developer installed
# by hand: removes every Debian package that scripts/setup.sh installs (and
# the protobuf packages a build once needed without saying so), deletes the
# tools folder, then runs `make test` and `make up` from a fresh clone of HEAD.
# Run it before resolving anything that touches setup. It changes this
# machine, so it asks for --yes.
#
#   scripts/new-machine-check.sh --yes               the whole check (about 25 minutes)
#   scripts/new-machine-check.sh --yes --keep-tools  keep $COVID_TOOLS_DIR (skips the
#                                                    5-minute SecantusDB build)
set -euo pipefail
cd "$(dirname "$0")/.."

yes=0 keep_tools=0
for arg in "$@"; do
  case "$arg" in
    --yes) yes=1 ;;
    --keep-tools) keep_tools=1 ;;
    *) echo "usage: scripts/new-machine-check.sh --yes [--keep-tools]" >&2; exit 2 ;;
  esac
done
[ "$yes" = 1 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

tools=${COVID_TOOLS_DIR:-/opt/covid-realtime}
mapfile -t packages < <(scripts/setup.sh --list-packages)
# Installed by hand on developers' machines before; the build must not need them.
packages+=(protobuf-compiler libprotobuf-dev)
echo "== removing: ${packages[*]}"
sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q "${packages[@]}" >/dev/null
if [ "$keep_tools" = 0 ]; then
  echo "== removing $tools"
  sudo_if_needed rm -rf "$tools"
fi

work=$(mktemp -d)
up_pid=
cleanup() {
  # make up runs in its own process group: stop the stack it started too.
  if [ -n "$up_pid" ]; then kill -INT -- "-$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

git clone -q . "$work/clone"
cd "$work/clone"
echo "== make test (fresh clone of $(git rev-parse --short HEAD))"
make test

echo "== make up: POST /cases on both ingest ports"
STACK_DATA_DIR="$work/stack" setsid make up > "$work/up.log" 2>&1 &
up_pid=$!
for port in 8081 8082; do
  for i in $(seq 1 1800); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    if ! kill -0 "$up_pid" 2>/dev/null || [ "$i" = 1800 ]; then
      echo "make up did not serve port $port:" >&2; tail -40 "$work/up.log" >&2; exit 1
    fi
    sleep 0.5
  done
  code=$(curl -s -o "$work/answer" -w '%{http_code}' -H 'content-type: application/json' \
    -H "authorization: Bearer $(cat "$work/stack/ingest-token")" \
    -d '{"name":"Ana","location":"Petén","age":34,"infectedtype":"communitary","state":"active"}' \
    "http://127.0.0.1:$port/cases")
  echo "POST :$port/cases -> $code $(cat "$work/answer")"
  [ "$code" = 202 ] || exit 1
done
echo "new machine check: make test and make up pass"
