//! `pipeline sbom registry:` against a scripted registry that speaks the
//! parts of the distribution API Debian's registry cannot show here: Bearer
//! tokens from a token service, multi-platform indexes, gzip layers, and a
//! corrupted blob. (The real registry is used in `registry_push.rs`.)

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use common::{ok, pipeline, text};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn digest(b: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(b)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn layer(files: &[(&str, &str)]) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data.as_bytes()).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (tar, gz.finish().unwrap())
}

struct Image {
    manifest: Vec<u8>,
    blobs: Vec<Vec<u8>>,
}

/// One single-layer image whose only package is a Python distribution
/// named `name`.
fn image(arch: &str, name: &str) -> Image {
    let (tar, gz) = layer(&[
        ("etc/os-release", "ID=debian\nVERSION_ID=12\n"),
        (
            &format!("usr/lib/python3/dist-packages/{name}-1.0.dist-info/METADATA"),
            &format!("Name: {name}\nVersion: 1.0\n"),
        ),
    ]);
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","created":"2024-05-06T07:08:09Z","config":{{"Labels":{{"org.opencontainers.image.revision":"abc123"}}}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        digest(&tar)
    )
    .into_bytes();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        digest(&config),
        config.len(),
        digest(&gz),
        gz.len()
    )
    .into_bytes();
    Image {
        manifest,
        blobs: vec![config, gz],
    }
}

/// Path → (content type, body).
type Paths = HashMap<String, (String, Vec<u8>)>;
type Content = Arc<Mutex<Paths>>;

/// The scripted registry: manifests and blobs by path, behind a Bearer
/// token that the token service gives to alice:wonderland only.
struct Fake {
    addr: String,
    content: Content,
}

const TOKEN: &str = "tok-123";

fn respond(s: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

fn serve(mut s: TcpStream, addr: &str, content: &Mutex<Paths>) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut auth = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("authorization:") {
            auth = line[line.len() - v.len()..].trim().to_owned();
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
    if path.starts_with("/token") {
        // base64("alice:wonderland")
        if auth == "Basic YWxpY2U6d29uZGVybGFuZA=="
            && path.contains("scope=repository%3Aapp%3Apull")
        {
            respond(
                &mut s,
                "200 OK",
                &[],
                format!(r#"{{"token":"{TOKEN}"}}"#).as_bytes(),
            );
        } else {
            respond(&mut s, "401 Unauthorized", &[], b"{}");
        }
        return;
    }
    if auth != format!("Bearer {TOKEN}") {
        respond(
            &mut s,
            "401 Unauthorized",
            &[(
                "WWW-Authenticate",
                format!(
                    r#"Bearer realm="http://{addr}/token",service="fake",scope="repository:app:pull""#
                ),
            )],
            br#"{"errors":[{"code":"UNAUTHORIZED"}]}"#,
        );
        return;
    }
    match content.lock().unwrap().get(&path) {
        Some((ct, body)) => respond(&mut s, "200 OK", &[("Content-Type", ct.clone())], body),
        None => respond(&mut s, "404 Not Found", &[], b"{}"),
    }
}

impl Fake {
    fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let content: Content = Arc::default();
        let (a, c) = (addr.clone(), Arc::clone(&content));
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let (a, c) = (a.clone(), Arc::clone(&c));
                std::thread::spawn(move || serve(s, &a, &c));
            }
        });
        Fake { addr, content }
    }

    fn put(&self, path: &str, content_type: &str, body: Vec<u8>) {
        self.content
            .lock()
            .unwrap()
            .insert(path.to_owned(), (content_type.to_owned(), body));
    }

    /// Publishes a two-platform index as `app:v1`; returns the amd64 and
    /// arm64 manifest digests.
    fn publish(&self) -> (String, String) {
        let mut digests = Vec::new();
        let mut entries = Vec::new();
        for (arch, name) in [("amd64", "onamd"), ("arm64", "onarm")] {
            let img = image(arch, name);
            for b in &img.blobs {
                self.put(
                    &format!("/v2/app/blobs/{}", digest(b)),
                    "application/octet-stream",
                    b.clone(),
                );
            }
            let d = digest(&img.manifest);
            entries.push(format!(
                r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                img.manifest.len()
            ));
            self.put(
                &format!("/v2/app/manifests/{d}"),
                "application/vnd.oci.image.manifest.v1+json",
                img.manifest,
            );
            digests.push(d);
        }
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}}"#,
            entries.join(",")
        );
        self.put(
            "/v2/app/manifests/v1",
            "application/vnd.oci.image.index.v1+json",
            index.into_bytes(),
        );
        (digests.remove(0), digests.remove(0))
    }
}

