//! The stored job spec the service queues ([`JobSpec::decode`]): a worker
//! reads back what the database holds. What decodes encodes to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::service::spec::JobSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = JobSpec::decode(data) else {
        return;
    };
    let bytes = spec.encode();
    let again = JobSpec::decode(&bytes).expect("an encoded spec decodes");
    assert_eq!(
        again.encode(),
        bytes,
        "encode → decode → encode changed the spec"
    );
});
