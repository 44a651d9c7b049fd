//! [`JobBackend`] on Kubernetes: one ephemeral namespace per job.
//!
//! Opening a job creates, in order: the namespace (Pod Security
//! "restricted" enforced), a ResourceQuota, a LimitRange, a NetworkPolicy
//! denying all traffic (and one allowing the egress a server-side grant
//! names, if any), and the namespace's `default` ServiceAccount applied with
//! `automountServiceAccountToken: false`. A sandbox is a pod in it
//! ([`objects::pod`]), attached over the API server; the step speaks the same
//! sandbox-init protocol as on Docker ([`crate::backend::driver`]). Closing
//! the job deletes the namespace (foreground), whatever happened; runners
//! delete namespaces left by dead runners or past their deadline.
//!
//! What Kubernetes cannot give that Docker does, said plainly:
//! - no per-pod process limit in the pod spec (the kubelet's `podPidsLimit`
//!   applies; sandbox-init also limits open files itself);
//! - emptyDir mounts cannot be `noexec`;
//! - the node's container runtime keeps the container's stdout (sandbox-init's
//!   frames) in its log files, rotated by the kubelet; Docker's sandboxes
//!   use the `none` log driver.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use tracing::{debug, info, warn};

pub mod attach;
pub mod objects;
pub mod policy;
mod start;

use super::driver::{self, Ended, Probe, StepId};
use super::orphans::{self, Decision, Owner, Record};
use super::protocol::Step;
use super::uids::UidAllocator;
use super::{
    BackendError, BackendStats, CollectReport, ImageCheck, JobBackend, JobScope, JobSpec,
    OrphanScope, OutputSink, SandboxHandle, SandboxSpec, StepOutcome,
};
use crate::limits::StageLimits;
pub use attach::{KubeAttach, PodStreams};
pub use policy::NamespacePolicy;
use start::PodStart;

/// The field manager of the runner's server-side applies.
const FIELD_MANAGER: &str = "runner";

/// Jobs as namespaces of one cluster.
pub struct KubernetesBackend {
    client: Client,
    policy: Arc<NamespacePolicy>,
    owner: Owner,
    streams: Arc<dyn PodStreams>,
    /// A uid of its own for every sandbox pod this runner keeps at once
    /// (distinct per runner process; pods of several runners on one node
    /// may share one).
    uids: Arc<UidAllocator>,
    stats: BackendStats,
}

