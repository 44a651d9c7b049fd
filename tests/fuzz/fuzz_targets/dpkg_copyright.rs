//! Debian `usr/share/doc/*/copyright` files (licences).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::{self, Found, Want};

fuzz_target!(|data: &[u8]| {
    let c = catalog::parse(Want::DpkgCopyright, "usr/share/doc/x/copyright", data);
    assert!(c.warnings.len() <= MAX_WARNINGS_PER_FILE);
    let Found::Licenses(l) = c.found else {
        panic!("a copyright file yields licences");
    };
    assert!(l.iter().all(|l| !l.is_empty()), "{l:?}");
});
