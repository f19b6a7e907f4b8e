//! Where a Deployment's rollout stands, read from its status, and the
//! conditions that say so: shared by every controller whose workload is a
//! Deployment (the App's, an HTTP or document Function's).

use k8s_openapi::api::apps::v1::Deployment;

use crate::conditions::{ConditionSpec, DEGRADED, PROGRESSING, READY};

/// Where the rollout of the Deployment stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica runs the current template and is available.
    Complete,
    /// Still rolling out.
    InProgress(String),
    /// The Deployment controller reports a failure.
    Failed(&'static str, String),
}

/// Reads the rollout state from a Deployment's status.
pub fn rollout(deployment: &Deployment) -> Rollout {
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else {
        return Rollout::InProgress(format!(
            "0/{desired} replicas available; waiting for the Deployment controller"
        ));
    };
    for c in status.conditions.iter().flatten() {
        if c.type_ == "ReplicaFailure" && c.status == "True" {
            return Rollout::Failed("ReplicaFailure", c.message.clone().unwrap_or_default());
        }
        if c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return Rollout::Failed("ProgressDeadlineExceeded", c.message.clone().unwrap_or_default());
        }
    }
    let observed = status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if observed && updated == desired && available == desired && total == desired {
        Rollout::Complete
    } else {
        Rollout::InProgress(format!(
            "{available}/{desired} replicas available, {updated} updated"
        ))
    }
}

/// Ready, Progressing and Degraded for a Deployment's rollout; `available`
/// is the message once it is complete.
pub fn rollout_conditions(rollout: Rollout, available: &str) -> Vec<ConditionSpec> {
    match rollout {
        Rollout::Complete => vec![
            ConditionSpec::new(READY, true, "Available", available),
            ConditionSpec::new(PROGRESSING, false, "RolloutComplete", available),
            ConditionSpec::new(DEGRADED, false, "AsExpected", ""),
        ],
        Rollout::InProgress(message) => vec![
            ConditionSpec::new(READY, false, "RolloutInProgress", message.clone()),
            ConditionSpec::new(PROGRESSING, true, "RolloutInProgress", message),
            ConditionSpec::new(DEGRADED, false, "AsExpected", ""),
        ],
        Rollout::Failed(reason, message) => vec![
            ConditionSpec::new(READY, false, reason, message.clone()),
            ConditionSpec::new(PROGRESSING, false, reason, message.clone()),
            ConditionSpec::new(DEGRADED, true, reason, message),
        ],
    }
}
