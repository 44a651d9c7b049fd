//! `kubectl rollout status deployment`'s decision, as a pure function of
//! the Deployment object (kubectl's `DeploymentStatusViewer`), applied to
//! every watch event:
//!
//! 1. unless `metadata.generation <= status.observedGeneration`, the
//!    controller has not seen the new spec yet: wait;
//! 2. the Progressing condition with reason `ProgressDeadlineExceeded`:
//!    failed;
//! 3. `updatedReplicas < spec.replicas`: wait;
//! 4. `replicas > updatedReplicas` (old replicas pending termination): wait;
//! 5. `availableReplicas < updatedReplicas`: wait;
//! 6. done.
//!
//! kube-runtime's `is_deployment_completed` skips step 1, so right after a
//! patch it reports the previous rollout's completion as this one's: not
//! used here.

use k8s_openapi::api::apps::v1::Deployment;

/// The reason of the Progressing condition when the deadline passed.
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

/// Where a rollout stands, with kubectl's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    Complete(String),
    Waiting(String),
    Failed(String),
}

impl RolloutStatus {
    pub fn message(&self) -> &str {
        match self {
            RolloutStatus::Complete(m) | RolloutStatus::Waiting(m) | RolloutStatus::Failed(m) => m,
        }
    }
}

pub fn rollout_status(d: &Deployment) -> RolloutStatus {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutStatus::Waiting(
            "Waiting for deployment spec update to be observed...".into(),
        );
    }
    let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)
    });
    if deadline_exceeded {
        return RolloutStatus::Failed(format!(
            "deployment {name:?} exceeded its progress deadline"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if let Some(wanted) = d.spec.as_ref().and_then(|s| s.replicas)
        && updated < wanted
    {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    let replicas = status.replicas.unwrap_or(0);
    if replicas > updated {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    let available = status.available_replicas.unwrap_or(0);
    if available < updated {
        return RolloutStatus::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutStatus::Complete(format!("deployment {name:?} successfully rolled out"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A Deployment of 3 replicas at `generation`, its status as given.
    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "app", "generation": generation},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "app"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "i"}]}}},
            "status": status,
        }))
        .unwrap()
    }

    fn done() -> serde_json::Value {
        json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})
    }

    #[test]
    fn an_unobserved_spec_waits_even_when_the_old_rollout_was_complete() {
        // What kube-runtime's helper gets wrong: the status still describes
        // generation 2, complete, while the spec is at 3.
        let s = rollout_status(&deployment(3, done()));
        assert_eq!(
            s,
            RolloutStatus::Waiting("Waiting for deployment spec update to be observed...".into())
        );
        // No status at all yet: also waiting.
        assert!(matches!(
            rollout_status(&deployment(1, json!({}))),
            RolloutStatus::Waiting(_)
        ));
    }

    #[test]
    fn the_progress_deadline_fails() {
        let mut st = done();
        st["updatedReplicas"] = json!(1);
        st["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": PROGRESS_DEADLINE_EXCEEDED}]);
        assert_eq!(
            rollout_status(&deployment(2, st)),
            RolloutStatus::Failed("deployment \"app\" exceeded its progress deadline".into())
        );
    }

    #[test]
    fn other_progressing_reasons_do_not_fail() {
        let mut st = done();
        st["conditions"] = json!([
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            {"type": "Available", "status": "False", "reason": PROGRESS_DEADLINE_EXCEEDED},
        ]);
        assert!(matches!(
            rollout_status(&deployment(2, st)),
            RolloutStatus::Complete(_)
        ));
    }

    #[test]
    fn fewer_updated_replicas_than_wanted_wait() {
        let mut st = done();
        st["updatedReplicas"] = json!(1);
        assert_eq!(
            rollout_status(&deployment(2, st)).message(),
            "Waiting for deployment \"app\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
    }

    #[test]
    fn old_replicas_pending_termination_wait() {
        let mut st = done();
        st["replicas"] = json!(4);
        assert_eq!(
            rollout_status(&deployment(2, st)).message(),
            "Waiting for deployment \"app\" rollout to finish: 1 old replicas are pending termination..."
        );
    }

    #[test]
    fn unavailable_updated_replicas_wait() {
        let mut st = done();
        st["availableReplicas"] = json!(2);
        assert_eq!(
            rollout_status(&deployment(2, st)).message(),
            "Waiting for deployment \"app\" rollout to finish: 2 of 3 updated replicas are available..."
        );
    }

    #[test]
    fn everything_updated_and_available_is_complete() {
        assert_eq!(
            rollout_status(&deployment(2, done())),
            RolloutStatus::Complete("deployment \"app\" successfully rolled out".into())
        );
        // Observed beyond the generation (as after a status-only update): complete too.
        let mut st = done();
        st["observedGeneration"] = json!(5);
        assert!(matches!(
            rollout_status(&deployment(2, st)),
            RolloutStatus::Complete(_)
        ));
    }

    #[test]
    fn without_spec_replicas_the_update_count_is_not_compared() {
        // kubectl skips the check when spec.replicas is unset.
        let mut d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 0, "updatedReplicas": 0, "availableReplicas": 0}),
        );
        d.spec.as_mut().unwrap().replicas = None;
        assert!(matches!(rollout_status(&d), RolloutStatus::Complete(_)));
    }
}
