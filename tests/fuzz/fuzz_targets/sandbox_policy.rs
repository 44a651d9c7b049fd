//! The sandbox policy (`policies/sandbox.toml`) ([`SandboxPolicy::load`]'s
//! parser). A policy that parses gives every sandbox a usable CPU quota
//! and limits whose defaults fit their maxima.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = runner::fuzzing::sandbox_policy(text) else {
        return;
    };
    assert!(
        p.container.nano_cpus >= 1_000_000,
        "accepted a CPU quota of {} nano-CPUs",
        p.container.nano_cpus
    );
    assert!(p.container.work_tmpfs_bytes > 0 && p.container.nofile > 0);
});
