//! `pipeline sbom docker-archive:` on hostile and broken inputs: every
//! problem is a warning (stderr, `--json`, and the SBOM's properties), the
//! rest of the image is still described, and nothing crashes or hangs.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{ok, pipeline, text};
use serde_json::Value;
use sha2::{Digest, Sha256};
use test_support::TempDir;

fn digest(b: &[u8]) -> String {
    let h = Sha256::digest(b);
    format!(
        "sha256:{}",
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// A tar entry with a raw name (the tar crate refuses `..` and absolute
/// names when writing, as it should; images may still hold them).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    name: &[u8],
    kind: tar::EntryType,
    link: &[u8],
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    raw_entry(b, name.as_bytes(), tar::EntryType::Regular, b"", data);
}

/// A `docker save` archive (legacy layout) of `layers`.
fn save_archive(layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05Z","config":{{}},"rootfs":{{"type":"layers","diff_ids":{}}}}}"#,
        serde_json::to_string(&diff_ids).unwrap()
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let p = format!("{i:064x}/layer.tar");
        file(&mut b, &p, l);
        paths.push(p);
    }
    let cfg = format!("{}.json", &digest(config.as_bytes())[7..]);
    file(&mut b, &cfg, config.as_bytes());
    file(
        &mut b,
        "manifest.json",
        format!(
            r#"[{{"Config":"{cfg}","RepoTags":["hostile:1"],"Layers":{}}}]"#,
            serde_json::to_string(&paths).unwrap()
        )
        .as_bytes(),
    );
    b.into_inner().unwrap()
}

#[test]
fn broken_metadata_gives_warnings_and_a_partial_result() {
    let mut l0 = tar::Builder::new(Vec::new());
    file(&mut l0, "etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
    // A status file whose last stanza has no final newline: the end of the
    // file ends it, and its package is listed (as dpkg and Syft read it).
    file(
        &mut l0,
        "var/lib/dpkg/status",
        b"Package: good\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\nPackage: last\nStatus: install ok installed\nVersion: 2.0-1+b1",
    );
    // Bad UTF-8 in a METADATA file: still a package, with a warning.
    file(
        &mut l0,
        "usr/lib/python3/dist-packages/odd-1.0.dist-info/METADATA",
        b"Metadata-Version: 2.1\nName: odd\nVersion: 1.0\nSummary: caf\xe9\n",
    );
    // Larger than what is read from a package.json.
    let huge = format!(
        "{{\"name\":\"huge\",\"version\":\"1.0.0\",\"description\":\"{}\"}}",
        "x".repeat(5 << 20)
    );
    file(
        &mut l0,
        "app/node_modules/huge/package.json",
        huge.as_bytes(),
    );
    file(
        &mut l0,
        "app/node_modules/fine/package.json",
        br#"{"name":"fine","version":"2.0.0"}"#,
    );
    // A symlink loop where the copyright file of `good` would be.
    raw_entry(
        &mut l0,
        b"usr/share/doc/good",
        tar::EntryType::Symlink,
        b"../doc/good",
        b"",
    );
    // Escapes and absolute paths.
    raw_entry(
        &mut l0,
        b"../../etc/evil",
        tar::EntryType::Regular,
        b"",
        b"x",
    );
    raw_entry(&mut l0, b"/abs/evil", tar::EntryType::Regular, b"", b"x");
    let l0 = l0.into_inner().unwrap();
    // A layer that ends in the middle of a header.
    let mut l1 = tar::Builder::new(Vec::new());
    file(
        &mut l1,
        "app/node_modules/late/package.json",
        br#"{"name":"late","version":"3.0.0"}"#,
    );
    file(&mut l1, "never/read", &[0u8; 2048]);
    let mut l1 = l1.into_inner().unwrap();
    l1.truncate(1024 + 200);
    let archive = save_archive(&[l0, l1]);
    let dir = TempDir::new("pipeline-hostile");
    let path = dir.path().join("hostile.tar");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&archive)
        .unwrap();
    let sbom_path = dir.path().join("sbom.json");
    let start = Instant::now();
    let out = pipeline(
        &[
            "sbom",
            &format!("docker-archive:{}", path.display()),
            "-o",
            sbom_path.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(start.elapsed() < Duration::from_secs(60), "took too long");
    let summary: Value = serde_json::from_str(&ok(&out, "sbom of a hostile archive")).unwrap();
    let stderr = text(&out.stderr);
    let warnings: Vec<&str> = summary["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    for expected in [
        "truncated",
        "UTF-8",
        "bytes read from such a file",
        "symbolic links",
        "`..`",
        "absolute path",
        "malformed or truncated",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(expected)),
            "no warning about {expected:?} in {warnings:#?}"
        );
        assert!(
            stderr.contains(expected),
            "stderr lacks {expected:?}: {stderr}"
        );
    }
    let sbom: Value = serde_json::from_slice(&std::fs::read(&sbom_path).unwrap()).unwrap();
    let recorded: Vec<&str> = sbom["properties"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "pipeline:warning")
        .map(|p| p["value"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, warnings, "the SBOM records the same warnings");
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/good@1.0?arch=amd64&distro=debian-12",
            "pkg:deb/debian/last@2.0-1%2Bb1?distro=debian-12",
            "pkg:pypi/odd@1.0",
            "pkg:npm/fine@2.0.0",
            "pkg:npm/late@3.0.0",
        ]
    );
}

#[test]
fn archives_that_are_not_images_are_input_errors() {
    let dir = TempDir::new("pipeline-notimage");
    let path = dir.path().join("x.tar");
    std::fs::write(
        &path,
        b"this is not a tar archive, just text that goes on for a while",
    )
    .unwrap();
    let out = pipeline(
        &["sbom", &format!("docker-archive:{}", path.display())],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = pipeline(&["sbom", "docker-archive:/nonexistent/x.tar"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot open"),
        "{}",
        text(&out.stderr)
    );
    let out = pipeline(&["sbom", "nonsense"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("docker:IMAGE"));
}
