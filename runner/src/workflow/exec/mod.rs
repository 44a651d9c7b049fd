//! Running planned workflow jobs through the job backend.
//!
//! - [`mask`]: secrets masked in every log line and event.

pub mod mask;
