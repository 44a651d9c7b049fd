//! The environments policy (`policies/environments.toml`)
//! ([`EnvironmentPolicy::parse`]).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pipeline::release::policy::EnvironmentPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = EnvironmentPolicy::parse(text, Path::new("environments.toml"), base()) else {
        return;
    };
    assert!(!p.environments().is_empty());
    for env in p.environments() {
        assert_eq!(p.get(&env.name).map(|e| &e.name), Ok(&env.name));
        let _ = (p.previous(env), env.target.describe(), env.is_automatic());
    }
    let _ = p.automatic_for_branch("main");
});

/// A public key made for this target (its private half was thrown away).
const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmgeFNXT4c77tv+brPBeXwHdODt9r
yN9mcQttmHrUE0mDlsWAJF2CfrdFuod+mI2CZ4TNjjZuqziHh41iWeDiPw==
-----END PUBLIC KEY-----
";

/// The directory relative paths resolve in: the files the shipped policy
/// names (`keys/release.pub`, `scan.yaml`), so valid policies get past
/// reading them and the checks after run too.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("environments-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("keys")).expect("a temporary directory");
        std::fs::write(dir.join("keys/release.pub"), KEY).expect("write the key");
        let scan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/scan.yaml");
        std::fs::copy(scan, dir.join("scan.yaml")).expect("copy policies/scan.yaml");
        dir
    })
}
