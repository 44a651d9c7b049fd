//! `etc/os-release`, which names the distro in every purl.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::sbom::catalog::{self, Found, Want};

fuzz_target!(|data: &[u8]| {
    let c = catalog::parse(Want::OsRelease, "etc/os-release", data);
    let Found::OsRelease(os) = c.found else {
        panic!("os-release yields a release");
    };
    if let Some(q) = os.distro_qualifier() {
        assert!(!q.is_empty());
    }
});
