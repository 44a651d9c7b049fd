//! Registry answers: OCI and Docker manifests and indexes, and image
//! configs ([`manifest::parse`], [`manifest::select`],
//! [`manifest::parse_config`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::registry::manifest::{self, Parsed, Platform};

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(mode) % TYPES.len()];
    match manifest::parse(bytes, content_type) {
        Ok(Parsed::Index(entries)) => {
            for want in ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"] {
                let want = Platform::parse(want).expect("a valid platform");
                if let Some(d) = manifest::select(&entries, &want) {
                    let p = d.platform.as_ref().expect("selected by its platform");
                    assert_eq!(p.os, want.os);
                    assert_eq!(p.architecture, want.architecture);
                }
            }
        }
        Ok(Parsed::Image { layers, .. }) => {
            for l in &layers {
                let _ = manifest::layer_compression(&l.media_type);
            }
        }
        Err(_) => {}
    }
    let _ = manifest::parse_config(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = Platform::parse(s);
    }
});
