//! Why a rollout failed, in the pods' words: containers waiting in a crash
//! loop or on an image pull, or exited with an error, and pods that cannot
//! be scheduled.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::KubeDeployer;

/// Waiting reasons that mean a container will not come up by itself.
const STUCK: [&str; 7] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
    "RunContainerError",
];
/// Pods described at most.
const SHOWN: usize = 5;

/// One line per unwell pod of the Deployment (by its selector's labels);
/// empty when none is, or when the pods cannot be listed.
pub(super) async fn unwell_pods(k: &KubeDeployer, d: &Deployment) -> Vec<String> {
    let labels = d
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    if labels.is_empty() {
        return Vec::new();
    }
    let pods: Api<Pod> = Api::namespaced(k.client.clone(), &k.target.namespace);
    match pods.list(&ListParams::default().labels(&labels)).await {
        Ok(list) => list.items.iter().filter_map(unwell).take(SHOWN).collect(),
        Err(_) => Vec::new(),
    }
}

/// What is wrong with a pod, if anything.
pub(super) fn unwell(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref()?;
    for c in status.container_statuses.iter().flatten() {
        let state = c.state.as_ref();
        let last_exit = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| format!(", last exit code {}", t.exit_code))
            .unwrap_or_default();
        if let Some(w) = state.and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref().filter(|r| STUCK.contains(r))
        {
            let message = w
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Some(format!(
                "pod {name}: container {} is {reason} ({} restarts{last_exit}){message}",
                c.name, c.restart_count
            ));
        }
        if let Some(t) = state.and_then(|s| s.terminated.as_ref())
            && t.exit_code != 0
        {
            return Some(format!(
                "pod {name}: container {} exited with code {}",
                c.name, t.exit_code
            ));
        }
    }
    let unschedulable = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    unschedulable.map(|c| {
        format!(
            "pod {name} cannot be scheduled: {}",
            c.message.as_deref().unwrap_or("no reason given")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "app-1"}, "status": status})).unwrap()
    }

    #[test]
    fn crash_loops_pulls_exits_and_scheduling_are_named() {
        let p = pod(
            json!({"containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 4,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"exitCode": 3}}}]}),
        );
        assert_eq!(
            unwell(&p).unwrap(),
            "pod app-1: container app is CrashLoopBackOff (4 restarts, last exit code 3): back-off 40s"
        );
        let p = pod(
            json!({"containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1}}}]}),
        );
        assert!(unwell(&p).unwrap().contains("exited with code 1"));
        let p = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}]}),
        );
        assert!(
            unwell(&p)
                .unwrap()
                .contains("cannot be scheduled: 0/3 nodes")
        );
        let p = pod(
            json!({"containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}}]}),
        );
        assert_eq!(unwell(&p), None);
    }
}
