//! `POST /v1/runs` bodies: the JSON model ([`SubmitRun`], unknown fields
//! refused), file decoding (utf8, base64, hex), then the submission checks
//! under the shipped sandbox policy ([`submission::validate`]). Piston's
//! `POST /api/v2/execute` body is read with the same serde machinery.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runner::policy::SandboxPolicy;
use runner::service::api::model::SubmitRun;
use runner::service::api::piston::ExecuteRequest;
use runner::submission;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ExecuteRequest>(data);
    let Ok(body) = serde_json::from_slice::<SubmitRun>(data) else {
        return;
    };
    let Ok(req) = body.into_request() else {
        return;
    };
    let policy = SandboxPolicy::embedded().expect("the shipped policy is valid");
    if submission::validate(&req.files, &req.stdin, &req.args, &policy.input).is_ok() {
        for f in &req.files {
            // A name that passed is a plain relative name: no `..`, no `/`
            // at either end, no NUL.
            assert!(submission::validate_name(&f.name).is_ok());
            assert!(
                !f.name.starts_with('/') && !f.name.contains('\0'),
                "{:?}",
                f.name
            );
            assert!(
                !f.name.split('/').any(|p| p == ".." || p.is_empty()),
                "{:?}",
                f.name
            );
        }
        assert!(req.files.len() <= policy.input.max_files);
    }
});
