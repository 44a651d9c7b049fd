//! `node_modules/*/package.json`. (No lock file is read by the cataloger:
//! installed packages are what `node_modules` holds.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::{self, Found, Want};

fuzz_target!(|data: &[u8]| {
    let path = "usr/lib/node_modules/@scope/pkg/package.json";
    assert_eq!(catalog::classify(path), Some(Want::NpmPackage));
    let c = catalog::parse(Want::NpmPackage, path, data);
    assert!(c.warnings.len() <= MAX_WARNINGS_PER_FILE);
    let Found::Packages(records) = c.found else {
        panic!("package.json yields packages");
    };
    assert!(records.len() <= 1);
});
