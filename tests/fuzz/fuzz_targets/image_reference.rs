//! Image references (`host:port/name:tag@sha256:...`), as commands,
//! workflows and policies name images.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::reference::{Pinned, Reference};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Reference::parse(s) {
        // What it prints reads back as the same reference.
        let again = Reference::parse(&r.to_string())
            .unwrap_or_else(|e| panic!("{r} (from {s:?}) does not read back: {e}"));
        assert_eq!(again, r);
        let _ = (r.name(), r.api_host(), r.tag_or_digest(), r.is_loopback());
    }
    if let Ok(p) = Pinned::parse(s) {
        assert!(p.digest().starts_with("sha256:"), "{}", p.digest());
    }
});
