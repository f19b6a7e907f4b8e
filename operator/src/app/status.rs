//! The App's status, computed purely from what the reconcile found. Conditions
//! are decided here and nowhere else.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use winky_crds::App;
use winky_crds::app::{AppStatus, StageStatus};
use winky_crds::common::RevisionRef;
use winky_crds::keys::{GIT_COMMIT_ANNOTATION, PULL_REQUEST_ANNOTATION};

use super::validate::{Invalid, Plan};
use crate::conditions::{self, ConditionSpec};
use crate::rollout::{Rollout, rollout, rollout_conditions};

/// What the reconcile found.
#[derive(Debug)]
pub enum Outcome<'a> {
    /// The spec cannot be satisfied.
    Invalid(&'a Invalid),
    /// The children were applied; the Deployment as the server returned it.
    Applied {
        /// The validated App.
        plan: &'a Plan<'a>,
        /// The applied Deployment.
        deployment: &'a Deployment,
    },
}

/// The conditions the outcome calls for.
pub fn condition_specs(outcome: &Outcome<'_>) -> Vec<ConditionSpec> {
    match outcome {
        Outcome::Invalid(invalid) => conditions::unsatisfiable(invalid.reason(), invalid.message()),
        Outcome::Applied { deployment, .. } => {
            let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            rollout_conditions(
                rollout(deployment),
                &format!("{desired}/{desired} replicas available"),
            )
        }
    }
}

/// The whole status for `outcome` at `now`, keeping what should not change.
pub fn desired_status(app: &App, outcome: &Outcome<'_>, now: Timestamp) -> AppStatus {
    let old = app.status.clone().unwrap_or_default();
    let generation = app.metadata.generation;
    let conditions = conditions::merge(&old.conditions, &condition_specs(outcome), generation, now);
    let mut status = AppStatus {
        observed_generation: generation,
        conditions,
        // Written by the emulator under its own field manager (crate::emulate).
        emulator: None,
        ..old.clone()
    };
    if let Outcome::Applied { plan, deployment } = outcome {
        let annotations = app.metadata.annotations.clone().unwrap_or_default();
        status.revision = Some(RevisionRef {
            id: plan.revision.clone(),
            git_commit: annotations.get(GIT_COMMIT_ANNOTATION).cloned(),
            pull_request: annotations
                .get(PULL_REQUEST_ANNOTATION)
                .and_then(|p| p.parse().ok()),
            image: app.spec.image.clone(),
        });
        let url = format!(
            "http://{}.{}.svc:{}",
            plan.name, plan.target.namespace, app.spec.port
        );
        let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ready = deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        let previous = old.stages.iter().find(|s| s.name == plan.target.stage);
        let since = match previous {
            Some(p) if p.revision.as_deref() == Some(plan.revision.as_str()) => p.since.clone(),
            _ => Some(now.to_string()),
        };
        let phase = match rollout(deployment) {
            Rollout::Complete => "Available",
            Rollout::InProgress(_) => "Progressing",
            Rollout::Failed(..) => "Degraded",
        };
        status.stages = vec![StageStatus {
            name: plan.target.stage.clone(),
            namespace: plan.target.namespace.clone(),
            revision: Some(plan.revision.clone()),
            phase: Some(phase.into()),
            url: Some(url.clone()),
            replicas: Some(format!("{ready}/{desired}")),
            since,
        }];
        status.url = Some(url);
    }
    status
}
