//! The runner: runs untrusted submissions in ephemeral, resource-limited,
//! non-root sandboxes.
//!
//! - [`policy`]: the limits every sandbox runs under (`policies/sandbox.toml`).
//! - [`language`]: the languages, from `sandbox-images/*/manifest.toml`.
//! - [`submission`], [`limits`]: checking what a client sends.
//! - [`sandbox`]: running a submission, stage by stage, in fresh containers.
//! - [`backend`]: the job backend (Docker, Kubernetes, a scripted fake).
//! - [`images`]: building the sandbox images.
//! - [`verdict`]: results and the verdict mapping.
//! - [`service`]: `runner serve`, the HTTP API with tenants, queue and audit log.

pub mod backend;
pub mod images;
pub mod language;
pub mod limits;
pub mod policy;
pub mod sandbox;
pub mod service;
pub mod submission;
pub mod verdict;
pub mod workflow;

/// Entry points for the fuzz targets (`tests/fuzz`) into parsers whose
/// production callers read their input from files: the same functions,
/// given the text directly. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    use crate::policy::{EMBEDDED_SECCOMP, EMBEDDED_SECCOMP_NAME, PolicyError, SandboxPolicy};

    /// [`SandboxPolicy::load`] without the file: the seccomp profile it may
    /// name resolves to the embedded one, like [`SandboxPolicy::embedded`].
    pub fn sandbox_policy(text: &str) -> Result<SandboxPolicy, PolicyError> {
        SandboxPolicy::parse(text, "fuzz input", |p| {
            if p == Path::new(EMBEDDED_SECCOMP_NAME) {
                Ok(EMBEDDED_SECCOMP.to_owned())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "only seccomp/sandbox.json exists here",
                ))
            }
        })
    }
}
