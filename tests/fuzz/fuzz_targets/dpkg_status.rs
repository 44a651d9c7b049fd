//! dpkg's `var/lib/dpkg/status` and distroless `var/lib/dpkg/status.d/*`,
//! through the dispatcher layers use ([`catalog::parse_file`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::{self, Ending, Found, Want};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let path = if mode & 1 == 0 {
        "var/lib/dpkg/status"
    } else {
        "var/lib/dpkg/status.d/libc6"
    };
    assert_eq!(catalog::classify(path), Some(Want::DpkgStatus));
    let ending = if mode & 2 == 0 {
        Ending::Complete
    } else {
        Ending::Cut
    };
    let c = catalog::parse_file(Want::DpkgStatus, path, bytes, ending);
    assert!(
        c.warnings.len() <= MAX_WARNINGS_PER_FILE,
        "{} warnings from one file",
        c.warnings.len()
    );
    let Found::Packages(records) = c.found else {
        panic!("a status file yields packages");
    };
    for r in records {
        assert!(!r.name.is_empty() && !r.version.is_empty());
        assert!(!r.name.contains(char::is_whitespace), "{:?}", r.name);
    }
});
