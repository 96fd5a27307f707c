#!/usr/bin/env bash
# Canary and blue/green rollouts of a Knative Service with kn, the same steps
# as the kustomize overlays in overlays/canary/* and overlays/bluegreen/*.
# Run with --help for the commands; --dry-run prints the kn commands only.
set -euo pipefail

NAMESPACE="covid-realtime"
SERVICE="ingest-grpc"
FROM=""
TO=""
DRY_RUN=0

usage() {
  cat <<'USAGE'
Usage: knative/rollout.sh [options] <command> [argument]

Rolls a new revision of a Knative Service out with kn: canary (90/10, 50/50,
100) or blue/green (green at 0% on its own tag URL, then switched), and back.
Every command can be repeated, and run after kubectl apply -k of the rollout
overlays: an existing revision TO is not created again (only traffic moves),
and every traffic command restates its tags.

Commands:
  canary IMAGE          create revision TO from IMAGE (unless it exists), then send it 10%
                        (tags: stable, canary)
  create IMAGE          create revision TO from IMAGE (unless it exists), tagged canary at 0%;
                        stable keeps 100% (the automated rollout starts here)
  step PERCENT          canary gets PERCENT%, stable the rest (e.g. step 50)
  promote               canary gets 100%; stable stays tagged at 0% for a rollback
  blue-green IMAGE      create revision TO (green, unless it exists) at 0%, reachable only on
                        its tag URL
  switch                green gets 100%; blue stays tagged at 0% for a rollback
  rollback canary       stable gets 100% again (canary stays tagged at 0%)
  rollback blue-green   blue gets 100% again (green stays tagged at 0%)
  status                kn service describe and kn revision list

Options:
  -n, --namespace NS    namespace (default: covid-realtime)
  -s, --service NAME    Knative Service (default: ingest-grpc)
      --from REVISION   the revision serving now (default: SERVICE-v1)
      --to REVISION     the new revision (default: SERVICE-v2)
      --dry-run         print the kn commands instead of running them (kn, when installed,
                        is still asked whether revision TO exists)
  -h, --help            this text

Tag URLs: http://TAG-SERVICE.NAMESPACE.DOMAIN (e.g. green-ingest-grpc.covid-realtime.covid.example.com).
Check a split from outside with the load generator, which counts responses per
x-revision header:
  loadtest --target canary=http://ENVOY_IP --host-header canary=ingest-grpc.covid-realtime.covid.example.com --duration 30s

Automated: the rollout command moves the steps with these commands, measures
canary against stable at each, and promotes or rolls back by itself:
  cargo run -p knative-manifests --bin rollout -- --help

Example:
  knative/rollout.sh --dry-run canary dev.local/covid-realtime/ingest:0.2.0
USAGE
}

die() {
  echo "rollout.sh: $*" >&2
  echo "Run knative/rollout.sh --help for usage." >&2
  exit 2
}

# Prints a kn command; runs it unless --dry-run.
kn_run() {
  local quoted
  quoted=$(printf ' %q' "$@")
  echo "kn${quoted}"
  if [[ "$DRY_RUN" -eq 0 ]]; then
    command -v kn >/dev/null 2>&1 ||
      die "kn is not installed: see https://knative.dev/docs/client/install-kn/ (or use --dry-run to print the commands)"
    kn "$@"
  fi
}

update() {
  kn_run service update "$SERVICE" --namespace "$NAMESPACE" "$@"
}

# Every traffic command names its tags again: kn keeps a tag already on the
# same revision and adds a missing one, so the command works whatever route
# (kn or kubectl apply -k) brought the Service where it is.
canary_split() {
  update --tag "$FROM=stable" --tag "$TO=canary" --traffic "stable=$((100 - $1))" --traffic "canary=$1"
}

green_split() {
  update --tag "$FROM=blue" --tag "$TO=green" --traffic "blue=$((100 - $1))" --traffic "green=$1"
}

percent() {
  if ! [[ "$1" =~ ^[0-9]+$ ]] || (( $1 > 100 )); then
    die "PERCENT must be a whole number from 0 to 100, got '$1'"
  fi
}

