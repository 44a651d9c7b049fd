//! Vulnerability scanning with Grype, and the policy gate.
//!
//! [`run_grype`] runs `grype sbom:FILE -o json`; [`parse_report`] reads its
//! JSON report (or one made elsewhere); [`evaluate`] applies a
//! [`ScanPolicy`] and OpenVEX documents to it, and the [`Evaluation`] renders
//! as a table, a JSON report ([`JSON_SCHEMA`]) and SARIF 2.1.0.
//!
//! # The policy file (`policies/scan.yaml`)
//!
//! YAML; unknown keys are errors.
//!
//! | key | meaning |
//! | --- | --- |
//! | `fail_on` (required) | the gate fails on a finding at or above this severity: `unknown`, `negligible`, `low`, `medium`, `high`, `critical` (Grype's scale; `unknown` ranks lowest, so only `fail_on: unknown` fails on findings of unknown severity) |
//! | `only_fixed` (default `false`) | fail only on findings Grype knows a fixed version for (`fix.state: fixed`); the others pass, and are listed as passing |
//! | `vex` (default none) | OpenVEX documents applied to every scan, paths relative to the policy file |
//! | `ignore` (default none) | waivers, below |
//!
//! Each `ignore` rule matches a finding when all the matchers it has agree
//! (at least one is required):
//!
//! | key | matches |
//! | --- | --- |
//! | `vulnerability` | the finding's id or one of Grype's related ids (so a CVE id also covers the GHSA that aliases it), case-insensitively |
//! | `package.name` | the package name, exactly |
//! | `package.version` | the package version, exactly (quote it if YAML could read it as a number) |
//! | `package.purl` | the package URL, as a pattern: a purl without version or qualifiers matches every version or qualifier (see [`purl`]) |
//! | `fix_state` | `fixed`, `not-fixed`, `wont-fix` or `unknown` (Grype's empty state counts as `unknown`) |
//!
//! and must say `reason` (why the finding is acceptable) and `expires`
//! (`YYYY-MM-DD`). From that day on (UTC) the rule no longer applies: the
//! findings it covered are judged again, and the rule is reported as
//! expired in the table, the JSON report (`ignoreRules[].expired`) and
//! SARIF (a note on the policy file).
//!
//! # Statuses
//!
//! Each finding is, in this order of precedence: `suppressed` (the latest
//! applicable VEX statement says `not_affected` or `fixed`, see [`vex`]),
//! `ignored` (an unexpired ignore rule matches), `passing` (below
//! `fail_on`, or without a fix under `only_fixed`), else `failing`. The gate
//! passes when nothing is failing. Matches Grype itself ignored
//! (`ignoredMatches`, from a Grype config file) are judged like the others:
//! only the policy waives findings.

pub mod error;
pub mod evaluate;
pub mod grype;
pub mod json;
pub mod policy;
pub mod read;
pub mod report;
pub mod sarif;
pub mod severity;
pub mod table;
pub mod vex;

/// Package URLs as the gate matches them (shared with the SBOM writer).
pub use crate::purl;

pub use error::ScanError;
pub use evaluate::{
    Evaluation, Finding, Reason, RuleOutcome, Status, VexCitation, VexSource, evaluate,
    evaluate_for_image,
};
pub use grype::{GRYPE_ENV, GrypeOptions, INSTALL_HINT, run_grype};
pub use json::JSON_SCHEMA;
pub use policy::{IgnoreRule, ScanPolicy, parse_date};
pub use read::MAX_REPORT_BYTES;
pub use report::{GrypeReport, parse_report};
pub use severity::{FixState, Severity};
/// The date type [`evaluate`] takes.
pub use time::Date;
pub use vex::{VexDocument, VexStatus, load_vex, parse_vex};
