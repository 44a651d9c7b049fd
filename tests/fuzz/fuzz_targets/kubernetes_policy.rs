//! The Kubernetes job-namespace policy
//! (`policies/kubernetes/job-namespace.toml`) ([`NamespacePolicy::parse`]).
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::backend::kubernetes::policy::NamespacePolicy;

/// The latest deadline a namespace annotation can carry that the sweeper
/// takes at face value: 31 Dec 9999, in Unix seconds.
const LATEST_DEADLINE: u64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = NamespacePolicy::parse(text, "job-namespace.toml") else {
        return;
    };
    // The sweeper adds the grace to a namespace's deadline.
    assert!(
        LATEST_DEADLINE
            .checked_add(p.deadline_grace.as_secs())
            .is_some(),
        "a grace of {:?} overflows a deadline",
        p.deadline_grace
    );
    assert!(p.start_timeout.as_secs() >= 1);
    let ns = p.namespace_of("0123456789abcdef");
    assert!(ns.len() <= 63, "namespace name {ns:?} is not a DNS label");
});
