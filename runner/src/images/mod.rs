//! Sandbox images: built from `sandbox-images/` through the Docker Engine API.
//!
//! Order: `debian:bookworm-slim` (pulled, or made from Debian's packages with
//! debootstrap when no registry is reachable) → `runner-sandbox/base` →
//! one image per language. Tags carry a hash of the files each build reads,
//! so a changed Dockerfile or sandbox-init means a new image.

pub mod bootstrap;
pub mod build;
pub mod engine;
pub mod jobs;
pub mod sources;

pub use build::{BuildError, ImageBuilder};
