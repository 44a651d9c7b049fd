//! Reading a sandbox pod's state: has it started, why not, how did it end.

use k8s_openapi::api::core::v1::Pod;

use super::objects::CONTAINER;
use crate::backend::driver::Ended;

/// Where a starting pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodStart {
    /// The container runs: sandbox-init waits for its job.
    Running,
    /// Not yet; why, for the error if it never starts.
    Pending(String),
    /// It will not start; why.
    Failed(String),
}

/// Container waiting reasons that do not go away by waiting.
const HOPELESS: [&str; 6] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

pub fn classify(pod: &Pod) -> PodStart {
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER);
    if let Some(state) = container.and_then(|c| c.state.as_ref()) {
        if state.running.is_some() {
            return PodStart::Running;
        }
        if let Some(t) = &state.terminated {
            return PodStart::Failed(format!(
                "the container exited (code {}{}) before its job arrived",
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(w) = &state.waiting {
            let reason = w.reason.clone().unwrap_or_default();
            let message = w.message.clone().unwrap_or_default();
            if HOPELESS.contains(&reason.as_str()) {
                return PodStart::Failed(format!("{reason}: {message}"));
            }
            return PodStart::Pending(
                format!("container waiting: {reason} {message}")
                    .trim()
                    .to_owned(),
            );
        }
    }
    match status.phase.as_deref() {
        Some("Failed") | Some("Succeeded") => {
            return PodStart::Failed(format!(
                "the pod ended ({}){}",
                status.reason.unwrap_or_default(),
                status.message.map(|m| format!(": {m}")).unwrap_or_default()
            ));
        }
        _ => {}
    }
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    match unscheduled {
        Some(c) => PodStart::Pending(format!(
            "not scheduled: {}",
            c.message
                .clone()
                .unwrap_or_else(|| c.reason.clone().unwrap_or_default())
        )),
        None => PodStart::Pending(format!(
            "pod {}",
            status.phase.unwrap_or_else(|| "Pending".into())
        )),
    }
}

/// How the sandbox container ended, once it has.
pub fn ended(pod: &Pod) -> Option<Ended> {
    let status = pod.status.as_ref()?;
    let c = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER)?;
    let t = c.state.as_ref()?.terminated.as_ref()?;
    Some(Ended {
        exit_code: Some(i64::from(t.exit_code)),
        oom_killed: t.reason.as_deref() == Some("OOMKilled"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "run"},
            "status": status,
        }))
        .unwrap()
    }

    fn container(state: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"phase": "Pending", "containerStatuses": [{
            "name": "sandbox", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": state,
        }]})
    }

    #[test]
    fn a_running_container_is_started() {
        let p = pod(container(
            serde_json::json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
        ));
        assert_eq!(classify(&p), PodStart::Running);
    }

    #[test]
    fn image_pull_failures_do_not_wait_for_the_deadline() {
        let p = pod(container(serde_json::json!({"waiting": {
            "reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}})));
        assert!(matches!(classify(&p), PodStart::Failed(m) if m.contains("ImagePullBackOff")));
        let p = pod(container(
            serde_json::json!({"waiting": {"reason": "ContainerCreating"}}),
        ));
        assert!(matches!(classify(&p), PodStart::Pending(_)));
    }

    #[test]
    fn an_unschedulable_pod_says_why() {
        let p = pod(serde_json::json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 Insufficient memory."}]}));
        assert_eq!(
            classify(&p),
            PodStart::Pending(
                "not scheduled: 0/1 nodes are available: 1 Insufficient memory.".into()
            )
        );
    }

    #[test]
    fn oom_kills_are_read_from_the_container_state() {
        let p = pod(container(
            serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        ));
        assert_eq!(
            ended(&p),
            Some(Ended {
                exit_code: Some(137),
                oom_killed: true
            })
        );
        let p = pod(container(
            serde_json::json!({"terminated": {"exitCode": 137, "reason": "Error"}}),
        ));
        assert!(
            !ended(&p).unwrap().oom_killed,
            "exit 137 alone is not a memory verdict"
        );
        let p = pod(container(serde_json::json!({"running": {}})));
        assert_eq!(ended(&p), None);
    }
}
