//! `pipeline push` to a real registry (Debian's docker-registry), with and
//! without htpasswd authentication, and `pipeline sbom registry:` reading
//! back what was pushed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{docker, git, ok, pipeline, text};
use serde_json::Value;
use test_support::registry::Auth;
use test_support::{TempDir, require_docker, require_registry};

/// A tiny image built from scratch, tagged for `registry`; returns its tag.
fn tiny_image(registry: &str, name: &str, content: &str) -> String {
    let dir = TempDir::new("pipeline-push");
    let d = dir.path();
    std::fs::write(d.join("Dockerfile"), "FROM scratch\nCOPY . /data/\n").unwrap();
    std::fs::write(d.join("content.txt"), content).unwrap();
    std::fs::create_dir_all(d.join("app/node_modules/tiny")).unwrap();
    std::fs::write(
        d.join("app/node_modules/tiny/package.json"),
        r#"{"name":"tiny","version":"1.2.3","license":"MIT"}"#,
    )
    .unwrap();
    git(d, &["init", "-q", "-b", "main"]);
    git(d, &["add", "-A"]);
    git(d, &["commit", "-q", "-m", "x"]);
    let out = pipeline(
        &[
            "build",
            "--context",
            d.to_str().unwrap(),
            "--image",
            &format!("{registry}/{name}"),
            "--json",
        ],
        &[],
    );
    let json: Value = serde_json::from_str(&ok(&out, "build")).unwrap();
    json["image"].as_str().unwrap().to_owned()
}

/// The digest the registry serves for `repo:tag` (Docker-Content-Digest).
fn served_digest(addr: &str, repo: &str, tag: &str, basic: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = basic.map_or(String::new(), |b| format!("Authorization: Basic {b}\r\n"));
    write!(
        s,
        "HEAD /v2/{repo}/manifests/{tag} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/vnd.docker.distribution.manifest.v2+json\r\n{auth}\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("docker-content-digest:")
                .map(|d| d.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no digest in {reply}"))
}

#[test]
fn push_without_auth_prints_the_manifest_digest() {
    require_docker!();
    let reg = require_registry!(Auth::None);
    let image = tiny_image(&reg.addr, "open/app", "open\n");
    let tag = image.rsplit_once(':').unwrap().1.to_owned();
    let out = pipeline(&["push", "--image", &image, "--json"], &[]);
    let json: Value = serde_json::from_str(&ok(&out, "push")).unwrap();
    let digest = json["digest"].as_str().unwrap();
    assert_eq!(digest, served_digest(&reg.addr, "open/app", &tag, None));
    assert_eq!(json["reference"], format!("{}/open/app@{digest}", reg.addr));
    // Plain output: the reference by digest.
    let out = pipeline(&["push", "--image", &image], &[]);
    assert_eq!(
        ok(&out, "push").trim(),
        format!("{}/open/app@{digest}", reg.addr)
    );
    // Read back from the registry without the engine.
    let out = pipeline(
        &["sbom", &format!("registry:{}/open/app@{digest}", reg.addr)],
        &[],
    );
    let sbom: Value = serde_json::from_str(&ok(&out, "sbom registry:")).unwrap();
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert_eq!(purls, ["pkg:npm/tiny@1.2.3"]);
    // Pushing requires a tag, and an image the engine has.
    let out = pipeline(&["push", "--image", &format!("{}/open/app", reg.addr)], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = pipeline(
        &["push", "--image", &format!("{}/open/none:1", reg.addr)],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no image"),
        "{}",
        text(&out.stderr)
    );
    docker(&["rmi", &image]);
}

#[test]
fn push_with_htpasswd_auth() {
    require_docker!();
    let password = "correct-horse-battery";
    let reg = require_registry!(Auth::Htpasswd {
        user: "alice".into(),
        password: password.into(),
    });
    let image = tiny_image(&reg.addr, "private/app", "private\n");
    let tag = image.rsplit_once(':').unwrap().1.to_owned();

    // No credentials at all.
    let out = pipeline(&["push", "--image", &image], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("PIPELINE_REGISTRY_USER"),
        "{}",
        text(&out.stderr)
    );

    // A wrong password: refused, and never echoed.
    let wrong = "wrong-password-6789";
    let out = pipeline(
        &["push", "--image", &image],
        &[
            ("PIPELINE_REGISTRY_USER", "alice"),
            ("PIPELINE_REGISTRY_PASSWORD", wrong),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("refused"), "{all}");
    assert!(all.contains("alice"), "{all}");
    assert!(!all.contains(wrong), "{all}");

    // The right one, from the environment.
    let creds = [
        ("PIPELINE_REGISTRY_USER", "alice"),
        ("PIPELINE_REGISTRY_PASSWORD", password),
    ];
    let out = pipeline(&["push", "--image", &image], &creds);
    let reference = ok(&out, "push with credentials").trim().to_owned();
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(password), "{all}");
    let basic = "YWxpY2U6Y29ycmVjdC1ob3JzZS1iYXR0ZXJ5"; // alice:correct-horse-battery
    let digest = served_digest(&reg.addr, "private/app", &tag, Some(basic));
    assert_eq!(reference, format!("{}/private/app@{digest}", reg.addr));

    // The right one, from a Docker config file.
    let config = TempDir::new("pipeline-docker-config");
    std::fs::write(
        config.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{basic}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let cfg = config.path().to_str().unwrap();
    ok(
        &pipeline(&["push", "--image", &image], &[("DOCKER_CONFIG", cfg)]),
        "push with config.json",
    );

    // sbom registry: authenticates the same ways (Basic here).
    let src = format!("registry:{}/private/app@{digest}", reg.addr);
    ok(&pipeline(&["sbom", &src], &creds), "sbom with credentials");
    ok(
        &pipeline(&["sbom", &src], &[("DOCKER_CONFIG", cfg)]),
        "sbom with config.json",
    );
    let out = pipeline(
        &["sbom", &src],
        &[
            ("PIPELINE_REGISTRY_USER", "alice"),
            ("PIPELINE_REGISTRY_PASSWORD", wrong),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(wrong));
    let out = pipeline(&["sbom", &src], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Half-set credentials are a usage error.
    let out = pipeline(&["sbom", &src], &[("PIPELINE_REGISTRY_USER", "alice")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("PIPELINE_REGISTRY_PASSWORD"));
    docker(&["rmi", &image]);
}