impl std::fmt::Debug for KubernetesBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesBackend")
            .field("prefix", &self.policy.prefix)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl KubernetesBackend {
    /// A backend over `client`, attaching to pods through the API server.
    pub fn new(
        client: Client,
        policy: Arc<NamespacePolicy>,
        uids: Arc<UidAllocator>,
    ) -> KubernetesBackend {
        let streams = Arc::new(KubeAttach::new(client.clone()));
        Self::with_streams(client, policy, uids, streams)
    }

    /// A backend whose pod attachments come from `streams` (the tests'
    /// in-memory sandbox-init, since an HTTP mock cannot upgrade to a
    /// WebSocket).
    pub fn with_streams(
        client: Client,
        policy: Arc<NamespacePolicy>,
        uids: Arc<UidAllocator>,
        streams: Arc<dyn PodStreams>,
    ) -> KubernetesBackend {
        KubernetesBackend {
            client,
            policy,
            owner: Owner::current(),
            streams,
            uids,
            stats: BackendStats::default(),
        }
    }

    /// Connects with a kubeconfig file (and context), or else the usual
    /// places: `$KUBECONFIG`, `~/.kube/config`, the in-cluster service account.
    pub async fn connect(
        kubeconfig: Option<&std::path::Path>,
        context: Option<&str>,
        policy: Arc<NamespacePolicy>,
        uids: Arc<UidAllocator>,
    ) -> Result<KubernetesBackend, BackendError> {
        let unreachable = |message: String| BackendError::Unreachable {
            backend: "Kubernetes",
            message,
        };
        let options = kube::config::KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        let config = match kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| unreachable(format!("kubeconfig {}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| unreachable(format!("kubeconfig {}: {e}", path.display())))?
            }
            None if context.is_some() => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| unreachable(e.to_string()))?,
            None => kube::Config::infer()
                .await
                .map_err(|e| unreachable(e.to_string()))?,
        };
        let client = Client::try_from(config).map_err(|e| unreachable(e.to_string()))?;
        Ok(Self::new(client, policy, uids))
    }

    pub fn policy(&self) -> &NamespacePolicy {
        &self.policy
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates everything in the job's namespace after the namespace itself.
    async fn furnish(&self, job: &JobSpec, ns: &str) -> Result<(), BackendError> {
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let fail = |action: &str| {
            let job = job.id.clone();
            let action = action.to_owned();
            move |e| api_error(&job, &action, e)
        };
        let p = &self.policy;
        self.api::<ResourceQuota>(ns)
            .create(&pp, &objects::resource_quota(p, job))
            .await
            .map_err(fail("creating the resource quota"))?;
        self.api::<LimitRange>(ns)
            .create(&pp, &objects::limit_range(p, job))
            .await
            .map_err(fail("creating the limit range"))?;
        self.api::<NetworkPolicy>(ns)
            .create(&pp, &objects::deny_all(p, job))
            .await
            .map_err(fail("creating the deny-all network policy"))?;
        if let Some(grant) = &job.egress {
            let rules = p.egress.get(grant).ok_or_else(|| BackendError::Call {
                job: job.id.clone(),
                action: "granting egress".into(),
                message: format!(
                    "the server policy names egress grant {grant:?}, which the namespace policy does not define"
                ),
            })?;
            self.api::<NetworkPolicy>(ns)
                .create(&pp, &objects::egress(p, job, grant, rules))
                .await
                .map_err(fail("creating the egress network policy"))?;
        }
        // The service account controller creates `default` at some point
        // after the namespace: a server-side apply works before and after.
        self.api::<ServiceAccount>(ns)
            .patch(
                "default",
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&objects::default_service_account(p, job)),
            )
            .await
            .map_err(fail("applying the default service account"))?;
        Ok(())
    }

    async fn delete_namespace(&self, job: &str, ns: &str) -> Result<(), BackendError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.delete(ns, &DeleteParams::foreground()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error(job, "deleting the namespace", e)),
        }
    }

    /// Waits until the pod's container runs (its sandbox-init waiting for a
    /// job), or fails with why it cannot.
    async fn wait_running(&self, job: &str, ns: &str, pod: &str) -> Result<(), BackendError> {
        let api: Api<Pod> = self.api(ns);
        let started = Instant::now();
        let limit = self.policy.start_timeout;
        let mut last = String::from("not scheduled yet");
        while started.elapsed() < limit {
            let left = limit.saturating_sub(started.elapsed());
            let wp = WatchParams::default()
                .fields(&format!("metadata.name={pod}"))
                .timeout(left.as_secs().clamp(1, 290) as u32);
            let mut events = api
                .watch(&wp, "0")
                .await
                .map_err(|e| api_error(job, "watching the sandbox pod", e))?
                .boxed();
            loop {
                let next = tokio::time::timeout(left, events.try_next()).await;
                let event = match next {
                    Err(_) | Ok(Ok(None)) => break,
                    Ok(Ok(Some(ev))) => ev,
                    Ok(Err(e)) => return Err(api_error(job, "watching the sandbox pod", e)),
                };
                match event {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => match start::classify(&p) {
                        PodStart::Running => return Ok(()),
                        PodStart::Pending(why) => last = why,
                        PodStart::Failed(reason) => {
                            return Err(BackendError::StartFailed {
                                job: job.to_owned(),
                                sandbox: pod.to_owned(),
                                reason,
                            });
                        }
                    },
                    WatchEvent::Deleted(_) => {
                        return Err(BackendError::StartFailed {
                            job: job.to_owned(),
                            sandbox: pod.to_owned(),
                            reason: "the pod was deleted before it started".into(),
                        });
                    }
                    WatchEvent::Bookmark(_) => {}
                    WatchEvent::Error(e) => {
                        return Err(BackendError::Call {
                            job: job.to_owned(),
                            action: "watching the sandbox pod".into(),
                            message: e.message,
                        });
                    }
                }
            }
        }
        Err(BackendError::StartTimeout {
            job: job.to_owned(),
            sandbox: pod.to_owned(),
            waited_secs: limit.as_secs(),
            detail: last,
        })
    }
}

