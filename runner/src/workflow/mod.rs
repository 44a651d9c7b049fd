//! Workflow jobs from commits: the engine-independent parts.

pub mod error;
pub mod expr;
pub mod suggest;
pub mod yaml;
