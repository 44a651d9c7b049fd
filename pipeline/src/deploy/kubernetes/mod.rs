//! The Kubernetes target: one container of one Deployment.
//!
//! A deploy patches the container's image to the digest (a strategic merge
//! patch, with `kubernetes.io/change-cause` saying so), then follows the
//! rollout as `kubectl rollout status` does ([`status::rollout_status`] on
//! every watch event, re-listing when a watch ends) until it completes,
//! fails (`ProgressDeadlineExceeded`) or the target's `progress_timeout`
//! passes; then watches the Deployment for the soak window, during which
//! the rollout must stay complete. On any failure it names the pods that
//! are not well (crash loops, image pulls) and sets the image back to the
//! last verified digest, following that rollout the same way.

use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

mod diagnose;
mod follow;
#[cfg(test)]
mod mock_tests;
pub mod status;
mod target;

pub use status::{RolloutStatus, rollout_status};
pub use target::KubernetesTarget;

use super::error::DeployError;
use super::report::{DeployReport, Log};
use crate::flow::Progress;
use crate::reference::Pinned;

/// The field manager named in patches.
const FIELD_MANAGER: &str = "pipeline";

/// Deploys one Deployment's container.
#[derive(Clone)]
pub struct KubeDeployer {
    client: Client,
    target: KubernetesTarget,
}

impl std::fmt::Debug for KubeDeployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeDeployer")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn kube_error(action: &str) -> impl Fn(kube::Error) -> DeployError + '_ {
    move |e| DeployError::Kube {
        action: action.to_owned(),
        message: e.to_string(),
    }
}

impl KubeDeployer {
    pub fn new(client: Client, target: KubernetesTarget) -> KubeDeployer {
        KubeDeployer { client, target }
    }

