//! Which sandboxes to keep warm: per language and stage, the sandbox a
//! stage under the policy's default limits gets. The backend keeps them
//! (Docker's warm pool: [`crate::backend::docker::pool`]); a job takes one,
//! runs, and it is destroyed — never reused.

use std::collections::BTreeMap;
use std::time::Duration;

use super::StageKind;
use crate::backend::PoolTarget;
use crate::language::Catalog;
use crate::limits::LimitsRequest;
use crate::policy::SandboxPolicy;

/// Pool settings (from the service configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Warm sandboxes kept per language and stage, by language name;
    /// languages not listed get `default_size`.
    pub sizes: BTreeMap<String, usize>,
    pub default_size: usize,
    /// A warm sandbox older than this is replaced.
    pub idle_lifetime: Duration,
}

/// The sandboxes to keep warm: only stages under the policy's default
/// limits can use them (a container's memory and process limits are fixed
/// when it is made).
pub fn targets(policy: &SandboxPolicy, catalog: &Catalog, config: &PoolConfig) -> Vec<PoolTarget> {
    let defaults = LimitsRequest::default()
        .resolve(policy)
        .expect("the policy's defaults are within its maxima");
    let mut targets = Vec::new();
    for lang in catalog.languages() {
        let size = config
            .sizes
            .get(&lang.name)
            .copied()
            .unwrap_or(config.default_size);
        let mut stages = vec![(StageKind::Run, &defaults.run)];
        if lang.compile.is_some() {
            stages.push((StageKind::Compile, &defaults.compile));
        }
        for (stage, limits) in stages {
            targets.push(PoolTarget {
                key: format!("{}/{}", lang.name, stage.as_str()),
                sandbox: super::spec::stage_sandbox(
                    policy,
                    &lang.image,
                    &lang.name,
                    stage.as_str(),
                    limits,
                ),
                size,
            });
        }
    }
    targets
}