# The image of revision $1 when it exists; nothing when it does not. A kn
# failure other than "not found" (no cluster, no access) stops the script.
# With --dry-run and no kn, the cluster is taken to have no such revision.
existing_image() {
  local rev="$1" out err status=0
  if ! command -v kn >/dev/null 2>&1; then
    [[ "$DRY_RUN" -eq 1 ]] ||
      die "kn is not installed: see https://knative.dev/docs/client/install-kn/ (or use --dry-run to print the commands)"
    echo "# kn not found: printing the commands for a Service without revision $rev" >&2
    return 0
  fi
  # stderr apart: a kn warning there must not be taken for the image.
  err=$(mktemp)
  out=$(kn revision describe "$rev" --namespace "$NAMESPACE" -o 'jsonpath={.spec.containers[0].image}' 2>"$err") || status=$?
  local message
  message=$(cat "$err")
  rm -f "$err"
  if [[ "$status" -eq 0 ]]; then
    [[ -n "$out" ]] || die "kn revision describe $rev printed no image"
    echo "$out"
  elif [[ "$message" == *"not found"* ]]; then
    return 0
  else
    die "cannot tell whether revision $rev exists: $message"
  fi
}

# A new revision named TO from IMAGE, with no traffic yet: the traffic stays
# on FROM, so nothing changes for users until the next command moves it.
# When TO exists already (an earlier run, or kubectl apply -k
# overlays/ingest-grpc-v2), it is not created again: kn would add its
# updateTimestamp annotation to a template named TO, and Serving refuses a
# changed template under an unchanged name (VerifyNameChange). Only traffic
# moves then; a TO built from another image is refused, since revisions are
# immutable.
create_revision() {
  local image="$1" existing
  [[ -n "$image" ]] || die "an IMAGE is needed"
  existing=$(existing_image "$TO")
  if [[ -z "$existing" ]]; then
    update --image "$image" --revision-name "$TO" --traffic "$FROM=100"
  elif [[ "$existing" != "$image" ]]; then
    die "revision $TO exists with image $existing, not $image: revisions are immutable; name a new one with --to $SERVICE-vN"
  else
    echo "# revision $TO exists with image $image: not created again, only the traffic moves" >&2
  fi
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--namespace) [[ $# -ge 2 ]] || die "$1 needs a value"; NAMESPACE="$2"; shift 2 ;;
    -s|--service) [[ $# -ge 2 ]] || die "$1 needs a value"; SERVICE="$2"; shift 2 ;;
    --from) [[ $# -ge 2 ]] || die "$1 needs a value"; FROM="$2"; shift 2 ;;
    --to) [[ $# -ge 2 ]] || die "$1 needs a value"; TO="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1" ;;
    *) break ;;
  esac
done

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
COMMAND="$1"
shift
FROM="${FROM:-$SERVICE-v1}"
TO="${TO:-$SERVICE-v2}"
for rev in "$FROM" "$TO"; do
  [[ "$rev" == "$SERVICE-"* ]] || die "revision $rev must start with '$SERVICE-' (Knative's rule for revision names)"
done

case "$COMMAND" in
  canary)
    [[ $# -eq 1 ]] || die "canary takes one IMAGE"
    create_revision "$1"
    canary_split 10
    ;;
  create)
    [[ $# -eq 1 ]] || die "create takes one IMAGE"
    create_revision "$1"
    canary_split 0
    ;;
  step)
    [[ $# -eq 1 ]] || die "step takes one PERCENT"
    percent "$1"
    canary_split "$1"
    ;;
  promote)
    [[ $# -eq 0 ]] || die "promote takes no argument"
    canary_split 100
    ;;
  blue-green)
    [[ $# -eq 1 ]] || die "blue-green takes one IMAGE"
    create_revision "$1"
    green_split 0
    ;;
  switch)
    [[ $# -eq 0 ]] || die "switch takes no argument"
    green_split 100
    ;;
  rollback)
    [[ $# -eq 1 ]] || die "rollback takes the strategy: canary or blue-green"
    case "$1" in
      canary) canary_split 0 ;;
      blue-green) green_split 0 ;;
      *) die "rollback takes canary or blue-green, got '$1'" ;;
    esac
    ;;
  status)
    [[ $# -eq 0 ]] || die "status takes no argument"
    kn_run service describe "$SERVICE" --namespace "$NAMESPACE"
    kn_run revision list --service "$SERVICE" --namespace "$NAMESPACE"
    ;;
  *)
    die "unknown command '$COMMAND'"
    ;;
esac
