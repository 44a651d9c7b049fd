//! `pipeline sbom` on a real image with Debian, Python and npm packages,
//! checked against what the ecosystems' own tools report inside it
//! (`dpkg-query`, `pip list`, `npm ls`), and across sources: the engine, a
//! `docker save` archive, an exported root file system, and a registry.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{docker, fixture_image, of_type, ok, pipeline, props, sbom, text};
use cyclonedx_bom::models::bom::{Bom, SpecVersion};
use cyclonedx_bom::validation::Validate;
use serde_json::Value;
use test_support::registry::Auth;
use test_support::{TempDir, require_docker, require_registry};

type NameVersion = BTreeSet<(String, String)>;

/// `docker run --rm IMAGE ARGS...`: stdout, whatever the exit status (npm
/// ls exits non-zero on extraneous packages and still prints the tree).
fn in_image(image: &str, args: &[&str]) -> String {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            args[0],
            image,
        ])
        .args(&args[1..])
        .output()
        .unwrap();
    text(&out.stdout)
}

fn qualifier<'a>(purl: &'a str, key: &str) -> Option<&'a str> {
    purl.split_once('?')?
        .1
        .split('&')
        .find_map(|q| q.strip_prefix(&format!("{key}=")))
}

fn name_version(c: &Value) -> (String, String) {
    (
        c["name"].as_str().unwrap().to_owned(),
        c["version"].as_str().unwrap().to_owned(),
    )
}

fn pep503(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars() {
        if matches!(ch, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(ch.to_ascii_lowercase());
        }
    }
    out
}

/// `npm ls --json` dependencies, recursively.
fn npm_tree(deps: &Value, out: &mut NameVersion) {
    if let Some(map) = deps.as_object() {
        for (name, info) in map {
            if let Some(v) = info["version"].as_str() {
                out.insert((name.clone(), v.to_owned()));
            }
            npm_tree(&info["dependencies"], out);
        }
    }
}

