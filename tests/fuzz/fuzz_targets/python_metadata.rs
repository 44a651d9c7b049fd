//! Python `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and `*.egg-info`
//! files. (The installer's `RECORD` file is not read by the cataloger.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use parser_fuzz::MAX_WARNINGS_PER_FILE;
use pipeline::sbom::catalog::{self, Ending, Found, Want};

const PATHS: [&str; 3] = [
    "usr/lib/python3/dist-packages/x-1.dist-info/METADATA",
    "usr/lib/python3/dist-packages/x-1.egg-info/PKG-INFO",
    "usr/lib/python3/dist-packages/x-1.egg-info",
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(mode) % PATHS.len()];
    assert_eq!(catalog::classify(path), Some(Want::PythonMetadata));
    let ending = if mode & 0x80 == 0 {
        Ending::Complete
    } else {
        Ending::Cut
    };
    let c = catalog::parse_file(Want::PythonMetadata, path, bytes, ending);
    assert!(c.warnings.len() <= MAX_WARNINGS_PER_FILE);
    let Found::Packages(records) = c.found else {
        panic!("metadata yields packages");
    };
    assert!(records.len() <= 1);
    for r in records {
        assert!(!r.name.is_empty() && !r.version.is_empty());
    }
});
