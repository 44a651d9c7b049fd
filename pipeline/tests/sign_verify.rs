//! keygen, sign, attest and verify against a real registry (Debian's
//! docker-registry): verification succeeds for what was signed, and fails,
//! each with its own exit code, for every kind of tampering.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{docker, ok, pipeline, text};
use pipeline::cosign::storage::{self, Kind};
use pipeline::reference::Reference;
use pipeline::registry::Client;
use pipeline::registry::manifest::{self, Parsed};
use serde_json::{Value, json};
use test_support::registry::{Auth, Registry};
use test_support::{TempDir, require_docker, require_registry};

const PASSWORD: &str = "test-password";

/// Builds a tiny image, pushes it as `REG/name:tag`, returns `REG/name@digest`.
fn pushed(reg: &Registry, name: &str, tag: &str, content: &str) -> String {
    let dir = TempDir::new("sign-image");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY data.txt /data.txt\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("data.txt"), content).unwrap();
    let image = format!("{}/{name}:{tag}", reg.addr);
    docker(&["build", "-q", "-t", &image, dir.path().to_str().unwrap()]);
    let out = pipeline(&["push", "--image", &image], &[]);
    let reference = ok(&out, "push").trim().to_owned();
    docker(&["rmi", &image]);
    reference
}

fn keygen(dir: &Path, name: &str) -> (String, String) {
    let prefix = dir.join(name);
    let out = pipeline(
        &["keygen", "--output-key-prefix", prefix.to_str().unwrap()],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    ok(&out, "keygen");
    (
        prefix.with_extension("key").display().to_string(),
        prefix.with_extension("pub").display().to_string(),
    )
}

fn sign(image: &str, key: &str) {
    let out = pipeline(
        &["sign", "--image", image, "--key", key],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    ok(&out, "sign");
}

fn attest(image: &str, key: &str, kind: &str, predicate: &Value, dir: &Path) {
    let path = dir.join(format!("{kind}-{}.json", rand_suffix()));
    std::fs::write(&path, serde_json::to_vec(predicate).unwrap()).unwrap();
    let out = pipeline(
        &[
            "attest",
            "--image",
            image,
            "--key",
            key,
            "--type",
            kind,
            "--predicate",
            path.to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    ok(&out, "attest");
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Runs verify; returns its exit code and stderr.
fn verify(image: &str, public: &str, require: &str, policy: Option<&Path>) -> (i32, String) {
    let mut args = vec!["verify", "--image", image, "--key", public];
    if !require.is_empty() {
        args.extend(["--require", require]);
    }
    let p;
    if let Some(policy) = policy {
        p = policy.display().to_string();
        args.extend(["--policy", &p]);
    }
    let out = pipeline(&args, &[]);
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

fn client(image: &str) -> (Client, String) {
    let r = Reference::parse(image).unwrap();
    let digest = r.digest.clone().unwrap();
    (Client::new(&r, &[], None), digest)
}

/// Replaces the manifest under an image's .sig/.att tag by one whose layers
/// `edit` changed (bytes and annotations), as an attacker with push rights could.
fn tamper(image: &str, kind: Kind, edit: impl Fn(&mut Vec<u8>, &mut BTreeMap<String, String>)) {
    let (c, digest) = client(image);
    let mut entries = storage::read(&c, &digest, kind)
        .unwrap()
        .expect("something to tamper with");
    for e in &mut entries {
        edit(&mut e.bytes, &mut e.annotations);
    }
    let tag = storage::tag(&digest, kind);
    // Start from an empty tag: write the first entry over a fresh manifest,
    // then append the rest.
    let (bytes, ct, _) = c.manifest(&tag).unwrap();
    let Ok(Parsed::Image { config, .. }) = manifest::parse(&bytes, ct.as_deref()) else {
        panic!()
    };
    let mut layers = Vec::new();
    for e in &entries {
        let d = c.push_blob(&e.bytes, "tampered").unwrap();
        layers.push(json!({"mediaType": e.media_type, "size": e.bytes.len(), "digest": d, "annotations": e.annotations}));
    }
    let m = json!({"schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "size": config.size, "digest": config.digest}, "layers": layers});
    c.put_manifest(
        &tag,
        &serde_json::to_vec(&m).unwrap(),
        manifest::OCI_MANIFEST,
    )
    .unwrap();
}

fn grype_report(severity: &str) -> Value {
    json!({
        "matches": [{
            "vulnerability": {"id": "CVE-2024-0001", "dataSource": "", "severity": severity, "urls": [],
                "fix": {"versions": ["1.0.1"], "state": "fixed"}, "cvss": [], "advisories": []},
            "relatedVulnerabilities": [],
            "matchDetails": [],
            "artifact": {"id": "x", "name": "libexample", "version": "1.0.0", "type": "deb", "locations": [],
                "language": "", "licenses": [], "cpes": [], "purl": "pkg:deb/debian/libexample@1.0.0", "upstreams": []}
        }],
        "source": {"type": "image", "target": {}},
        "distro": {"name": "debian", "version": "12", "idLike": []},
        "descriptor": {"name": "grype", "version": "0.74.0"}
    })
}

#[test]
fn keygen_writes_a_protected_encrypted_key_and_needs_a_password() {
    let dir = TempDir::new("keygen");
    let (key, public) = keygen(dir.path(), "k");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    );
    assert!(
        std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    // No password set: refused, nothing overwritten.
    let out = pipeline(
        &[
            "keygen",
            "--output-key-prefix",
            dir.path().join("k2").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("COSIGN_PASSWORD"),
        "{}",
        text(&out.stderr)
    );
    let out = pipeline(
        &[
            "keygen",
            "--output-key-prefix",
            dir.path().join("k").to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", "x")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sign_then_verify_and_each_tampering_fails_with_its_reason() {
    require_docker!();
    let reg = require_registry!(Auth::None);
    let dir = TempDir::new("sign");
    let (key, public) = keygen(dir.path(), "signer");
    let (_other_key, other_public) = keygen(dir.path(), "other");
    let image = pushed(&reg, "team/app", "v1", "one");

    // By tag: refused.
    let out = pipeline(
        &[
            "sign",
            "--image",
            &format!("{}/team/app:v1", reg.addr),
            "--key",
            &key,
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("give the digest"),
        "{}",
        text(&out.stderr)
    );
    // Wrong password.
    let out = pipeline(
        &["sign", "--image", &image, "--key", &key],
        &[("COSIGN_PASSWORD", "nope")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("wrong password"),
        "{}",
        text(&out.stderr)
    );

    assert_eq!(verify(&image, &public, "", None).0, 10, "unsigned");
    sign(&image, &key);
    let (code, out) = verify(&image, &public, "", None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("signature: 1 valid"), "{out}");
    // By tag, it resolves to the same digest.
    assert_eq!(
        verify(&format!("{}/team/app:v1", reg.addr), &public, "", None).0,
        0
    );
    // Signing again is idempotent: signatures are deterministic (RFC 6979)
    // and an identical entry is not appended twice.
    sign(&image, &key);
    assert!(
        verify(&image, &public, "", None)
            .1
            .contains("signature: 1 valid")
    );

    // Another key.
    let (code, out) = verify(&image, &other_public, "", None);
    assert_eq!(code, 11, "{out}");
    assert!(out.contains("another key"), "{out}");

    // A missing attestation.
    let (code, out) = verify(&image, &public, "cyclonedx", None);
    assert_eq!(code, 14, "{out}");

    // Attestations: an SBOM, then verify requires it.
    let sbom =
        json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []});
    attest(&image, &key, "cyclonedx", &sbom, dir.path());
    let (code, out) = verify(&image, &public, "cyclonedx", None);
    assert_eq!(code, 0, "{out}");
    assert_eq!(verify(&image, &other_public, "", None).0, 11);

    // A tampered attestation: its statement altered under its signature.
    let image2 = pushed(&reg, "team/att", "v1", "att");
    sign(&image2, &key);
    attest(&image2, &key, "cyclonedx", &sbom, dir.path());
    tamper(&image2, Kind::Attestations, |bytes, _| {
        let mut env: Value = serde_json::from_slice(bytes).unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut st: Value =
            serde_json::from_slice(&b64.decode(env["payload"].as_str().unwrap()).unwrap()).unwrap();
        st["predicate"]["components"] = json!([{"type": "library", "name": "forged"}]);
        env["payload"] = json!(b64.encode(serde_json::to_vec(&st).unwrap()));
        *bytes = serde_json::to_vec(&env).unwrap();
    });
    let (code, out) = verify(&image2, &public, "cyclonedx", None);
    assert_eq!(code, 12, "{out}");

    // A tampered signature.
    let image3 = pushed(&reg, "team/sig", "v1", "sig");
    sign(&image3, &key);
    tamper(&image3, Kind::Signatures, |_, ann| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut sig = b64
            .decode(&ann["dev.cosignproject.cosign/signature"])
            .unwrap();
        let last = sig.len() - 1;
        sig[last] ^= 1;
        ann.insert("dev.cosignproject.cosign/signature".into(), b64.encode(sig));
    });
    let (code, out) = verify(&image3, &public, "", None);
    assert_eq!(code, 12, "{out}");
    assert!(out.contains("tampered"), "{out}");

    // A tampered payload: it now claims another digest, under the old signature.
    let image4 = pushed(&reg, "team/payload", "v1", "payload");
    sign(&image4, &key);
    tamper(&image4, Kind::Signatures, |bytes, _| {
        let text = String::from_utf8(bytes.clone()).unwrap();
        *bytes = text
            .replace("\"optional\":null", "\"optional\":{\"forged\":\"yes\"}")
            .into_bytes();
    });
    let (code, out) = verify(&image4, &public, "", None);
    assert_eq!(code, 12, "{out}");

    // Another image pushed under the same tag: unsigned...
    let replaced = pushed(&reg, "team/app", "v1", "two");
    assert_ne!(replaced, image);
    let (code, out) = verify(&format!("{}/team/app:v1", reg.addr), &public, "", None);
    assert_eq!(code, 10, "{out}");
    // ...and with the old signature copied over, a digest mismatch.
    let (c, old_digest) = client(&image);
    let (_, new_digest) = client(&replaced);
    let (bytes, _, _) = c
        .manifest(&storage::tag(&old_digest, Kind::Signatures))
        .unwrap();
    c.put_manifest(
        &storage::tag(&new_digest, Kind::Signatures),
        &bytes,
        manifest::OCI_MANIFEST,
    )
    .unwrap();
    let (code, out) = verify(&format!("{}/team/app:v1", reg.addr), &public, "", None);
    assert_eq!(code, 13, "{out}");
    assert!(out.contains(&old_digest), "{out}");
    // Naming the old digest and the tag together: they disagree.
    let (code, _) = verify(
        &format!("{}/team/app:v1@{old_digest}", reg.addr),
        &public,
        "",
        None,
    );
    assert_eq!(code, 13);
}

#[test]
fn a_scan_attestation_is_rechecked_against_the_current_policy() {
    require_docker!();
    let reg = require_registry!(Auth::None);
    let dir = TempDir::new("scan-att");
    let (key, public) = keygen(dir.path(), "k");
    let image = pushed(&reg, "team/scanned", "v1", "scanned");
    sign(&image, &key);
    // The raw Grype report is wrapped into cosign's vuln predicate.
    attest(&image, &key, "vuln", &grype_report("Medium"), dir.path());
    let lenient = dir.path().join("lenient.yaml");
    std::fs::write(&lenient, "fail_on: high\n").unwrap();
    let strict = dir.path().join("strict.yaml");
    std::fs::write(&strict, "fail_on: medium\n").unwrap();
    let (code, out) = verify(&image, &public, "vuln", Some(&lenient));
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&image, &public, "vuln", Some(&strict));
    assert_eq!(code, 15, "the same scan fails a stricter policy: {out}");
    assert!(
        out.contains("CVE-2024-0001") || out.contains("medium"),
        "{out}"
    );
    // Malformed predicates are refused before anything is stored.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"hello\": 1}").unwrap();
    let out = pipeline(
        &[
            "attest",
            "--image",
            &image,
            "--key",
            &key,
            "--type",
            "vuln",
            "--predicate",
            bad.to_str().unwrap(),
        ],
        &[("COSIGN_PASSWORD", PASSWORD)],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("neither a Grype JSON report"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn signatures_are_stored_as_cosign_stores_them() {
    require_docker!();
    let reg = require_registry!(Auth::None);
    let dir = TempDir::new("layout");
    let (key, _) = keygen(dir.path(), "k");
    let image = pushed(&reg, "team/layout", "v1", "layout");
    sign(&image, &key);
    let (c, digest) = client(&image);
    let tag = storage::tag(&digest, Kind::Signatures);
    assert!(tag.starts_with("sha256-") && tag.ends_with(".sig"));
    let (bytes, ct, _) = c.manifest(&tag).unwrap();
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["mediaType"], manifest::OCI_MANIFEST);
    assert_eq!(ct.as_deref(), Some(manifest::OCI_MANIFEST));
    let layer = &m["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(
        layer["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .unwrap()
            .len()
            > 40
    );
    let payload: Value = serde_json::from_slice(
        &c.blob_bytes(layer["digest"].as_str().unwrap(), 1 << 20, "payload")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        payload["critical"]["type"],
        "cosign container image signature"
    );
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        digest
    );
    assert_eq!(
        payload["critical"]["identity"]["docker-reference"],
        format!("{}/team/layout", reg.addr)
    );
}
