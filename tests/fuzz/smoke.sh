#!/usr/bin/env bash
# CI smoke: builds every fuzz target and runs each briefly (default 10 s,
# FUZZ_SMOKE_SECONDS), FUZZ_JOBS targets at a time (default: one per core),
# under the memory and time bounds of common.sh. Fails when any target finds
# a crash, a timeout or an out-of-memory input, naming the saved input.
# Built with the dev profile unless FUZZ_PROFILE says otherwise (see
# common.sh: minutes cold instead of half an hour). Skips, saying so, when
# the nightly toolchain or cargo-fuzz is missing (with CI=true, a missing
# cargo-fuzz is installed first).
set -uo pipefail
export FUZZ_PROFILE=${FUZZ_PROFILE:-dev}
source "$(dirname "$0")/common.sh"
secs=${FUZZ_SMOKE_SECONDS:-10}
jobs=${FUZZ_JOBS:-$(nproc)}

fuzz_tools_ready
case $? in
  0) ;;
  1) exit 0 ;;
  *) echo "fuzz: cannot install cargo-fuzz" >&2; exit 1 ;;
esac
echo "fuzz: building every target ($FUZZ_PROFILE profile)"
started=$SECONDS
fuzz_build || { echo "fuzz: the fuzz targets do not build" >&2; exit 1; }
echo "fuzz: built in $((SECONDS - started)) s; running each target ${secs} s, ${jobs} at a time"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mapfile -t targets < <(fuzz_targets)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets listed" >&2; exit 1; }

# One target: its exit code goes to WORK/TARGET/rc (jobs run in the background).
smoke_one() {
  local t=$1
  run_target "$t" "$work/$t" -max_total_time="$secs"
  echo $? >"$work/$t/rc"
}

running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  smoke_one "$t" &
  running=$((running + 1))
done
wait

failed=()
for t in "${targets[@]}"; do
  rc=$(cat "$work/$t/rc" 2>/dev/null || echo "?")
  found=$(findings "$work/$t")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/log" | tail -1)
  if [ "$rc" != 0 ] || [ -n "$found" ] || [ -z "$execs" ]; then
    echo "fuzz: $t FAILED (exit $rc, ${execs:-no} runs)"
    tail -40 "$work/$t/log"
    for f in $found; do
      mkdir -p "$FUZZ_DIR/artifacts/$t" && cp "$f" "$FUZZ_DIR/artifacts/$t/"
      echo "  saved input: tests/fuzz/artifacts/$t/$(basename "$f")"
    done
    failed+=("$t")
  else
    echo "fuzz: $t ok ($execs runs in ${secs} s)"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]}; reproduce with: cargo +nightly fuzz run --fuzz-dir tests/fuzz -s none -a --dev TARGET tests/fuzz/artifacts/TARGET/FILE" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${secs} s each without findings"
