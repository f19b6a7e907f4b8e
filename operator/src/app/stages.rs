//! Which revision runs in which stage, decided purely from what the caches
//! hold.
//!
//! ```text
//!   no spec.policy ─▶ [default: the App's namespace, its current spec]
//!   spec.policy ───▶ for each stage of the PromotionPolicy, in order:
//!                      namespace = the stage's template ({app.namespace}, {app.name}),
//!                                  or the App's own
//!                      the Promotion of (App, stage) in phase Promoted?
//!                        none ──────────────▶ Idle: nothing runs (its children go)
//!                        one ─▶ its snapshot, ControllerRevision <app>-<revision>?
//!                                 found ───▶ Runs: the snapshot's spec, not the App's
//!                                 missing ─▶ Held: what runs stays, waiting for it
//! ```
//!
//! A held stage keeps its children as they are and applies nothing: also
//! when its namespace is being deleted, or when another App's children hold
//! its names there ([`hold`]).

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use winky_crds::App;
use winky_crds::policy::PromotionPolicySpec;
use winky_crds::promotion::{Phase, Promotion, RevisionSnapshot, snapshot_name};

use super::validate::{DEFAULT_STAGE, Invalid, Plan, Target};
use crate::naming;

/// The longest name a child may have: a Service's name is an RFC 1035 label.
const MAX_CHILD_NAME: usize = 63;

/// Where a stage runs and what its children are called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageTarget {
    /// Stage name (`winky.dev/stage`).
    pub stage: String,
    /// Namespace of its children.
    pub namespace: String,
    /// Base name of its children.
    pub child: String,
}

/// What one stage runs.
#[derive(Clone, Debug)]
pub enum Run<'a> {
    /// No revision is promoted into the stage: nothing runs there.
    Idle,
    /// The plan of the revision that runs there.
    Runs(Box<Plan<'a>>),
    /// A revision is promoted into the stage but cannot be applied now; what
    /// runs there stays as it is.
    Held {
        /// The promoted revision.
        revision: String,
        /// CamelCase reason, for conditions.
        reason: &'static str,
        /// What a user needs to know.
        message: String,
        /// Whether waiting will not help (`Degraded` rather than `Progressing`).
        degraded: bool,
    },
}

/// One stage of an App and what it runs.
#[derive(Clone, Debug)]
pub struct Stage<'a> {
    /// Where it runs.
    pub target: StageTarget,
    /// What it runs.
    pub run: Run<'a>,
}

impl<'a> Stage<'a> {
    /// The plan of the stage, when it runs a revision.
    pub fn plan(&self) -> Option<&Plan<'a>> {
        match &self.run {
            Run::Runs(plan) => Some(plan.as_ref()),
            _ => None,
        }
    }
}

/// The one stage of an App without a policy: `plan`, its current spec in
/// its own namespace.
pub fn unstaged(plan: Plan<'_>) -> Vec<Stage<'_>> {
    vec![Stage {
        target: StageTarget {
            stage: plan.target.stage.clone(),
            namespace: plan.target.namespace.clone(),
            child: plan.child.clone(),
        },
        run: Run::Runs(Box::new(plan)),
    }]
}

/// Where each stage of `policy` runs for the App `app` of `app_namespace`,
/// in the policy's order ([`naming::stage_namespace`],
/// [`naming::stage_children`]); the `default` stage without a policy.
pub fn targets(
    app: &str,
    app_namespace: &str,
    policy: Option<&PromotionPolicySpec>,
) -> Result<Vec<StageTarget>, Invalid> {
    let Some(policy) = policy else {
        return Ok(vec![StageTarget {
            stage: DEFAULT_STAGE.into(),
            namespace: app_namespace.into(),
            child: app.into(),
        }]);
    };
    let namespaces: Vec<String> = policy
        .stages
        .iter()
        .map(|s| naming::stage_namespace(s.namespace.as_deref(), app_namespace, app))
        .collect();
    let pairs: Vec<(&str, &str)> = policy
        .stages
        .iter()
        .zip(&namespaces)
        .map(|(s, ns)| (s.name.as_str(), ns.as_str()))
        .collect();
    let children = naming::stage_children(app, &pairs);
    policy
        .stages
        .iter()
        .zip(namespaces)
        .zip(children)
        .map(|((stage, namespace), child)| {
            if !naming::is_namespace_name(&namespace) {
                return Err(Invalid::StageNamespace {
                    stage: stage.name.clone(),
                    namespace,
                });
            }
            if child.len() > MAX_CHILD_NAME {
                return Err(Invalid::StageName {
                    stage: stage.name.clone(),
                    name: child,
                });
            }
            Ok(StageTarget {
                stage: stage.name.clone(),
                namespace,
                child,
            })
        })
        .collect()
}

/// The Promotion of `app` in phase `Promoted` into `stage`. The Promotion
/// controller keeps at most one; should two meet for an instant (one
/// promoted, the other not retired yet), the newest wins: the latest
/// `creationTimestamp`, then the greatest name.
pub fn promoted<'p>(promotions: &'p [Arc<Promotion>], app: &str, stage: &str) -> Option<&'p Promotion> {
    promotions
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| p.spec.app == app && p.spec.stage == stage)
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == Phase::Promoted))
        .max_by(|a, b| {
            let created = |p: &Promotion| p.metadata.creation_timestamp.clone().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        })
}

