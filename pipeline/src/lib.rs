//! The pipeline: builds images tagged with the commit SHA, describes them with
//! CycloneDX SBOMs, scans them, signs and verifies them, and rolls them out.
//!
//! The `pipeline` binary only parses arguments and prints; everything it does
//! is here, for the runner service to call too: [`flow`] (build → push → SBOM
//! → scan → sign → attest), [`release`] (environments as policy, verification
//! for a promotion, from a commit to the first environment, promotions and
//! what runs where) and [`deploy`] (rolling deploys by digest with automatic
//! rollback, on Docker behind HAProxy or on Kubernetes).

pub mod build;
pub mod clock;
pub mod cosign;
pub mod credentials;
pub mod deploy;
pub mod digest;
pub mod engine;
pub mod error;
pub mod flow;
pub mod labels;
pub mod output;
pub mod purl;
pub mod push;
pub mod reference;
pub mod registry;
pub mod release;
pub mod sbom;
pub mod scan;
