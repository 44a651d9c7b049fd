//! Releases: environments as policy, verification for a promotion, from a
//! commit to the first environment, promotions and what runs where.

pub mod policy;

pub use policy::{
    Environment, EnvironmentPolicy, PolicyError, Problem, Target, UnknownEnvironment,
};