#[test]
fn packages_match_what_dpkg_pip_and_npm_report() {
    require_docker!();
    let image = fixture_image();
    let (sbom, out) = sbom(&format!("docker:{image}"), &[]);
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );

    // Debian: every package dpkg considers present, with version and
    // architecture; config-files leftovers are not installed.
    let listed = in_image(
        &image,
        &[
            "dpkg-query",
            "-W",
            "-f",
            "${Package} ${Version} ${Architecture} ${db:Status-Status}\\n",
        ],
    );
    let expected: BTreeSet<(String, String, String)> = listed
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 4 && f[3] != "config-files" && f[3] != "not-installed")
                .then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
        })
        .collect();
    assert!(expected.len() > 100, "dpkg-query listed {}", expected.len());
    let found: BTreeSet<(String, String, String)> = of_type(&sbom, "deb")
        .iter()
        .map(|c| {
            let (n, v) = name_version(c);
            let arch = qualifier(c["purl"].as_str().unwrap(), "arch")
                .unwrap()
                .to_owned();
            (n, v, arch)
        })
        .collect();
    assert_eq!(found, expected);
    for c in of_type(&sbom, "deb") {
        let purl = c["purl"].as_str().unwrap();
        assert_eq!(qualifier(purl, "distro"), Some("debian-12"), "{purl}");
    }

    // Python: pip's own list of installed distributions.
    let pip: Value = serde_json::from_str(&in_image(
        &image,
        &[
            "python3",
            "-m",
            "pip",
            "list",
            "--format=json",
            "--disable-pip-version-check",
        ],
    ))
    .unwrap();
    let expected: NameVersion = pip
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                pep503(p["name"].as_str().unwrap()),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let found: NameVersion = of_type(&sbom, "python")
        .iter()
        .map(|c| {
            (
                pep503(c["name"].as_str().unwrap()),
                c["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(found, expected);
    for c in of_type(&sbom, "python") {
        let purl = c["purl"].as_str().unwrap();
        let (n, v) = name_version(c);
        assert_eq!(purl, format!("pkg:pypi/{}@{v}", pep503(&n)));
    }

    // npm: the application's tree as `npm ls --all` sees it...
    let ls: Value = serde_json::from_str(&in_image(
        &image,
        &["sh", "-c", "cd /app && npm ls --all --json"],
    ))
    .unwrap();
    let mut expected = NameVersion::new();
    npm_tree(&ls["dependencies"], &mut expected);
    let npm = of_type(&sbom, "npm");
    let in_app: NameVersion = npm
        .iter()
        .filter(|c| {
            props(c, "syft:location:0:path")
                .first()
                .is_some_and(|p| p.starts_with("/app/"))
        })
        .map(|c| name_version(c))
        .collect();
    assert_eq!(in_app, expected);
    // ...and every installed package of the image, by a walk of its
    // node_modules directories done inside it.
    let walk = in_image(
        &image,
        &[
            "node",
            "-e",
            r#"const fs=require('fs'),p=require('path');const seen=new Set();
               function pkg(d){try{const j=JSON.parse(fs.readFileSync(p.join(d,'package.json')));if(j.name&&j.version)seen.add(j.name+' '+j.version)}catch(e){}}
               function walk(d){let es;try{es=fs.readdirSync(d,{withFileTypes:true})}catch(e){return}
                 for(const e of es){if(!e.isDirectory())continue;const f=p.join(d,e.name);
                   if(e.name==='node_modules'){for(const m of fs.readdirSync(f,{withFileTypes:true})){if(!m.isDirectory()||m.name.startsWith('.'))continue;
                     if(m.name.startsWith('@')){for(const s of fs.readdirSync(p.join(f,m.name),{withFileTypes:true}))if(s.isDirectory())pkg(p.join(f,m.name,s.name))}else pkg(p.join(f,m.name))}}
                   if(!['proc','sys','dev'].includes(e.name)||d!=='/')walk(f)}}
               walk('/');console.log([...seen].sort().join('\n'))"#,
        ],
    );
    let expected: NameVersion = walk
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    let found: NameVersion = npm.iter().map(|c| name_version(c)).collect();
    assert_eq!(found, expected);

    // The scoped, nested and deleted-later fixtures.
    let purls: Vec<&str> = npm.iter().filter_map(|c| c["purl"].as_str()).collect();
    assert!(
        purls.contains(&"pkg:npm/%40acme/widgets@2.1.0"),
        "{purls:?}"
    );
    assert!(purls.contains(&"pkg:npm/tiny-dep@0.1.0"), "{purls:?}");
    assert!(
        !purls.iter().any(|p| p.contains("removed-later")),
        "{purls:?}"
    );

    // The distribution, as the image's os-release says.
    let os = in_image(
        &image,
        &["sh", "-c", ". /etc/os-release && echo $ID $VERSION_ID"],
    );
    let os_component = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "operating-system")
        .unwrap();
    assert_eq!(
        format!(
            "{} {}",
            os_component["name"].as_str().unwrap(),
            os_component["version"].as_str().unwrap()
        ),
        os.trim()
    );

    // Licences where the metadata states them: the fixture's own
    // package.json and a machine-readable Debian copyright file.
    let widgets = npm.iter().find(|c| c["name"] == "@acme/widgets").unwrap();
    assert_eq!(widgets["licenses"][0]["license"]["id"], "Apache-2.0");
    let stated = in_image(
        &image,
        &["grep", "-h", "^License:", "/usr/share/doc/nodejs/copyright"],
    );
    let node = of_type(&sbom, "deb")
        .into_iter()
        .find(|c| c["name"] == "nodejs")
        .unwrap();
    let licenses = node["licenses"].as_array().map_or(0, Vec::len);
    assert!(
        !stated.is_empty() && licenses > 0,
        "nodejs licences: {node}"
    );

    // The image and its source commit in the metadata.
    let revision = image.rsplit_once(':').unwrap().1;
    let meta = &sbom["metadata"]["component"];
    assert_eq!(meta["type"], "container");
    assert_eq!(props(meta, "pipeline:image:revision"), [revision]);
    let id = docker(&["inspect", "-f", "{{.Id}}", &image]);
    assert_eq!(meta["version"], id.trim());
}

#[test]
fn output_is_valid_cyclonedx_and_deterministic() {
    require_docker!();
    let image = fixture_image();
    let src = format!("docker:{image}");
    let first = pipeline(&["sbom", &src], &[]);
    let second = pipeline(&["sbom", &src], &[]);
    assert_eq!(ok(&first, "sbom"), ok(&second, "sbom"), "byte-identical");
    let bom = Bom::parse_from_json_v1_5(&first.stdout[..]).expect("parses as CycloneDX 1.5");
    let result = bom.validate_version(SpecVersion::V1_5);
    assert!(result.passed(), "{result:?}");
    let json: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(json["specVersion"], "1.5");
    assert!(
        json["serialNumber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    // Without SOURCE_DATE_EPOCH the timestamp is the image's creation time.
    let created = docker(&["inspect", "-f", "{{.Created}}", &image]);
    assert_eq!(json["metadata"]["timestamp"], created.trim());
    let out = pipeline(&["sbom", &src], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    let pinned: Value = serde_json::from_str(&ok(&out, "sbom")).unwrap();
    assert_eq!(pinned["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    assert_ne!(
        pinned["serialNumber"], json["serialNumber"],
        "the serial follows the content"
    );
    // Components are sorted (type, then name).
    let names: Vec<(String, String)> = of_type(&json, "deb")
        .iter()
        .map(|c| name_version(c))
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

/// The components (purl and licences), without locations' layer ids.
fn component_keys(sbom: &Value) -> Vec<String> {
    sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["name"], c["purl"], c["licenses"]))
        .collect()
}

#[test]
fn archives_and_root_directories_give_the_same_packages() {
    require_docker!();
    let image = fixture_image();
    let (from_engine, _) = sbom(&format!("docker:{image}"), &[]);
    let dir = TempDir::new("pipeline-sources");
    let archive = dir.path().join("image.tar");
    docker(&["save", "-o", archive.to_str().unwrap(), &image]);
    let (from_archive, _) = sbom(&format!("docker-archive:{}", archive.display()), &[]);
    assert_eq!(
        from_archive["components"], from_engine["components"],
        "same components, locations and layers"
    );
    // An exported container file system: the same packages (no layers).
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let id = docker(&["create", &image, "true"]).trim().to_owned();
    let status = Command::new("sh")
        .args([
            "-c",
            &format!(
                "docker export {id} | tar -x --no-same-owner --exclude=dev -C {}",
                rootfs.display()
            ),
        ])
        .status()
        .unwrap();
    docker(&["rm", &id]);
    assert!(status.success());
    let (from_dir, _) = sbom(&format!("dir:{}", rootfs.display()), &[]);
    assert_eq!(component_keys(&from_dir), component_keys(&from_engine));
    assert_eq!(from_dir["metadata"]["component"]["type"], "file");
}

#[test]
fn registry_and_engine_sboms_of_the_same_digest_are_identical() {
    require_docker!();
    let reg = require_registry!(Auth::None);
    let image = fixture_image();
    let tag = image.rsplit_once(':').unwrap().1;
    let remote = format!("{}/sbom-fixture:{tag}", reg.addr);
    docker(&["tag", &image, &remote]);
    let out = pipeline(&["push", "--image", &remote], &[]);
    let reference = ok(&out, "push").trim().to_owned();
    assert!(reference.starts_with(&format!("{}/sbom-fixture@sha256:", reg.addr)));
    let (from_registry, _) = sbom(&format!("registry:{reference}"), &[]);
    let (from_engine, _) = sbom(&format!("docker:{reference}"), &[]);
    // Byte for byte: same subject name, image id, manifest digest, layers
    // (diff ids, not compressed digests), timestamp and serial number.
    let a = pipeline(&["sbom", &format!("registry:{reference}")], &[]);
    let b = pipeline(&["sbom", &format!("docker:{reference}")], &[]);
    assert_eq!(ok(&a, "registry"), ok(&b, "engine"));
    let digest = reference.rsplit_once('@').unwrap().1;
    assert_eq!(
        props(
            &from_registry["metadata"]["component"],
            "pipeline:image:manifestDigest"
        ),
        [digest]
    );
    assert_eq!(from_registry, from_engine);
    docker(&["rmi", &remote]);
}
