#!/usr/bin/env bash
# Wall time and peak memory of `pipeline sbom docker:IMAGE` against the
# baseline `docker save IMAGE > /dev/null` (which the SBOM's engine source
# itself pays for), interleaved in one run so machine noise hits both alike.
# Prints medians and the ratio (target: at most 2x the time of docker save).
#
#   tests/bench/sbom-vs-docker-save.sh [IMAGE] [ITERATIONS]
#       IMAGE defaults to the runner's Python sandbox image.
#   tests/bench/sbom-vs-docker-save.sh --synthetic [ITERATIONS]
#       builds (once) an image of 100,000 small files in several layers, a
#       part of them deleted by later layers, and measures that instead:
#       peak memory must stay bounded by per-path metadata.
#
# Memory is the peak RSS of the measured process (`/usr/bin/time -f %M`):
# for docker save that is the CLI, not the daemon doing the export.
set -euo pipefail
cd "$(dirname "$0")/../.."

target="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p pipeline
pipeline="$target/release/pipeline"

synthetic_image() {
  local image=pipeline-bench/many-files:1
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    local ctx
    ctx=$(mktemp -d)
    cat >"$ctx/Dockerfile" <<'EOF'
FROM debian:bookworm-slim
# 40,000 + 40,000 + 20,000 files in three layers...
RUN mkdir -p /data/a && cd /data/a && i=0; while [ $i -lt 40000 ]; do echo $i > f$i; i=$((i+1)); done
RUN mkdir -p /data/b && cd /data/b && i=0; while [ $i -lt 40000 ]; do mkdir -p d$((i/100)); echo $i > d$((i/100))/f$i; i=$((i+1)); done
RUN mkdir -p /data/c/node_modules && cd /data/c && i=0; while [ $i -lt 20000 ]; do echo $i > f$i; i=$((i+1)); done \
 && i=0; while [ $i -lt 200 ]; do mkdir -p node_modules/p$i && echo "{\"name\":\"p$i\",\"version\":\"1.0.$i\"}" > node_modules/p$i/package.json; i=$((i+1)); done
# ...then some deleted: single files (whiteouts) and a whole directory tree.
RUN rm -f /data/a/f1* && rm -rf /data/b/d1* && rm -rf /data/c/node_modules/p1*
EOF
    docker build -q -t "$image" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
  echo "$image"
}

if [ "${1:-}" = "--synthetic" ]; then
  image=$(synthetic_image)
  n="${2:-5}"
else
  image="${1:-}"
  n="${2:-5}"
  if [ -z "$image" ]; then
    cargo build --release -q -p runner
    image=$("$target/release/runner" images list | awk '$1 == "python" { print $3 }')
  fi
fi
docker image inspect "$image" >/dev/null

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
measure() { # prints "seconds peak_kib"
  local f
  f=$(mktemp)
  /usr/bin/time -o "$f" -f '%e %M' "$@" >/dev/null 2>&1
  tail -1 "$f"
  rm -f "$f"
}

# One warm-up each: page cache, the engine's layer store.
"$pipeline" sbom "docker:$image" -o /dev/null 2>/dev/null
docker save "$image" >/dev/null

sbom_s=() sbom_kib=() save_s=() save_kib=()
for _ in $(seq "$n"); do
  read -r s k < <(measure "$pipeline" sbom "docker:$image" -o /dev/null)
  sbom_s+=("$s") sbom_kib+=("$k")
  read -r s k < <(measure docker save "$image")
  save_s+=("$s") save_kib+=("$k")
done

files=$("$pipeline" sbom "docker:$image" 2>/dev/null | grep -A1 '"pipeline:files"' | grep -o '[0-9]\+' | head -1)
size=$(docker image inspect -f '{{.Size}}' "$image")
ss=$(printf '%s\n' "${sbom_s[@]}" | median)
sk=$(printf '%s\n' "${sbom_kib[@]}" | median)
ds=$(printf '%s\n' "${save_s[@]}" | median)
dk=$(printf '%s\n' "${save_kib[@]}" | median)
echo "image:                      $image ($((size / 1000000)) MB, ${files:-?} paths in the final file system)"
echo "iterations:                 $n (interleaved, medians)"
echo "pipeline sbom docker:       ${ss} s, peak ${sk} KiB"
echo "docker save > /dev/null:    ${ds} s, peak ${dk} KiB"
awk -v a="$ss" -v b="$ds" 'BEGIN { if (b > 0) printf "ratio sbom/save (time):     %.2f (target <= 2)\n", a / b }'
