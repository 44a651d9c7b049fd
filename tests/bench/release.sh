#!/usr/bin/env bash
# The release measurements, each against its baseline in the same run:
#   - a 3-replica rolling deploy on the Docker target under a steady load
#     (and the requests that failed during it) vs one hardened `docker run -d`
#     of the same image until it answers its health check, interleaved;
#   - verification before a deploy (every check of an environment) vs one
#     manifest fetch from the same local registry.
# Medians. What is timed is Docker, HAProxy and the registry, so the test
# profile (dependencies optimized, see Cargo.toml) is used.
#
#   tests/bench/release.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/../.."
export BENCH_ROUNDS="${1:-5}"
cargo test -q -p pipeline --test bench_release -- --ignored --nocapture --test-threads 1 2>&1 \
  | grep -o 'BENCH .*' | sed 's/^BENCH //'
