//! Workflow jobs from commits: the engine-independent parts.
//!
//! - [`parse`] reads a workflow file ([`yaml`] keeps positions) into a
//!   checked [`model::Workflow`]; every error names file, line and column.
//! - [`expr`]: `${{ }}` expressions and templates.
//! - [`filter`], [`trigger`]: `on.push` and GitHub's filter patterns.
//! - [`matrix`], [`dag`]: matrix expansion and the `needs` graph.
//! - [`policy`]: the server's workflow policy (`policies/workflows.toml`).
//! - [`plan`]: from a workflow and a push to the jobs to run.
//! - [`webhook`]: GitHub push deliveries, signatures checked.
//! - [`source`]: fetching commits into a bare cache and archiving them.

pub mod dag;
pub mod error;
pub mod exec;
pub mod expr;
pub mod filter;
pub mod matrix;
pub mod model;
pub mod parse;
pub mod plan;
pub mod policy;
pub mod render;
pub mod source;
pub mod suggest;
pub mod trigger;
pub mod webhook;
pub mod yaml;
