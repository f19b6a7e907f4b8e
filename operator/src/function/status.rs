//! A Function's status, computed purely from what the reconcile found.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use winky_crds::Function;
use winky_crds::function::{FunctionStatus, WorkloadRef};

use crate::conditions::{self, ConditionSpec, DEGRADED, PROGRESSING, READY};
use crate::driver::ChildFailure;
use crate::rollout::{rollout, rollout_conditions};

/// Why a Function cannot run. Each variant is a condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `spec.app` names an App that does not exist in the namespace.
    AppNotFound { app: String },
    /// A secret reads from Vault but the operator has no Vault.
    VaultNotConfigured { variable: String },
    /// `trigger.document.collection` names a collection the App does not declare.
    CollectionNotFound { app: String, collection: String },
}

impl Invalid {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::AppNotFound { .. } => "AppNotFound",
            Self::VaultNotConfigured { .. } => "VaultNotConfigured",
            Self::CollectionNotFound { .. } => "CollectionNotFound",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::AppNotFound { app } => {
                format!(
                    "spec.app names App {app:?}, which does not exist in this namespace; nothing of the function runs (its workload, Service, NetworkPolicy and ServiceAccount are deleted) until the App exists again"
                )
            }
            Self::VaultNotConfigured { variable } => format!(
                "spec.secrets[{variable}] reads from Vault, but the operator runs without --vault-addr; use secretKeyRef or configure Vault"
            ),
            Self::CollectionNotFound { app, collection } => format!(
                "spec.trigger.document.collection names collection {collection:?}, which App {app:?} does not declare in spec.runtime.collections; declare it there or trigger on one it declares"
            ),
        }
    }
}

/// What the reconcile found.
#[derive(Debug)]
pub enum Outcome<'a> {
    Invalid(&'a Invalid),
    /// A Deployment (HTTP or document trigger) as the server returned it.
    Deployment(&'a Deployment),
    /// A CronJob with its schedule.
    Scheduled {
        cron: &'a str,
    },
    /// The apiserver refused a child: retried with backoff.
    Failed(&'a ChildFailure),
}

pub fn condition_specs(outcome: &Outcome<'_>) -> Vec<ConditionSpec> {
    match outcome {
        Outcome::Invalid(invalid) => conditions::unsatisfiable(invalid.reason(), invalid.message()),
        Outcome::Failed(failure) => failure.conditions(),
        Outcome::Scheduled { cron, .. } => {
            let message = format!("runs on the schedule {cron:?}, one run at a time");
            vec![
                ConditionSpec::new(READY, true, "Scheduled", message.clone()),
                ConditionSpec::new(PROGRESSING, false, "Scheduled", message),
                ConditionSpec::new(DEGRADED, false, "AsExpected", ""),
            ]
        }
        Outcome::Deployment(deployment) => {
            rollout_conditions(rollout(deployment), "the function's pod is available")
        }
    }
}

/// The status this controller owns for `outcome` at `now`. `emulator` is
/// left unset: the emulator runner owns that field (its own field manager).
pub fn desired_status(
    function: &Function,
    outcome: &Outcome<'_>,
    workload: Option<(&'static str, String)>,
    now: Timestamp,
) -> FunctionStatus {
    let old = function.status.clone().unwrap_or_default();
    let generation = function.metadata.generation;
    FunctionStatus {
        observed_generation: generation,
        conditions: conditions::merge(&old.conditions, &condition_specs(outcome), generation, now),
        workload: match (workload, outcome) {
            (Some((kind, name)), _) => Some(WorkloadRef {
                kind: kind.into(),
                name,
            }),
            // Without its App nothing runs: the workload was deleted.
            (None, Outcome::Invalid(Invalid::AppNotFound { .. })) => None,
            (None, _) => old.workload.clone(),
        },
        // Written by the emulator under its own field manager (crate::emulate).
        emulator: None,
    }
}
