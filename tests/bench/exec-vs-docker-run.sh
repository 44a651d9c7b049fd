#!/usr/bin/env bash
# Median wall time of `runner exec` (Python hello world) against the baseline
# `docker run --rm` of the same image under the same limits, interleaved in one
# run so machine noise hits both alike. Prints both medians and their ratio.
#
#   tests/bench/exec-vs-docker-run.sh [ITERATIONS]   (default 21)
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-21}"

cargo build --release -q -p runner
runner=target/release/runner
$runner images build -l python >/dev/null
image=$($runner images list | awk '$1 == "python" { print $3 }')
hello=tests/programs/hello.py

# The baseline: the flags runner gives a sandbox container, by hand. runner
# leases each sandbox a uid of its own ([container] uids); the baseline takes
# the range's first. Docker's CLI cannot add masked paths (runner masks
# /proc/config.gz and /proc/loadavg too): a bind mount each, no measurable cost.
baseline=(docker run --rm --network none --read-only --cap-drop ALL
  --security-opt no-new-privileges --security-opt seccomp=policies/seccomp/sandbox.json
  --user 10001:10001 --memory 128m --memory-swap 128m --cpus 1 --pids-limit 64
  --tmpfs /work:rw,exec,nosuid,nodev,size=64m,uid=10001,gid=10001,mode=0700
  --tmpfs /tmp:rw,noexec,nosuid,nodev,size=16m --shm-size 8m --log-driver none
  -w /work --entrypoint python3 "$image" -c 'print("Hello from the sandbox")')

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# One warm-up each: page cache, image layers.
$runner exec -l python -f "$hello" >/dev/null
"${baseline[@]}" >/dev/null

runner_ms=() docker_ms=()
for _ in $(seq "$n"); do
  t=$(date +%s%N); $runner exec -l python -f "$hello" >/dev/null; runner_ms+=("$(ms "$t")")
  t=$(date +%s%N); "${baseline[@]}" >/dev/null; docker_ms+=("$(ms "$t")")
done

r=$(printf '%s\n' "${runner_ms[@]}" | median)
d=$(printf '%s\n' "${docker_ms[@]}" | median)
echo "iterations:              $n (interleaved)"
echo "runner exec median:      ${r} ms"
echo "docker run --rm median:  ${d} ms"
awk -v r="$r" -v d="$d" 'BEGIN { printf "ratio runner/docker:     %.2f\n", r / d }'
left=$(docker ps -aq --filter label=io.runner.managed=true | wc -l)
echo "sandbox containers left: $left"
