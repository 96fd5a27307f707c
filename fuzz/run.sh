#!/usr/bin/env bash
# `make fuzz`: every cargo-fuzz target for a bounded time, then a table.
#
#   fuzz/run.sh                      # each target 20 s
#   FUZZ_SECONDS=600 fuzz/run.sh     # longer
#   fuzz/run.sh http_event           # one target
#
# cargo-fuzz needs a nightly compiler's -Z flags: it uses the `nightly`
# toolchain when rustup has one (or FUZZ_TOOLCHAIN), else the stable one with
# RUSTC_BOOTSTRAP=1, which unlocks the same flags. cargo-fuzz is installed
# here when missing. Seeds are read from
# fuzz/corpus/<target>/ and never written: what libFuzzer finds goes to
# fuzz/target/corpus-work/. A crash leaves its input in
# fuzz/artifacts/<target>/: reproduce with
#   cd fuzz && cargo +nightly fuzz run -O <target> artifacts/<target>/crash-…
# fix it, and commit the input to fuzz/corpus/<target>/ so `cargo test -p
# events` replays it from then on.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-20}
toolchain=${FUZZ_TOOLCHAIN:-nightly}
if ! cargo +"$toolchain" --version >/dev/null 2>&1; then
  echo "== no $toolchain toolchain: fuzzing with stable and RUSTC_BOOTSTRAP=1"
  toolchain=stable
  export RUSTC_BOOTSTRAP=1
fi
if ! cargo +"$toolchain" fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +"$toolchain" fuzz list)
fi

echo "== building ${#targets[@]} targets (the first build takes minutes)"
for t in "${targets[@]}"; do cargo +"$toolchain" fuzz build -O "$t"; done

rows=()
failed=0
for t in "${targets[@]}"; do
  work=target/corpus-work/$t
  log=target/fuzz-$t.log
  mkdir -p "$work"
  echo "== $t: ${seconds}s"
  if cargo +"$toolchain" fuzz run -O "$t" "$work" "corpus/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result=CRASH
    failed=1
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -8 >&2 || tail -20 "$log" >&2
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  speed=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo "?")
  seeds=$(find "corpus/$t" -type f | wc -l)
  rows+=("$(printf '| %-12s | %10s | %8s | %6s | %5s | %-6s |' "$t" "$runs" "$speed" "$cov" "$seeds" "$result")")
done

echo
printf '| %-12s | %10s | %8s | %6s | %5s | %-6s |\n' target runs "execs/s" edges seeds result
printf '|%s|%s|%s|%s|%s|%s|\n' -------------- ------------ ---------- -------- ------- --------
printf '%s\n' "${rows[@]}"
exit $failed
