#!/usr/bin/env bash
# Builds the cargo-fuzz targets of fuzz/ and runs each (or those named) for SECONDS, starting from
# its committed seeds (fuzz/seeds/TARGET/, copied into the scratch corpus fuzz/corpus/TARGET/, so
# the seeds stay as committed). Prints one line per target, "target executions seconds result",
# and exits non-zero when any target crashed, timed out or ran out of memory; the failing input
# is under fuzz/artifacts/TARGET/ and libFuzzer's output in fuzz/logs/TARGET.log.
#
#   bash scripts/fuzz.sh SECONDS [TARGET...]
#
# Environment: FUZZ_TIMEOUT (seconds one input may run before it counts as a timeout, default 10),
# FUZZ_RSS_LIMIT_MB (default 2048), FUZZ_SANITIZER (cargo fuzz's -s: address, the default, or none),
# FUZZ_DETECT_LEAKS (libFuzzer's -detect_leaks, default 0: the targets keep fixtures and caches
# that grow at first, and the leak checks that triggers made some targets 6 times slower).
# Runs on a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags; cargo-fuzz is
# installed with `cargo install cargo-fuzz --locked` when `cargo fuzz` is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ] || ! [[ $1 =~ ^[0-9]+$ ]]; then
  echo "usage: bash scripts/fuzz.sh SECONDS [TARGET...]" >&2
  exit 2
fi
seconds=$1
shift

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
sanitizer=${FUZZ_SANITIZER:-address}
timeout=${FUZZ_TIMEOUT:-10}
rss_limit=${FUZZ_RSS_LIMIT_MB:-2048}
detect_leaks=${FUZZ_DETECT_LEAKS:-0}

# One build of every target named (debug assertions on, so that integer overflow panics).
build_args=(-a -s "$sanitizer")
if [ $# -gt 0 ]; then
  for t in "${targets[@]}"; do
    cargo fuzz build "${build_args[@]}" "$t"
  done
else
  cargo fuzz build "${build_args[@]}"
fi
bin_dir=target/$(rustc -vV | sed -n 's/^host: //p')/release

printf '%-20s %12s %8s  %s\n' target executions seconds result
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" logs
  if [ -d "seeds/$t" ]; then
    cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
  fi
  log=logs/$t.log
  start=$(date +%s)
  set +e
  "$bin_dir/$t" "corpus/$t" -max_total_time="$seconds" -print_final_stats=1 -timeout="$timeout" \
    -rss_limit_mb="$rss_limit" -detect_leaks="$detect_leaks" -report_slow_units=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(($(date +%s) - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  slowest=$(sed -n 's/^stat::slowest_unit_time_sec: *//p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ]; then
    result=ok
  elif grep -q 'ERROR: libFuzzer: timeout' "$log"; then
    result=timeout
  elif grep -q -E 'ERROR: libFuzzer: out-of-memory|ERROR: libFuzzer: malloc limit' "$log"; then
    result=oom
  else
    result=crash
  fi
  if [ -n "$slowest" ] && [ "$slowest" -ge 1 ]; then
    result="$result,slowest_unit=${slowest}s"
  fi
  printf '%-20s %12s %8s  %s\n' "$t" "${execs:-?}" "$elapsed" "$result"
  if [ "$rc" -ne 0 ]; then
    failed=1
    {
      grep -m 1 -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer" -A 2 "$log" | sed 's/^/    /'
      grep -E "Test unit written to" "$log" | sed 's/^/    /'
      echo "    log: fuzz/$log"
    } >&2
  fi
done
exit "$failed"