const CREDS: [(&str, &str); 2] = [
    ("PIPELINE_REGISTRY_USER", "alice"),
    ("PIPELINE_REGISTRY_PASSWORD", "wonderland"),
];

fn pypi(sbom: &Value) -> Vec<String> {
    sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .filter(|p| p.starts_with("pkg:pypi/"))
        .map(str::to_owned)
        .collect()
}

fn property<'a>(sbom: &'a Value, name: &str) -> Option<&'a str> {
    sbom["metadata"]["component"]["properties"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["value"]
        .as_str()
}

#[test]
fn bearer_tokens_indexes_and_platforms() {
    let fake = Fake::start();
    let (amd64, arm64) = fake.publish();
    let src = format!("registry:{}/app:v1", fake.addr);
    for (platform, manifest, package) in [
        ("linux/amd64", &amd64, "pkg:pypi/onamd@1.0"),
        ("linux/arm64", &arm64, "pkg:pypi/onarm@1.0"),
    ] {
        let out = pipeline(&["sbom", &src, "--platform", platform], &CREDS);
        let sbom: Value = serde_json::from_str(&ok(&out, "sbom via a token")).unwrap();
        assert_eq!(pypi(&sbom), [package]);
        assert_eq!(
            property(&sbom, "pipeline:image:manifestDigest"),
            Some(manifest.as_str())
        );
        assert_eq!(property(&sbom, "pipeline:image:revision"), Some("abc123"));
        assert_eq!(sbom["metadata"]["timestamp"], "2024-05-06T07:08:09Z");
    }
}

#[test]
fn refused_credentials_are_an_input_error_without_the_password() {
    let fake = Fake::start();
    fake.publish();
    let src = format!("registry:{}/app:v1", fake.addr);
    let out = pipeline(
        &["sbom", &src],
        &[
            ("PIPELINE_REGISTRY_USER", "alice"),
            ("PIPELINE_REGISTRY_PASSWORD", "not-the-password-xyz"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("refused"), "{all}");
    assert!(all.contains("alice"), "{all}");
    assert!(!all.contains("not-the-password-xyz"), "{all}");
    let out = pipeline(&["sbom", &src], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_corrupted_blob_fails_the_digest_check() {
    let fake = Fake::start();
    let (amd64, _) = fake.publish();
    // Swap the amd64 layer for different bytes under the same digest.
    let manifest: Value = {
        let c = fake.content.lock().unwrap();
        serde_json::from_slice(&c[&format!("/v2/app/manifests/{amd64}")].1).unwrap()
    };
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let (_, other) = layer(&[("etc/os-release", "ID=evil\n")]);
    fake.put(
        &format!("/v2/app/blobs/{layer_digest}"),
        "application/octet-stream",
        other,
    );
    let out = pipeline(
        &["sbom", &format!("registry:{}/app@{amd64}", fake.addr)],
        &CREDS,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("tampered"),
        "{}",
        text(&out.stderr)
    );
    // A manifest fetched by a digest it does not have is refused too.
    let wrong = format!("sha256:{}", "0".repeat(64));
    fake.put(
        &format!("/v2/app/manifests/{wrong}"),
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().into_bytes(),
    );
    let out = pipeline(
        &["sbom", &format!("registry:{}/app@{wrong}", fake.addr)],
        &CREDS,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = pipeline(
        &["sbom", &format!("registry:{}/app:nope", fake.addr)],
        &CREDS,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not found"));
}

#[test]
fn unreachable_registries_are_infrastructure_errors() {
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = pipeline(&["sbom", &format!("registry:127.0.0.1:{port}/app:v1")], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
}
