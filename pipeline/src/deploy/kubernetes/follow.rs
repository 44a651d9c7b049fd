//! Following a Deployment: its rollout until [`rollout_status`] decides,
//! then the soak window, during which it must stay complete. Watches start
//! from the last version seen; when a watch ends (the API server closes
//! them) or its version is gone (410), the Deployment is read again and
//! watched from there, as kubectl's `UntilWithSync` does.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{WatchEvent, WatchParams};

use super::status::{RolloutStatus, rollout_status};
use super::{KubeDeployer, kube_error};
use crate::deploy::error::DeployError;
use crate::deploy::report::Log;

/// What a watch came to.
enum Seen {
    /// `decide` decided.
    Decided(Result<Deployment, DeployError>),
    /// The deadline passed; the last version seen.
    Deadline(Deployment),
    /// The watch ended: read the Deployment again.
    Relist,
}

/// Judges one version: `Some` ends the watch.
type Decide<'a> = dyn FnMut(&Deployment) -> Option<Result<(), DeployError>> + Send + 'a;

/// Watches from `from`'s version, calling `decide` on each new version,
/// until it decides, `deadline` passes, or the watch ends.
async fn watch(
    k: &KubeDeployer,
    from: &Deployment,
    deadline: Instant,
    decide: &mut Decide<'_>,
) -> Result<Seen, DeployError> {
    let version = from
        .metadata
        .resource_version
        .clone()
        .unwrap_or_else(|| "0".into());
    let seconds = deadline
        .saturating_duration_since(Instant::now())
        .as_secs()
        .clamp(1, 290);
    let params = WatchParams::default()
        .fields(&format!("metadata.name={}", k.target.deployment))
        .timeout(seconds as u32);
    let mut latest = from.clone();
    let stream = k
        .api()
        .watch(&params, &version)
        .await
        .map_err(kube_error("watch the deployment"))?;
    let mut stream = std::pin::pin!(stream.map_err(kube_error("watch the deployment")));
    loop {
        let next = match tokio::time::timeout_at(deadline.into(), stream.next()).await {
            Err(_) => return Ok(Seen::Deadline(latest)),
            Ok(None) => return Ok(Seen::Relist),
            Ok(Some(event)) => event?,
        };
        match next {
            WatchEvent::Added(d) | WatchEvent::Modified(d) => {
                if let Some(decided) = decide(&d) {
                    return Ok(Seen::Decided(decided.map(|()| d)));
                }
                latest = d;
            }
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Deleted(_) => {
                return Err(DeployError::Kube {
                    action: "follow the rollout".into(),
                    message: format!(
                        "deployment {}/{} was deleted",
                        k.target.namespace, k.target.deployment
                    ),
                });
            }
            // 410 Gone: the version is too old; read again.
            WatchEvent::Error(e) if e.code == 410 => return Ok(Seen::Relist),
            WatchEvent::Error(e) => {
                return Err(DeployError::Kube {
                    action: "watch the deployment".into(),
                    message: format!("{} ({})", e.message, e.code),
                });
            }
        }
    }
}

/// Watches `start` and its successors with `decide` until it decides;
/// `on_deadline` says what the deadline means.
async fn until(
    k: &KubeDeployer,
    start: &Deployment,
    deadline: Instant,
    decide: &mut Decide<'_>,
    on_deadline: impl Fn(Deployment) -> Result<Deployment, DeployError>,
) -> Result<Deployment, DeployError> {
    if let Some(decided) = decide(start) {
        return decided.map(|()| start.clone());
    }
    let mut latest = start.clone();
    loop {
        // Boxed: a kube watch future is large, and deploys await several.
        match Box::pin(watch(k, &latest, deadline, decide)).await? {
            Seen::Decided(result) => return result,
            Seen::Deadline(last) => return on_deadline(last),
            Seen::Relist => {
                latest = k
                    .api()
                    .get(&k.target.deployment)
                    .await
                    .map_err(kube_error("read the deployment"))?;
                if let Some(decided) = decide(&latest) {
                    return decided.map(|()| latest);
                }
            }
        }
    }
}

/// Follows the rollout `start` began until it completes (returning the
/// complete Deployment), fails, or `deadline` passes.
pub(super) async fn rollout(
    k: &KubeDeployer,
    start: &Deployment,
    deadline: Instant,
    log: &mut Log<'_>,
) -> Result<Deployment, DeployError> {
    let image = k.container_image(start).unwrap_or_default();
    let timeout = k.target.progress_timeout;
    let mut said = String::new();
    let mut decide = |d: &Deployment| {
        let status = rollout_status(d);
        if status.message() != said {
            said = status.message().to_owned();
            log.event(said.clone());
        }
        match status {
            RolloutStatus::Complete(_) => Some(Ok(())),
            RolloutStatus::Failed(reason) => Some(Err(DeployError::Rollout {
                image: image.clone(),
                reason,
            })),
            RolloutStatus::Waiting(_) => None,
        }
    };
    let on_deadline = |last: Deployment| {
        Err(DeployError::Rollout {
            image: image.clone(),
            reason: format!(
                "not complete after {:.1} s (progress_timeout); last: {}",
                timeout.as_secs_f64(),
                rollout_status(&last).message()
            ),
        })
    };
    until(k, start, deadline, &mut decide, on_deadline).await
}

/// Watches a complete rollout for `window`: it must stay complete.
pub(super) async fn soak(
    k: &KubeDeployer,
    complete: &Deployment,
    window: Duration,
    log: &mut Log<'_>,
) -> Result<(), DeployError> {
    if window.is_zero() {
        return Ok(());
    }
    log.event(format!("soaking for {} s", window.as_secs()));
    let mut decide = |d: &Deployment| match rollout_status(d) {
        RolloutStatus::Complete(_) => None,
        other => Some(Err(DeployError::Soak {
            seconds: window.as_secs(),
            reason: format!("the rollout is no longer complete: {}", other.message()),
        })),
    };
    until(k, complete, Instant::now() + window, &mut decide, Ok)
        .await
        .map(|_| ())
}
