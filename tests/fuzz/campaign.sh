#!/usr/bin/env bash
# The long campaign: each target in turn for FUZZ_SECONDS (default 120) or
# FUZZ_RUNS inputs, growing its corpus in tests/fuzz/corpus-work/<target>
# (not committed; tests/fuzz/cmin.sh folds it back into corpus/), then a
# table per target: inputs run, their rate, corpus size, coverage (libFuzzer's
# `cov:` edges and `ft:` features at the end) and findings.
#   tests/fuzz/campaign.sh [TARGET...]
# FUZZ_PREBUILT=1 runs the binaries already built (fuzz_build) as they are.
set -uo pipefail
source "$(dirname "$0")/common.sh"
fuzz_tools_ready || exit 1
secs=${FUZZ_SECONDS:-120}
limit=(-max_total_time="$secs")
# FUZZ_RUNS: that many inputs, within FUZZ_SECONDS when it is given (an hour otherwise).
[ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS" -max_total_time="${FUZZ_SECONDS:-3600}")
# FUZZ_PREBUILT=1: the binaries built last (see run_target), no build.
[ "${FUZZ_PREBUILT:-0}" = 1 ] || fuzz_build || exit 1
out=$FUZZ_DIR/corpus-work
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(fuzz_targets)
rows=()
for t in "${targets[@]}"; do
  rm -rf "$out/$t/artifacts"
  run_target "$t" "$out/$t" "${limit[@]}"
  log=$out/$t/log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  files=$(find "$out/$t/corpus" "$FUZZ_DIR/corpus/$t" -type f | xargs -r sha1sum | cut -d' ' -f1 | sort -u | wc -l)
  bytes=$(find "$out/$t/corpus" "$FUZZ_DIR/corpus/$t" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  found=$(findings "$out/$t" | wc -l)
  row=$(printf '| %s | %s | %s | %s (%s KiB) | %s | %s | %s |' "$t" "${execs:-?}" "${rate:-?}" "$files" "$((bytes / 1024))" "${cov:-?}" "${ft:-?}" "$found")
  rows+=("$row")
  echo "$row"
done
echo
echo "Campaign: ${FUZZ_RUNS:+$FUZZ_RUNS runs}${FUZZ_RUNS:-$secs s} per target, $(date -u +%F), commit $(git -C "$REPO" rev-parse --short HEAD)"
echo
echo "| target | executions | exec/s | corpus (files) | cov (edges) | ft | findings |"
echo "|---|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