/// The [`RevisionSnapshot`] a ControllerRevision keeps, if it keeps one of
/// `revision`.
pub fn read_snapshot(snapshot: &ControllerRevision, revision: &str) -> Result<RevisionSnapshot, String> {
    let data = snapshot
        .data
        .as_ref()
        .ok_or_else(|| "it has no data".to_string())?;
    let kept: RevisionSnapshot = serde_json::from_value(data.0.clone())
        .map_err(|e| format!("its data is not a revision snapshot: {e}"))?;
    if kept.revision.id != revision {
        return Err(format!("it keeps revision {}", kept.revision.id));
    }
    Ok(kept)
}

/// What each stage of `policy` runs for `app`, whose `plan` (its current
/// spec, validated) gives the App's name and namespace: the revision of the
/// Promotion `Promoted` into the stage ([`promoted`], among `promotions`),
/// built from its snapshot, which `snapshot` looks up by revision id.
pub fn resolve<'a>(
    app: &'a App,
    plan: &Plan<'a>,
    policy: &PromotionPolicySpec,
    promotions: &[Arc<Promotion>],
    snapshot: impl Fn(&str) -> Option<Arc<ControllerRevision>>,
) -> Result<Vec<Stage<'a>>, Invalid> {
    let targets = targets(&plan.name, &plan.app_namespace, Some(policy))?;
    let stages = targets
        .into_iter()
        .map(|target| {
            let run = match promoted(promotions, &plan.name, &target.stage) {
                None => Run::Idle,
                Some(promotion) => {
                    let revision = promotion.spec.revision.id.clone();
                    let name = snapshot_name(&plan.name, &revision);
                    match snapshot(&revision).map(|s| read_snapshot(&s, &revision)) {
                        None => Run::Held {
                            message: format!(
                                "revision {revision} is promoted; waiting for its snapshot, ControllerRevision {name}"
                            ),
                            revision,
                            reason: "WaitingForSnapshot",
                            degraded: false,
                        },
                        Some(Err(why)) => Run::Held {
                            message: format!(
                                "revision {revision} is promoted, but ControllerRevision {name} cannot be run: {why}"
                            ),
                            revision,
                            reason: "SnapshotUnreadable",
                            degraded: true,
                        },
                        Some(Ok(kept)) => Run::Runs(Box::new(Plan {
                            app,
                            name: plan.name.clone(),
                            app_namespace: plan.app_namespace.clone(),
                            child: target.child.clone(),
                            target: Target {
                                stage: target.stage.clone(),
                                namespace: target.namespace.clone(),
                            },
                            revision,
                            spec: Cow::Owned(kept.app),
                        })),
                    }
                }
            };
            Stage { target, run }
        })
        .collect();
    Ok(stages)
}

/// Holds every stage that runs a revision where it cannot be applied now:
/// its namespace is being deleted (`terminating`), or the children of
/// another App of the same name already hold its names there (`claimed`
/// says whose: `<namespace>/<app>`).
pub fn hold<'a>(
    stages: Vec<Stage<'a>>,
    terminating: impl Fn(&str) -> bool,
    claimed: impl Fn(&str, &str) -> Option<String>,
) -> Vec<Stage<'a>> {
    stages
        .into_iter()
        .map(|stage| {
            let Run::Runs(plan) = &stage.run else {
                return stage;
            };
            let (namespace, child) = (&stage.target.namespace, &stage.target.child);
            let held = if terminating(namespace) {
                Some((
                    "NamespaceTerminating",
                    format!("namespace {namespace} is being deleted; the stage is applied again once it is gone"),
                    false,
                ))
            } else {
                claimed(namespace, child).map(|owner| {
                    (
                        "NameConflict",
                        format!(
                            "{namespace}/{child} belongs to the App {owner}; give this App or the stage's namespace another name"
                        ),
                        true,
                    )
                })
            };
            match held {
                None => stage,
                Some((reason, message, degraded)) => Stage {
                    run: Run::Held {
                        revision: plan.revision.clone(),
                        reason,
                        message,
                        degraded,
                    },
                    target: stage.target,
                },
            }
        })
        .collect()
}
