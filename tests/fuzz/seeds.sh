#!/usr/bin/env bash
# Builds raw seed inputs for the fuzz targets from the repository's own
# fixtures and policies (and ../shared/fixtures when present: real files
# Syft, Grype and OpenVEX tools produced), into DIR/<target>/.
# Minimise them into tests/fuzz/corpus/<target>/ with:
#   tests/fuzz/seeds.sh /tmp/seeds && tests/fuzz/cmin.sh /tmp/seeds
# Targets whose input is structured (arbitrary) start from no seeds.
set -euo pipefail
out=${1:?usage: seeds.sh DIR}
root=$(cd "$(dirname "$0")/../.." && pwd)
shared=${SHARED_FIXTURES:-$root/../shared/fixtures}
[ -d "$shared" ] || shared=/work/shared/fixtures
mkdir -p "$out"

# seed TARGET [PREFIX_BYTE_OCTAL] < content; named by its hash (seeds are
# often written from subshells, which cannot share a counter).
seed() {
  local t=$1 prefix=${2:-} tmp
  mkdir -p "$out/$t"
  tmp=$(mktemp "$out/$t/.new.XXXXXX")
  if [ -n "$prefix" ]; then
    { printf "\\$prefix"; cat; } > "$tmp"
  else
    cat > "$tmp"
  fi
  mv "$tmp" "$out/$t/$(sha1sum < "$tmp" | cut -c1-16)"
}
# each TARGET PREFIX FILES...: one seed per existing file
each() {
  local t=$1 prefix=$2
  shift 2
  for f in "$@"; do
    [ -f "$f" ] && seed "$t" "$prefix" < "$f"
  done
  return 0
}

syft=$shared/syft
# The first byte picks the path (bit 0: status.d) and the ending (bit 1: cut).
for p in 000 002; do
  each dpkg_status $p "$syft"/debian/testdata/image-dpkg/var/lib/dpkg/status
  each dpkg_status $((p + 1)) "$syft"/debian/testdata/var/lib/dpkg/status.d/* \
    "$syft"/debian/testdata/image-distroless-deb/var/lib/dpkg/status.d/libsqlite3-0
  each apk_installed $p "$syft"/alpine/testdata/*/lib/apk/db/installed
