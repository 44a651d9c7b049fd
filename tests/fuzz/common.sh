# Shared by smoke.sh, campaign.sh and cmin.sh: where things are, and how
# cargo-fuzz is called. Sourced, not run.
FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$FUZZ_DIR/../.." && pwd)
# No sanitizer: the code under test forbids `unsafe`, and without ASan's
# instrumentation each target runs 2-3x more inputs per second. Debug
# assertions (`-a`) keep integer-overflow checks on: an overflow is a bug.
# FUZZ_PROFILE=dev (the CI smoke) builds without optimisation and with many
# codegen units: a cold build of the whole dependency tree takes minutes
# instead of the half hour an optimised, one-codegen-unit build takes on 2
# cores, for ~3-10x fewer inputs per second, plenty for a smoke. The
# campaign keeps the optimised build (FUZZ_PROFILE=release, the default).
case "${FUZZ_PROFILE:-release}" in
  dev) FUZZ_PROFILE_FLAGS=(--dev) ;;
  release) FUZZ_PROFILE_FLAGS=(--release) ;;
  *) echo "fuzz: FUZZ_PROFILE must be dev or release, not ${FUZZ_PROFILE}" >&2; return 2 ;;
esac
FUZZ_FLAGS=(--fuzz-dir "$FUZZ_DIR" --sanitizer none --debug-assertions "${FUZZ_PROFILE_FLAGS[@]}")
# Every input runs under these bounds: more memory or time is a finding.
# One process on one core (libFuzzer's default; `-jobs=1` would fork a
# worker that logs to fuzz-0.log instead): the machine's cores are shared.
LIBFUZZER_LIMITS=(-rss_limit_mb=512 -timeout=10)

fuzz_targets() {
  (cd "$REPO" && cargo +nightly fuzz list "${FUZZ_FLAGS[@]:0:2}")
}

fuzz_build() {
  (cd "$REPO" && cargo +nightly fuzz build "${FUZZ_FLAGS[@]}")
}

# Whether cargo +nightly and cargo-fuzz can be used; with CI=true a missing
# cargo-fuzz is installed (nightly itself is not: CI images choose it).
fuzz_tools_ready() {
  if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: no nightly toolchain (cargo +nightly); libFuzzer needs one: rustup toolchain install nightly" >&2
    return 1
  fi
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
      echo "fuzz: installing cargo-fuzz (CI=true)" >&2
      cargo install cargo-fuzz --locked >&2 || return 2
    else
      echo "fuzz: SKIPPED: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
      return 1
    fi
  fi
  return 0
}

# run_target TARGET WORKDIR EXTRA_ARGS...: fuzzes TARGET, new inputs into
# WORKDIR/corpus (the committed corpus is read, never written), findings
# into WORKDIR/artifacts, libFuzzer's output into WORKDIR/log.
run_target() {
  local t=$1 work=$2
  shift 2
  mkdir -p "$work/corpus" "$work/artifacts" "$FUZZ_DIR/corpus/$t"
  if [ "${FUZZ_PREBUILT:-0}" = 1 ]; then
    # The binaries built last, as they are: a long campaign is not held up
    # (or its binaries swapped) by a rebuild after every source change.
    "$(fuzz_binary "$t")" "$work/corpus" "$FUZZ_DIR/corpus/$t" \
      "${LIBFUZZER_LIMITS[@]}" -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/" "$@" >"$work/log" 2>&1
    return
  fi
  (cd "$REPO" && cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" \
    "$work/corpus" "$FUZZ_DIR/corpus/$t" -- \
    "${LIBFUZZER_LIMITS[@]}" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$@") >"$work/log" 2>&1
}

# Where cargo-fuzz put TARGET's binary for FUZZ_PROFILE.
fuzz_binary() {
  local dir=release
  [ "${FUZZ_PROFILE:-release}" = dev ] && dir=debug
  echo "$FUZZ_DIR/target/$(rustc -vV | sed -n 's/^host: //p')/$dir/$1"
}

# Findings libFuzzer saved for a run.
findings() {
  find "$1/artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' -o -name 'slow-unit-*' \) 2>/dev/null | grep -v slow-unit || true
}
