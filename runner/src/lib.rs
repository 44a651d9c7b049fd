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
