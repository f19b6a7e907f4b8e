//! The App's status, computed purely from what the reconcile found. Conditions
//! are decided here and nowhere else.
//!
//! - `status.revision` is the App's current revision (its spec now), whatever
//!   runs where.
//! - `status.stages` lists every stage in order (the policy's, or `default`),
//!   with the revision running there, if any.
//! - Without a policy, `Ready`, `Progressing` and `Degraded` follow the one
//!   Deployment, as they always did. With one, `Ready` means every stage
//!   that runs a revision is available (and at least one does); `Progressing`
//!   that one of them rolls out (or waits for its snapshot or namespace);
//!   `Degraded` that one of them fails.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use winky_crds::App;
use winky_crds::app::{AppStatus, StageStatus};
use winky_crds::common::RevisionRef;
use winky_crds::keys::{GIT_COMMIT_ANNOTATION, PULL_REQUEST_ANNOTATION};

use super::stages::{Run, Stage};
use super::validate::{Invalid, Plan};
use crate::conditions::{self, ConditionSpec, DEGRADED, PROGRESSING, READY};
use crate::driver::ChildFailure;
use crate::rollout::{Rollout, rollout, rollout_conditions};

/// One stage after the apply.
#[derive(Clone, Copy, Debug)]
pub struct StageOutcome<'a> {
    /// The stage and what it runs.
    pub stage: &'a Stage<'a>,
    /// Its Deployment as the server returned it, when it runs a revision.
    pub deployment: Option<&'a Deployment>,
}

/// What the reconcile found.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// The spec cannot be satisfied.
    Invalid(&'a Invalid),
    /// Every stage, in order, after its children were applied.
    Applied(&'a [StageOutcome<'a>]),
    /// The apiserver refused a child: retried with backoff.
    Failed(&'a ChildFailure),
}

/// The conditions the outcome calls for; `staged` when the App follows a
/// policy.
pub fn condition_specs(outcome: &Outcome<'_>, staged: bool) -> Vec<ConditionSpec> {
    match outcome {
        Outcome::Invalid(invalid) => conditions::unsatisfiable(invalid.reason(), invalid.message()),
        Outcome::Failed(failure) => failure.conditions(),
        Outcome::Applied(stages) if !staged => match stages.iter().find_map(|s| s.deployment) {
            Some(deployment) => {
                let desired = replicas(deployment).1;
                rollout_conditions(
                    rollout(deployment),
                    &format!("{desired}/{desired} replicas available"),
                )
            }
            None => staged_conditions(stages),
        },
        Outcome::Applied(stages) => staged_conditions(stages),
    }
}

