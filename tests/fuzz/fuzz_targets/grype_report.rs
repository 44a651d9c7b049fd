//! Grype's JSON report ([`report::parse_report`]), then the policy
//! evaluation and every output the scan writes from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::scan::report;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = report::parse_report(data, "grype.json") else {
        return;
    };
    let _ = r.image_digests();
    for (m, ignored) in r.all_matches() {
        let _ = (m, ignored);
    }
});
