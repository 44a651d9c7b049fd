#!/usr/bin/env bash
# CI smoke: builds every fuzz target and runs each briefly (default 15 s,
# FUZZ_SMOKE_SECONDS), one after another on one core, under the memory and
# time bounds of common.sh. Fails when any target finds a crash, a timeout
# or an out-of-memory input, naming the saved input. Skips, saying so, when
# the nightly toolchain or cargo-fuzz is missing (with CI=true, a missing
# cargo-fuzz is installed first).
set -uo pipefail
source "$(dirname "$0")/common.sh"
secs=${FUZZ_SMOKE_SECONDS:-15}

fuzz_tools_ready
case $? in
  0) ;;
  1) exit 0 ;;
  *) echo "fuzz: cannot install cargo-fuzz" >&2; exit 1 ;;
esac
echo "fuzz: building every target"
fuzz_build || { echo "fuzz: the fuzz targets do not build" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in $(fuzz_targets); do
  run_target "$t" "$work/$t" -max_total_time="$secs"
  rc=$?
  found=$(findings "$work/$t")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log" | tail -1)
  if [ $rc -ne 0 ] || [ -n "$found" ]; then
    echo "fuzz: $t FAILED (exit $rc, ${execs:-?} runs)"
    tail -40 "$work/$t/log"
    for f in $found; do
      mkdir -p "$FUZZ_DIR/artifacts/$t" && cp "$f" "$FUZZ_DIR/artifacts/$t/"
      echo "  saved input: tests/fuzz/artifacts/$t/$(basename "$f")"
    done
    failed+=("$t")
  else
    echo "fuzz: $t ok (${execs:-?} runs in ${secs} s)"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]}; reproduce with: cargo +nightly fuzz run --fuzz-dir tests/fuzz -s none -a TARGET tests/fuzz/artifacts/TARGET/FILE" >&2
  exit 1
fi
echo "fuzz: every target ran ${secs} s without findings"