/// Ready, Progressing and Degraded over every stage that runs (or should run)
/// a revision; messages name the stages.
fn staged_conditions(stages: &[StageOutcome<'_>]) -> Vec<ConditionSpec> {
    let mut available = Vec::new();
    let mut progressing: Vec<(&'static str, String)> = Vec::new();
    let mut failed: Vec<(&'static str, String)> = Vec::new();
    for outcome in stages {
        let name = &outcome.stage.target.stage;
        match (&outcome.stage.run, outcome.deployment) {
            (Run::Idle, _) => {}
            (Run::Runs(_), Some(deployment)) => {
                let desired = replicas(deployment).1;
                match rollout(deployment) {
                    Rollout::Complete => {
                        available.push(format!("{name}: {desired}/{desired} replicas available"));
                    }
                    Rollout::InProgress(message) => {
                        progressing.push(("RolloutInProgress", format!("{name}: {message}")));
                    }
                    Rollout::Failed(reason, message) => failed.push((reason, format!("{name}: {message}"))),
                }
            }
            (Run::Runs(_), None) => {
                progressing.push(("RolloutInProgress", format!("{name}: not applied yet")));
            }
            (
                Run::Held {
                    reason,
                    message,
                    degraded,
                    ..
                },
                _,
            ) => {
                let entry = (*reason, format!("{name}: {message}"));
                if *degraded {
                    failed.push(entry);
                } else {
                    progressing.push(entry);
                }
            }
        }
    }
    let join = |entries: &[(&'static str, String)]| {
        entries
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    if let Some((reason, _)) = failed.first() {
        let message = join(&failed);
        let progressing = match progressing.first() {
            Some((why, _)) => ConditionSpec::new(PROGRESSING, true, why, join(&progressing)),
            None => ConditionSpec::new(PROGRESSING, false, reason, message.clone()),
        };
        return vec![
            ConditionSpec::new(READY, false, reason, message.clone()),
            progressing,
            ConditionSpec::new(DEGRADED, true, reason, message),
        ];
    }
    if let Some((reason, _)) = progressing.first() {
        let message = join(&progressing);
        return vec![
            ConditionSpec::new(READY, false, reason, message.clone()),
            ConditionSpec::new(PROGRESSING, true, reason, message),
            ConditionSpec::new(DEGRADED, false, "AsExpected", ""),
        ];
    }
    if available.is_empty() {
        let message = "no stage runs a revision yet: waiting for a Promotion";
        return vec![
            ConditionSpec::new(READY, false, "NotPromoted", message),
            ConditionSpec::new(PROGRESSING, false, "NotPromoted", message),
            ConditionSpec::new(DEGRADED, false, "AsExpected", ""),
        ];
    }
    let message = available.join("; ");
    vec![
        ConditionSpec::new(READY, true, "Available", message.clone()),
        ConditionSpec::new(PROGRESSING, false, "RolloutComplete", message),
        ConditionSpec::new(DEGRADED, false, "AsExpected", ""),
    ]
}

/// Ready and desired replicas of a Deployment.
fn replicas(deployment: &Deployment) -> (i32, i32) {
    let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = deployment
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    (ready, desired)
}

/// In-cluster URL of a stage's Service.
pub fn url(plan: &Plan<'_>) -> String {
    format!(
        "http://{}.{}.svc:{}",
        plan.child, plan.target.namespace, plan.spec.port
    )
}

/// The status of one stage; `previous` is what the status said of it before.
fn stage_status(outcome: &StageOutcome<'_>, previous: Option<&StageStatus>, now: Timestamp) -> StageStatus {
    let target = &outcome.stage.target;
    let mut status = StageStatus {
        name: target.stage.clone(),
        namespace: target.namespace.clone(),
        ..StageStatus::default()
    };
    match (&outcome.stage.run, outcome.deployment) {
        (Run::Idle, _) => {}
        (
            Run::Held {
                revision, degraded, ..
            },
            _,
        ) => {
            status.revision = Some(revision.clone());
            status.phase = Some(if *degraded { "Degraded" } else { "Progressing" }.into());
        }
        (Run::Runs(plan), deployment) => {
            status.revision = Some(plan.revision.clone());
            status.url = Some(url(plan));
            status.since = match previous {
                Some(p) if p.revision.as_deref() == Some(plan.revision.as_str()) && p.since.is_some() => {
                    p.since.clone()
                }
                _ => Some(now.to_string()),
            };
            let phase = match deployment.map(rollout) {
                Some(Rollout::Complete) => "Available",
                Some(Rollout::Failed(..)) => "Degraded",
                Some(Rollout::InProgress(_)) | None => "Progressing",
            };
            status.phase = Some(phase.into());
            if let Some(deployment) = deployment {
                let (ready, desired) = replicas(deployment);
                status.replicas = Some(format!("{ready}/{desired}"));
            }
        }
    }
    status
}

/// `status` without what the emulator writes under its own field manager
/// (`crate::emulate`): `emulator` and `lastHandledRequestedAt`. The App
/// controller never sends them, so one owner per field.
pub fn without_emulator_fields(status: AppStatus) -> AppStatus {
    AppStatus {
        emulator: None,
        last_handled_requested_at: None,
        ..status
    }
}

/// The whole status for `outcome` at `now`, keeping what should not change
/// (but for the fields the emulator writes).
pub fn desired_status(app: &App, outcome: &Outcome<'_>, now: Timestamp) -> AppStatus {
    let old = app.status.clone().unwrap_or_default();
    let generation = app.metadata.generation;
    let staged = app.spec.policy.is_some();
    let conditions = conditions::merge(
        &old.conditions,
        &condition_specs(outcome, staged),
        generation,
        now,
    );
    let mut status = without_emulator_fields(AppStatus {
        observed_generation: generation,
        conditions,
        ..old.clone()
    });
    if let Outcome::Applied(stages) = outcome {
        let annotations = app.metadata.annotations.clone().unwrap_or_default();
        status.revision = Some(RevisionRef {
            id: crate::revision::of(app),
            git_commit: annotations.get(GIT_COMMIT_ANNOTATION).cloned(),
            pull_request: annotations
                .get(PULL_REQUEST_ANNOTATION)
                .and_then(|p| p.parse().ok()),
            image: app.spec.image.clone(),
        });
        status.stages = stages
            .iter()
            .map(|s| {
                let previous = old.stages.iter().find(|p| p.name == s.stage.target.stage);
                stage_status(s, previous, now)
            })
            .collect();
        // The first stage that runs a revision.
        status.url = stages.iter().find_map(|s| s.stage.plan()).map(url);
    }
    status
}

/// The image each stage that runs a revision runs, by stage name.
pub fn images(stages: &[Stage<'_>]) -> BTreeMap<String, String> {
    stages
        .iter()
        .filter_map(|s| Some((s.target.stage.clone(), s.plan()?.spec.image.clone())))
        .collect()
}
