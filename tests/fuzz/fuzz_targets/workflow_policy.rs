//! The workflow policy (`policies/workflows.toml`)
//! ([`WorkflowPolicy::parse`]). A policy that parses gives every job a
//! usable CPU quota, defaults within maxima, and a workflow directory
//! inside the repository.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parser_fuzz::assert_contained;
use runner::workflow::policy::WorkflowPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = WorkflowPolicy::parse(text, "workflows.toml") else {
        return;
    };
    for (what, l) in [("defaults", &p.defaults), ("max", &p.max)] {
        assert!(
            l.nano_cpus >= 1_000_000,
            "{what}: accepted a CPU quota of {} nano-CPUs",
            l.nano_cpus
        );
        assert!(l.memory_bytes > 0 && l.pids > 0 && !l.wall_time.is_zero());
    }
    assert!(p.defaults.nano_cpus <= p.max.nano_cpus);
    assert!(p.defaults.memory_bytes <= p.max.memory_bytes);
    assert_contained(&p.directory, "the workflow directory");
    for image in p.labels.values() {
        let _ = p.image_allowed(image);
    }
});
