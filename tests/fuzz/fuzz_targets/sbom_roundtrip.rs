//! CycloneDX write → read: packages found in a layer (a dpkg status file of
//! fuzzed stanzas, an os-release) are rendered by [`cyclonedx::render`] and
//! read back with the CycloneDX library's own 1.5 reader; every package the
//! writer kept is there with its name, version and purl, and the document
//! validates.
#![no_main]

use arbitrary::Arbitrary;
use cyclonedx_bom::models::bom::{Bom, SpecVersion};
use cyclonedx_bom::validation::Validate;
use libfuzzer_sys::fuzz_target;
use pipeline::sbom::catalog;
use pipeline::sbom::cyclonedx::{self, Subject};
use pipeline::sbom::rootfs::{Entry, EntryKind, RootFs};

#[derive(Debug, Arbitrary)]
struct Stanza {
    name: String,
    version: String,
    arch: Option<String>,
    source: Option<String>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    os_release: String,
    stanzas: Vec<Stanza>,
    epoch: Option<i32>,
}

fn add(fs: &mut RootFs, path: &str, content: &[u8]) {
    let entry = Entry {
        path: path.as_bytes(),
        kind: EntryKind::File,
        size: content.len() as u64,
        mode: 0o644,
        link: None,
    };
    fs.add(0, entry, true, &mut &content[..]).expect("memory");
}

fuzz_target!(|input: Input| {
    let mut status = String::new();
    for s in input.stanzas.iter().take(32) {
        status.push_str(&format!(
            "Package: {}\nStatus: install ok installed\nVersion: {}\n",
            s.name.replace('\n', " "),
            s.version.replace('\n', " ")
        ));
        if let Some(a) = &s.arch {
            status.push_str(&format!("Architecture: {}\n", a.replace('\n', " ")));
        }
        if let Some(src) = &s.source {
            status.push_str(&format!("Source: {}\n", src.replace('\n', " ")));
        }
        status.push('\n');
    }
    let mut fs = RootFs::new();
    add(&mut fs, "etc/os-release", input.os_release.as_bytes());
    add(&mut fs, "var/lib/dpkg/status", status.as_bytes());
    let inventory = catalog::assemble(fs, &["sha256:00".to_owned()]);
    let subject = Subject {
        name: "fuzz".into(),
        image: None,
    };
    let Ok((json, warnings)) = cyclonedx::render(&inventory, &subject, input.epoch.map(i64::from))
    else {
        return;
    };
    let bom = Bom::parse_from_json_v1_5(&json[..])
        .unwrap_or_else(|e| panic!("the writer's output does not read back: {e}"));
    assert!(
        bom.validate_version(SpecVersion::V1_5).passed(),
        "the written document does not validate"
    );
    let components = bom.components.map(|c| c.0).unwrap_or_default();
    for p in &inventory.packages {
        let Some(c) = components
            .iter()
            .find(|c| c.purl.as_ref().map(ToString::to_string).as_deref() == Some(p.purl.as_str()))
        else {
            // A package the writer left out is named in a warning instead.
            let named = format!("package {:?} {:?}", p.name, p.version);
            assert!(
                warnings.iter().any(|w| w.message.starts_with(&named)),
                "{} is neither in the document nor in a warning",
                p.purl
            );
            continue;
        };
        assert_eq!(c.name.to_string(), p.name);
        assert_eq!(
            c.version.as_ref().map(ToString::to_string).as_deref(),
            Some(p.version.as_str())
        );
    }
});
