//! Alpine's `lib/apk/db/installed`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::{self, Ending, Found, Want};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let ending = if mode & 1 == 0 {
        Ending::Complete
    } else {
        Ending::Cut
    };
    let c = catalog::parse_file(Want::ApkInstalled, "lib/apk/db/installed", bytes, ending);
    assert!(
        c.warnings.len() <= MAX_WARNINGS_PER_FILE,
        "{} warnings from one file",
        c.warnings.len()
    );
    let Found::Packages(records) = c.found else {
        panic!("an installed database yields packages");
    };
    for r in records {
        assert!(!r.name.is_empty() && !r.version.is_empty());
    }
});