    /// Connects with the target's kubeconfig (else `$KUBECONFIG` or
    /// `~/.kube/config`) and context.
    pub async fn connect(target: KubernetesTarget) -> Result<KubeDeployer, DeployError> {
        let failed = |e: &dyn std::fmt::Display| DeployError::Kube {
            action: format!("load the kubeconfig context {:?}", target.context),
            message: e.to_string(),
        };
        let options = kube::config::KubeConfigOptions {
            context: Some(target.context.clone()),
            ..Default::default()
        };
        let config = match &target.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path).map_err(|e| failed(&e))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| failed(&e))?
            }
            None => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| failed(&e))?,
        };
        let client = Client::try_from(config).map_err(|e| failed(&e))?;
        Ok(KubeDeployer::new(client, target))
    }

    pub fn target(&self) -> &KubernetesTarget {
        &self.target
    }

    fn api(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.target.namespace)
    }

    /// `namespace/deployment`.
    fn describe(&self) -> String {
        format!(
            "kubernetes deployment {}/{} (context {}, container {})",
            self.target.namespace,
            self.target.deployment,
            self.target.context,
            self.target.container
        )
    }

    /// The image the target container has now.
    pub async fn current_image(&self) -> Result<String, DeployError> {
        let d = self
            .api()
            .get(&self.target.deployment)
            .await
            .map_err(kube_error("read the deployment"))?;
        self.container_image(&d)
    }

    fn container_image(&self, d: &Deployment) -> Result<String, DeployError> {
        let containers = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        match containers.iter().find(|c| c.name == self.target.container) {
            Some(c) => Ok(c.image.clone().unwrap_or_default()),
            None => Err(DeployError::Kube {
                action: format!("find the container {:?}", self.target.container),
                message: format!(
                    "deployment {}/{} has containers {:?}; fix `container` in the environment policy",
                    self.target.namespace,
                    self.target.deployment,
                    containers
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                ),
            }),
        }
    }

    /// Sets the container's image; returns the patched Deployment.
    async fn set_image(&self, image: &Pinned, cause: &str) -> Result<Deployment, DeployError> {
        let patch = serde_json::json!({
            "metadata": {"annotations": {"kubernetes.io/change-cause": cause}},
            "spec": {"template": {"spec": {"containers": [
                {"name": self.target.container, "image": image.to_string()}
            ]}}},
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.api()
            .patch(&self.target.deployment, &params, &Patch::Strategic(&patch))
            .await
            .map_err(kube_error("set the container image"))
    }

    /// Rolls the Deployment onto `image`; on failure sets `previous` (the
    /// last verified digest) back and follows that rollout, and says why.
    pub async fn deploy(
        &self,
        image: &Pinned,
        previous: Option<&Pinned>,
        progress: &Progress,
    ) -> Result<DeployReport, DeployError> {
        // Boxed: kube's request futures are large, and a deploy awaits many.
        Box::pin(self.deploy_boxed(image, previous, progress)).await
    }

    async fn deploy_boxed(
        &self,
        image: &Pinned,
        previous: Option<&Pinned>,
        progress: &Progress,
    ) -> Result<DeployReport, DeployError> {
        let mut log = Log::new(progress);
        let d = self
            .api()
            .get(&self.target.deployment)
            .await
            .map_err(kube_error("read the deployment"))?;
        self.container_image(&d)?;
        let cause = match self
            .roll(image, &format!("pipeline deploy {image}"), &mut log)
            .await
        {
            Ok(()) => {
                log.event(format!("{image} is live"));
                return Ok(log.report(image.to_string(), self.describe()));
            }
            Err(e) => e,
        };
        log.event(format!("FAILED: {cause}"));
        let cause = self.with_diagnosis(cause, &d, &mut log).await;
        let Some(previous) = previous.filter(|p| *p != image) else {
            return Err(DeployError::RolledBack {
                image: image.to_string(),
                cause: Box::new(cause),
                restored: None,
            });
        };
        log.event(format!("rolling back to {previous}"));
        let reason = format!("pipeline rollback to {previous}: {image} failed");
        match self.set_image(previous, &reason).await {
            Ok(patched) => match follow::rollout(
                self,
                &patched,
                Instant::now() + self.target.progress_timeout,
                &mut log,
            )
            .await
            {
                Ok(_) => Err(DeployError::RolledBack {
                    image: image.to_string(),
                    cause: Box::new(cause),
                    restored: Some(previous.to_string()),
                }),
                Err(rollback) => Err(self.rollback_failed(image, cause, previous, rollback)),
            },
            Err(rollback) => Err(self.rollback_failed(image, cause, previous, rollback)),
        }
    }

    fn rollback_failed(
        &self,
        image: &Pinned,
        cause: DeployError,
        previous: &Pinned,
        rollback: DeployError,
    ) -> DeployError {
        DeployError::RollbackFailed {
            image: image.to_string(),
            cause: Box::new(cause),
            restoring: previous.to_string(),
            rollback: Box::new(rollback),
        }
    }

    /// Sets the image, follows the rollout, then soaks.
    async fn roll(
        &self,
        image: &Pinned,
        cause: &str,
        log: &mut Log<'_>,
    ) -> Result<(), DeployError> {
        log.event(format!(
            "setting {}'s image to {image}",
            self.target.container
        ));
        let patched = self.set_image(image, cause).await?;
        let complete = follow::rollout(
            self,
            &patched,
            Instant::now() + self.target.progress_timeout,
            log,
        )
        .await?;
        follow::soak(self, &complete, self.target.soak_window, log).await
    }

    /// A rollout failure with what the Deployment's pods say.
    async fn with_diagnosis(
        &self,
        cause: DeployError,
        d: &Deployment,
        log: &mut Log<'_>,
    ) -> DeployError {
        let pods = diagnose::unwell_pods(self, d).await;
        if pods.is_empty() {
            return cause;
        }
        log.event(format!("pods: {}", pods.join("; ")));
        match cause {
            DeployError::Rollout { image, reason } => DeployError::Rollout {
                image,
                reason: format!("{reason}; {}", pods.join("; ")),
            },
            DeployError::Soak { seconds, reason } => DeployError::Soak {
                seconds,
                reason: format!("{reason}; {}", pods.join("; ")),
            },
            other => other,
        }
    }

    /// After a deployer died mid-way: keeps `pending` if the Deployment
    /// runs it and its rollout is complete and stays so for the soak
    /// window; else sets `recorded` back (or, with nothing recorded, leaves
    /// the Deployment as it is and says so). Returns what is live.
    pub async fn reconcile(
        &self,
        recorded: Option<&Pinned>,
        pending: Option<&Pinned>,
        progress: &Progress,
    ) -> Result<Option<Pinned>, DeployError> {
        Box::pin(self.reconcile_boxed(recorded, pending, progress)).await
    }

    async fn reconcile_boxed(
        &self,
        recorded: Option<&Pinned>,
        pending: Option<&Pinned>,
        progress: &Progress,
    ) -> Result<Option<Pinned>, DeployError> {
        let mut log = Log::new(progress);
        let d = self
            .api()
            .get(&self.target.deployment)
            .await
            .map_err(kube_error("read the deployment"))?;
        let current = self.container_image(&d)?;
        if let Some(p) = pending
            && current == p.to_string()
        {
            let kept = async {
                let complete = follow::rollout(
                    self,
                    &d,
                    Instant::now() + self.target.progress_timeout,
                    &mut log,
                )
                .await?;
                follow::soak(self, &complete, self.target.soak_window, &mut log).await
            };
            match kept.await {
                Ok(()) => return Ok(Some(p.clone())),
                Err(e) => log.event(format!("{p} is not healthy: {e}")),
            }
        }
        let Some(r) = recorded else {
            return Ok(None);
        };
        let patched = if current == r.to_string() {
            d
        } else {
            self.set_image(r, &format!("pipeline reconcile: back to {r}"))
                .await?
        };
        follow::rollout(
            self,
            &patched,
            Instant::now() + self.target.progress_timeout,
            &mut log,
        )
        .await?;
        Ok(Some(r.clone()))
    }
}