done
each dpkg_copyright "" "$syft"/debian/testdata/*/usr/share/doc/*/copyright
each os_release "" "$syft"/debian/testdata/image-dpkg/etc/os-release /etc/os-release
each npm_package "" $(find "$root/pipeline/tests/fixtures" -name package.json)
each grype_report "" "$shared"/grype/*.json "$root"/pipeline/tests/fixtures/scan/report-*.json
each openvex "" "$shared"/openvex/*.json "$root"/pipeline/tests/fixtures/scan/vex-*.json
each scan_policy "" "$root/policies/scan.yaml" "$shared/grype/grype-ignore-config.yaml"
each sandbox_policy "" "$root/policies/sandbox.toml"
each kubernetes_policy "" "$root/policies/kubernetes/job-namespace.toml"
each workflow_policy "" "$root/policies/workflows.toml"
each environments_policy "" "$root/policies/environments.toml"
each workflow_yaml 000 "$root"/.github/workflows/*.yml
each workflow_yaml 001 "$root"/.github/workflows/*.yml

seed python_metadata 000 <<'EOF'
Metadata-Version: 2.1
Name: requests
Version: 2.31.0
Summary: Python HTTP for Humans.
License: Apache 2.0
Classifier: License :: OSI Approved :: Apache Software License
Requires-Dist: idna (<4,>=2.5)

Body text.
EOF
seed python_metadata 001 <<'EOF'
Metadata-Version: 1.2
Name: six
Version: 1.16.0
License: MIT
EOF

# Layers as registries serve them: a tar of package databases, with a
# whiteout and an opaque directory, plain and gzipped.
layer=$(mktemp -d)
trap 'rm -rf "$layer"' EXIT
mkdir -p "$layer/fs/var/lib/dpkg" "$layer/fs/etc" "$layer/fs/lib/apk/db" "$layer/fs/opt/.wh..wh..opq"
cp "$syft"/debian/testdata/image-dpkg/var/lib/dpkg/status "$layer/fs/var/lib/dpkg/" 2>/dev/null || echo 'Package: a' > "$layer/fs/var/lib/dpkg/status"
printf 'ID=debian\nVERSION_ID="12"\n' > "$layer/fs/etc/os-release"
: > "$layer/fs/etc/.wh.shadow"
ln -s ../../etc/os-release "$layer/fs/lib/apk/db/link"
tar --sort=name --owner=0 --group=0 --mtime=@0 -C "$layer/fs" -cf "$layer/layer.tar" .
seed layer_stream < "$layer/layer.tar"
gzip -9n < "$layer/layer.tar" | seed layer_stream

# Go build information, from a Go binary on this machine when there is one;
# elf_scan inputs start with 4 control bytes (size error 0, reads of 4096).
for bin in /usr/bin/docker-registry /usr/bin/dockerd /usr/bin/containerd; do
  if [ -f "$bin" ]; then
    off=$(LC_ALL=C grep -obUaP '\xff Go buildinf:' "$bin" | head -1 | cut -d: -f1 || true)
    if [ -n "$off" ]; then
      tail -c +$((off + 1)) "$bin" | head -c 8192 | seed go_buildinfo || true
      { printf '\0\0\0\020'; head -c 4096 "$bin"; } | seed elf_scan || true
      break
    fi
  fi
done
{ printf '\0\0\0\020'; head -c 2048 /bin/true; } | seed elf_scan || true

seed cargo_auditable 001 <<'EOF'
{"packages":[{"name":"serde","version":"1.0.200","source":"crates.io","dependencies":[1]},{"name":"app","version":"0.1.0","source":"local","root":true}]}
EOF

for m in \
  '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":1,"platform":{"os":"linux","architecture":"amd64"}},{"digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":2,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},{"digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","size":3,"platform":{"os":"unknown","architecture":"unknown"},"annotations":{"vnd.docker.reference.type":"attestation-manifest"}}]}' \
  '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd","size":5},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee","size":9}]}' \
  '{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Labels":{"org.opencontainers.image.revision":"abc"}},"rootfs":{"type":"layers","diff_ids":["sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"]}}'; do
  printf '%s' "$m" | seed oci_manifest 000
done
for h in 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"' 'Basic realm="Registry Realm"'; do
  printf '%s' "$h" | seed registry_challenge
done
for r in alpine 127.0.0.1:5000/team/app:v1 'ghcr.io/o/r@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' 'localhost:5000/a/b:t@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'; do
  printf '%s' "$r" | seed image_reference
done
for c in '{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0"},"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}' \
  '{"credHelpers":{"ghcr.io":"pass"},"credsStore":"desktop"}'; do
  printf '%s' "$c" | seed docker_config 000
  printf '%s' "$c" | seed docker_config 001
done
for b in '{"language":"python","version":"3","files":[{"name":"main.py","content":"print(1)"}],"stdin":"x","args":["a"],"limits":{}}' \
  '{"language":"c","files":[{"name":"a.c","content":"aGk=","encoding":"base64"},{"name":"d/b.h","content":"6869","encoding":"hex"}]}' \
  '{"language":"python","version":"*","files":[{"content":"print(1)"}],"run_timeout":3000,"compile_memory_limit":-1}'; do
  printf '%s' "$b" | seed api_submit_run
done
hdr='{"version":1,"language":"python","language_version":"3.11","files":[{"name":"main.py","bytes":8}],"stdin_bytes":1,"args":[],"compile":{"wall_time_ms":1,"cpu_time_ms":1,"memory_bytes":1048576,"pids":8,"stdout_max_bytes":1,"stderr_max_bytes":1},"run":{"wall_time_ms":1,"cpu_time_ms":1,"memory_bytes":1048576,"pids":8,"stdout_max_bytes":1,"stderr_max_bytes":1}}'
python3 - "$hdr" <<'EOF' | seed job_spec
import struct, sys
h = sys.argv[1].encode()
sys.stdout.buffer.write(b"RJS\0" + struct.pack(">I", len(h)) + h + b"print(1)" + b"x")
EOF
echo "seeds in $out: $(find "$out" -type f | wc -l) files"
