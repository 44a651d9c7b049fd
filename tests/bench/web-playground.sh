#!/usr/bin/env bash
# The playground in headless Chromium (runner/tests/web_browser.rs): page
# weight, time to interactive against a plain HTML page of the same server
# loaded the same way, and the time from clicking Run to the verdict shown
# against the same program submitted through the API (`?wait=true`),
# interleaved so machine noise hits both alike. Prints medians and ratios.
#
#   tests/bench/web-playground.sh [RUNS]   (default 11; needs .ci/setup)
#   BENCH_PROFILE=debug reuses the test build instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=(--release)
[ "${BENCH_PROFILE:-release}" = debug ] && profile=()
BENCH_RUNS="${1:-11}" cargo test "${profile[@]}" -q -p runner --test web_browser people_sign_in >/dev/null
python3 - target/web-screenshots/figures.json <<'PY'
import json, statistics, sys
f = json.load(open(sys.argv[1]))
med = statistics.median
page, api = med(f["run_to_verdict_page_ms"]), med(f["run_to_verdict_api_ms"])
tti, plain = med(f["playground_tti_ms"]), med(f["plain_page_load_ms"])
print(f"playground weight: {f['playground_bytes']} bytes of bodies ({f['playground_transfer_bytes']} with headers), no cache")
print(f"time to interactive: median {tti:.0f} ms; plain HTML page load {plain:.0f} ms; ratio {tti / plain:.2f}")
print(f"click Run -> verdict shown: median {page:.0f} ms; same program via the API: {api:.0f} ms; ratio {page / api:.2f}"
      f" (n={len(f['run_to_verdict_page_ms'])})")
PY