/// A Kubernetes API error as a backend error: refusals (quota, admission)
/// apart from other failures.
fn api_error(job: &str, action: &str, e: kube::Error) -> BackendError {
    match e {
        kube::Error::Api(s) if matches!(s.code, 403 | 422) => BackendError::Refused {
            job: job.to_owned(),
            action: action.to_owned(),
            message: s.message,
        },
        kube::Error::Api(s) => BackendError::Call {
            job: job.to_owned(),
            action: action.to_owned(),
            message: format!("{} (HTTP {}, {})", s.message, s.code, s.reason),
        },
        other => BackendError::Call {
            job: job.to_owned(),
            action: action.to_owned(),
            message: other.to_string(),
        },
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The pod of a running step, as the driver sees it.
struct PodProbe<'a> {
    backend: &'a KubernetesBackend,
    job: &'a str,
    namespace: &'a str,
    pod: &'a str,
}

#[async_trait::async_trait]
impl Probe for PodProbe<'_> {
    async fn kill(&self) -> Result<(), BackendError> {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match self
            .backend
            .api::<Pod>(self.namespace)
            .delete(self.pod, &dp)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error(self.job, "stopping the sandbox pod", e)),
        }
    }

    async fn ended(&self, wait: Duration) -> Result<Ended, BackendError> {
        let api: Api<Pod> = self.backend.api(self.namespace);
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let pod = api
                .get(self.pod)
                .await
                .map_err(|e| api_error(self.job, "reading the sandbox pod", e))?;
            if let Some(ended) = start::ended(&pod) {
                return Ok(ended);
            }
            if started.elapsed() >= wait {
                return Ok(Ended::default());
            }
            tokio::time::sleep(pause.min(wait.saturating_sub(started.elapsed()))).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

#[async_trait::async_trait]
impl JobBackend for KubernetesBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.client
            .apiserver_version()
            .await
            .map(|_| ())
            .map_err(|e| BackendError::Unreachable {
                backend: "Kubernetes",
                message: e.to_string(),
            })
    }

    async fn inspect_image(&self, _image: &str) -> Result<ImageCheck, BackendError> {
        // Nodes pull images; the runner cannot see them from here.
        Ok(ImageCheck::Unknown)
    }

    fn stats(&self) -> &BackendStats {
        &self.stats
    }

    async fn open_job(&self, job: &JobSpec) -> Result<JobScope, BackendError> {
        if !super::spec::valid_job_id(&job.id) {
            return Err(BackendError::Call {
                job: job.id.clone(),
                action: "opening the job".into(),
                message: "the job id cannot name a namespace".into(),
            });
        }
        let ns = self.policy.namespace_of(&job.id);
        let deadline = SystemTime::now() + job.lifetime;
        let namespace =
            objects::namespace(&self.policy, job, &self.owner.to_label(), unix(deadline));
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &namespace)
            .await
            .map_err(|e| api_error(&job.id, "creating the namespace", e))?;
        if let Err(cause) = self.furnish(job, &ns).await {
            let cleanup = self.delete_namespace(&job.id, &ns).await;
            return Err(BackendError::with_cleanup(cause, cleanup));
        }
        info!(job.id = %job.id, namespace = %ns, "job namespace ready");
        Ok(JobScope {
            spec: job.clone(),
            location: ns,
            deadline,
        })
    }

    async fn start_sandbox(
        &self,
        scope: &JobScope,
        sandbox: &SandboxSpec,
    ) -> Result<SandboxHandle, BackendError> {
        let job = scope.id();
        let lease = self.uids.lease().map_err(|source| BackendError::Uid {
            job: job.to_owned(),
            source,
        })?;
        let pod = objects::pod(&self.policy, &scope.spec, sandbox, lease.uid());
        let name = sandbox.role.clone();
        let started = async {
            self.api::<Pod>(&scope.location)
                .create(&PostParams::default(), &pod)
                .await
                .map_err(|e| api_error(job, "creating the sandbox pod", e))?;
            self.wait_running(job, &scope.location, &name).await?;
            self.streams.attach(&scope.location, &name).await
        }
        .await;
        let attachment = match started {
            Ok(a) => a,
            Err(e) => {
                self.stats.start_failures.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.stats.sandboxes_started.fetch_add(1, Ordering::Relaxed);
        debug!(job.id = %job, pod = %name, "sandbox pod attached");
        // Dropped unstopped (a cancelled job), the pod goes; the namespace
        // goes with the job in any case.
        let on_drop: super::OnDrop = {
            let api = self.api::<Pod>(&scope.location);
            let pod = name.clone();
            Box::new(move |lease| {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        let _ = api.delete(&pod, &DeleteParams::background()).await;
                        drop(lease);
                    });
                }
            })
        };
        let uid = lease.uid();
        Ok(SandboxHandle::new(
            job,
            &sandbox.role,
            format!("{}/{}", scope.location, name),
            uid,
            attachment,
            Some(lease),
            Some(on_drop),
        ))
    }

    async fn run_step(
        &self,
        sandbox: &mut SandboxHandle,
        step: &Step<'_>,
        limits: &StageLimits,
        output: Option<&OutputSink>,
    ) -> Result<StepOutcome, BackendError> {
        let (namespace, pod) = sandbox
            .name
            .split_once('/')
            .map(|(n, p)| (n.to_owned(), p.to_owned()))
            .unwrap_or_default();
        let probe = PodProbe {
            backend: self,
            job: &sandbox.job,
            namespace: &namespace,
            pod: &pod,
        };
        let id = StepId {
            job: &sandbox.job,
            sandbox: &sandbox.role,
        };
        driver::drive(id, &mut sandbox.attachment, step, limits, output, &probe).await
    }

    async fn stop_sandbox(&self, sandbox: SandboxHandle) -> Result<(), BackendError> {
        let name = sandbox.name.clone();
        let job = sandbox.job.clone();
        let lease = sandbox.disarm();
        let Some((namespace, pod)) = name.split_once('/') else {
            return Ok(());
        };
        let probe = PodProbe {
            backend: self,
            job: &job,
            namespace,
            pod,
        };
        let stopped = probe.kill().await;
        // The uid is free again once the pod is being deleted: its
        // processes get no more than the one-second grace.
        drop(lease);
        if stopped.is_err() {
            self.stats.remove_failures.fetch_add(1, Ordering::Relaxed);
        }
        stopped
    }

    async fn close_job(&self, scope: JobScope) -> Result<(), BackendError> {
        self.delete_namespace(scope.id(), &scope.location).await
    }

    async fn remove_job(&self, job_id: &str) -> Result<(), BackendError> {
        self.delete_namespace(job_id, &self.policy.namespace_of(job_id))
            .await
    }

    async fn collect_orphans(
        &self,
        scope: OrphanScope,
        dry_run: bool,
    ) -> Result<CollectReport, BackendError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let lp =
            ListParams::default().labels(&format!("{}={}", objects::MANAGED_BY, objects::MANAGER));
        let list = api
            .list(&lp)
            .await
            .map_err(|e| api_error("-", "listing job namespaces", e))?;
        let prefix = format!("{}-", self.policy.prefix);
        let mut report = CollectReport::default();
        let now = unix(SystemTime::now());
        for ns in list.items {
            let Some(name) = ns.metadata.name.clone() else {
                continue;
            };
            if !name.starts_with(&prefix) {
                continue;
            }
            if ns.metadata.deletion_timestamp.is_some() {
                report.kept += 1;
                continue;
            }
            let decision = orphans::decide(
                &record(&ns, self.policy.deadline_grace),
                now,
                scope,
                Owner::is_alive,
                Owner::is_local,
            );
            match decision {
                Decision::Keep(_) => report.kept += 1,
                Decision::Remove(why) => {
                    info!(namespace = %name, reason = why, dry_run, "collecting");
                    if dry_run {
                        report.removed.push(name);
                        continue;
                    }
                    match self.delete_namespace("-", &name).await {
                        Ok(()) => report.removed.push(name),
                        Err(e) => {
                            warn!(namespace = %name, error = %e, "could not delete an orphaned job namespace");
                            report.failed.push((name, e));
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}

/// What a namespace records of itself, from its annotations: its owner,
/// and its deadline plus the policy's grace.
fn record(ns: &Namespace, grace: Duration) -> Record {
    let notes = ns.metadata.annotations.clone().unwrap_or_default();
    let deadline = notes
        .get(objects::DEADLINE)
        .and_then(|d| d.parse::<u64>().ok())
        // A namespace's annotations are not ours alone to write: a huge
        // deadline saturates rather than overflowing.
        .map(|d| d.saturating_add(grace.as_secs()))
        // No readable deadline: treat it as long past.
        .unwrap_or(0);
    Record {
        owner: notes.get(objects::OWNER).cloned(),
        expires: Some(deadline),
    }
}

#[cfg(test)]
mod mock_tests;
