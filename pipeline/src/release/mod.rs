//! Releases: environments as reviewed policy ([`policy`]), verification for
//! a promotion ([`verify`]), from a commit to the first environment
//! ([`build`]), promotions and the record of what runs where
//! ([`promote`], [`state`]).
//!
//! What the runner service calls:
//! - [`EnvironmentPolicy::load`] once at start-up;
//! - [`build_for_commit`] when a workflow run on a branch the policy names
//!   succeeds ([`EnvironmentPolicy::automatic_for_branch`]), then
//!   [`Releaser::promote`] into that environment;
//! - [`Releaser::check`] when a promotion is requested (gates and
//!   verification, nothing deployed), then [`Releaser::promote`] with the
//!   approvals it recorded once there are enough;
//! - [`verify_for_environment`] for a verification on its own.
//!
//! All are async, return typed errors that say whose problem they are
//! ([`crate::error::Classify`]), and report progress through a callback;
//! none prints or exits.

pub mod build;
mod gates;
pub mod policy;
pub mod promote;
pub mod state;
pub mod verify;

pub use build::{
    CommitBuild, CommitBuildRequest, CommitRelease, ReleaseError, build_for_commit, release_commit,
};
pub use policy::{
    Environment, EnvironmentPolicy, PolicyError, Problem, Target, UnknownEnvironment,
};
pub use promote::{
    Approval, EnvironmentView, PromotionError, PromotionReport, PromotionRequest, Reconciliation,
    Releaser,
};
pub use state::{EnvironmentState, StateError, StateStore};
pub use verify::{Check, CheckOutcome, VerificationReport, verify_for_environment};
