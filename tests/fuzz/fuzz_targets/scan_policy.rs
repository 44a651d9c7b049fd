//! The scan policy (`policies/scan.yaml`: fail_on, ignore rules with
//! expiry dates, VEX files) ([`ScanPolicy::parse`]).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipeline::scan::policy::ScanPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `vex:` paths resolve under a directory that does not exist: the
    // parser's own checks run, no file is read.
    if let Ok(p) = ScanPolicy::parse(text, "scan.yaml", Path::new("/nonexistent/fuzz")) {
        let _ = format!("{p:?}");
    }
});
