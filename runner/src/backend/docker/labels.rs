//! Labels on every sandbox container: which job it serves, which process owns
//! it, and when it is surely abandoned. `runner gc` decides from them alone.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend::orphans::{Owner, unix_now};

pub const MANAGED: &str = "io.runner.managed";
pub const JOB: &str = "io.runner.job";
pub const STAGE: &str = "io.runner.stage";
pub const LANGUAGE: &str = "io.runner.language";
pub const OWNER: &str = "io.runner.owner";
pub const EXPIRES: &str = "io.runner.expires";
/// The sandbox (one per runner process, or per test) that made a container.
pub const INSTANCE: &str = "io.runner.instance";
/// `language/stage` of the warm pool a container was made for.
pub const POOL: &str = "io.runner.pool";
/// The uid (and gid) the container runs as, leased for it alone.
pub const UID: &str = "io.runner.uid";

/// Labels for a stage container that must be gone within `lifetime`.
pub fn for_stage(
    owner: &Owner,
    instance: &str,
    job: &str,
    stage: &str,
    language: &str,
    lifetime: Duration,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED.to_owned(), "true".to_owned()),
        (JOB.to_owned(), job.to_owned()),
        (STAGE.to_owned(), stage.to_owned()),
        (LANGUAGE.to_owned(), language.to_owned()),
        (OWNER.to_owned(), owner.to_label()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (
            EXPIRES.to_owned(),
            (unix_now() + lifetime.as_secs()).to_string(),
        ),
    ])
}

/// Labels for a warm pool container: no job yet (it gets one when taken),
/// but an owner and a deadline like every sandbox container.
pub fn for_pool(
    owner: &Owner,
    instance: &str,
    pool: &str,
    language: &str,
    lifetime: Duration,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED.to_owned(), "true".to_owned()),
        (POOL.to_owned(), pool.to_owned()),
        (LANGUAGE.to_owned(), language.to_owned()),
        (OWNER.to_owned(), owner.to_label()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (
            EXPIRES.to_owned(),
            (unix_now() + lifetime.as_secs()).to_string(),
        ),
    ])
}
