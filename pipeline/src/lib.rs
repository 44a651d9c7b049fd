//! The pipeline: builds images tagged with the commit SHA, describes them with
//! CycloneDX SBOMs, scans them, signs and verifies them, and rolls them out.
//!
//! Its commands arrive in stages; this crate holds their shared library code.

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
