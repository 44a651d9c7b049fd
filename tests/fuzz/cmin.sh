#!/usr/bin/env bash
# Folds inputs into the committed corpora and minimises them with
# `cargo fuzz cmin`: tests/fuzz/cmin.sh [DIR] adds DIR/<target>/* (seeds.sh
# output) to corpus/<target>/, keeping only inputs that add coverage. With
# FOLD_CAMPAIGN=1 it adds corpus-work/<target>/corpus/* (campaign output)
# too; the committed corpora stay seeds (a few hundred KiB in all), the
# grown ones are for local campaigns.
set -euo pipefail
source "$(dirname "$0")/common.sh"
fuzz_tools_ready || exit 1
extra=${1:-}
fuzz_build
for t in $(fuzz_targets); do
  dst=$FUZZ_DIR/corpus/$t
  mkdir -p "$dst"
  srcs=()
  [ -n "$extra" ] && srcs+=("$extra/$t")
  [ "${FOLD_CAMPAIGN:-0}" = 1 ] && srcs+=("$FUZZ_DIR/corpus-work/$t/corpus")
  for src in "${srcs[@]}"; do
    [ -d "$src" ] && find "$src" -maxdepth 1 -type f -exec cp -n {} "$dst/" \;
  done
  [ -n "$(ls -A "$dst")" ] || continue
  (cd "$REPO" && cargo +nightly fuzz cmin "${FUZZ_FLAGS[@]}" "$t" "$dst" -- -rss_limit_mb=512 -timeout=10) >/dev/null 2>&1 \
    || echo "cmin: $t failed (an input crashes? run campaign.sh $t)" >&2
  echo "$t: $(ls "$dst" | wc -l) inputs, $(du -sk "$dst" | cut -f1) KiB"
done
