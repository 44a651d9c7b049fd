//! Options shared by the commands that work on environments: the policy,
//! the state directory, and the registry.

use std::path::PathBuf;
use std::sync::Arc;

use pipeline::release::{EnvironmentPolicy, Releaser, StateStore, VerificationReport};

use super::Failure;
use super::registry::RegistryArgs;

#[derive(Debug, clap::Args)]
pub struct EnvironmentArgs {
    /// The environment policy.
    #[arg(
        long,
        default_value = "policies/environments.toml",
        value_name = "FILE"
    )]
    pub environments: PathBuf,
    /// Where what runs where is recorded (default: PIPELINE_STATE_DIR, else
    /// $XDG_STATE_HOME/pipeline, else ~/.local/state/pipeline).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl EnvironmentArgs {
    /// The policy, checked, and the state directory, opened.
    pub fn releaser(&self) -> Result<Releaser, Failure> {
        let policy = EnvironmentPolicy::load(&self.environments)?;
        let dir = self
            .state_dir
            .clone()
            .unwrap_or_else(StateStore::default_dir);
        let state = StateStore::open(&dir)?;
        Ok(Releaser::new(Arc::new(policy), state)
            .with_insecure_registries(self.registry.insecure()))
    }
}

/// Who is at the terminal, for the record.
pub fn requester() -> String {
    ["PIPELINE_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The checks, one line each.
pub fn print_checks(v: &VerificationReport) {
    println!(
        "verification of {} for {} ({:.2} s):",
        v.image, v.environment, v.seconds
    );
    for c in &v.checks {
        let mark = if c.passed { "ok    " } else { "FAILED" };
        println!("  {mark} {:<26} {}", c.check.name(), c.detail);
    }
}
