//! The App controller.
//!
//! A reconcile is a pipeline, one module per step:
//! dereference (read caches) → [`validate`] (pure) → [`build`] (pure) →
//! apply (server-side apply, delete what is no longer desired) → [`status`] (pure conditions,
//! written through the status subresource) → Events for transitions.
//! Invalid specs set `Degraded` and wait for a change; API errors requeue
//! with backoff ([`crate::driver`]). What wakes it and what it reads are wired
//! in `wiring.rs` ([`controller`]).
//!
//! This module is the template of a controller: a context holding a
//! [`Core`] and what only it reads, a `reconcile` that hands its pipeline to
//! [`driver::reconcile`], [`driver::error_policy`], and one constructor.

pub mod build;
pub mod status;
pub mod validate;
mod wiring;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{info, instrument};
use winky_crds::app::AppStatus;
use winky_crds::{App, PromotionPolicy};

use self::build::Children;
use self::status::Outcome;
use self::validate::{Inputs, Plan};
pub use self::wiring::controller;
use crate::apply::{apply, delete_stale};
use crate::context::{ControllerContext, Core, Settings};
use crate::driver;
use crate::emulate::EmulatorRunner;
use crate::error::Result;
use crate::events;
use crate::listed::Listed;
use crate::metrics::ReconcileResult;
use crate::naming::{self, OwnerKind};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "app";

/// Shared state of the App controller.
pub struct AppContext {
    /// Client, Events, metrics and backoffs.
    pub core: Core,
    /// What the operator can provide.
    pub settings: Settings,
    /// PromotionPolicies, to check that the one an App names exists.
    pub policies: Store<PromotionPolicy>,
    /// Metadata of the PodDisruptionBudgets the operator manages: the one
    /// child that can stop being desired, so the one that may need deleting.
    pub pod_disruption_budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
    /// Resolves once the caches a reconcile reads have listed.
    pub listed: Listed,
    /// Runs the emulator for new revisions, when an engine was given.
    pub emulator: Option<Arc<EmulatorRunner>>,
}

impl std::fmt::Debug for AppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppContext")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ControllerContext for AppContext {
    const NAME: &'static str = CONTROLLER;

    fn core(&self) -> &Core {
        &self.core
    }
}

/// Reconciles one App.
#[instrument(skip(app, ctx), fields(app = %app.name_any(), namespace = app.namespace().unwrap_or_default()))]
pub async fn reconcile(app: Arc<App>, ctx: Arc<AppContext>) -> Result<Action> {
    driver::reconcile(app.as_ref(), ctx.as_ref(), async {
        // Everything the App depends on is watched: wait for a change, never poll.
        Ok((reconcile_app(&app, &ctx).await?, Action::await_change()))
    })
    .await
}

async fn reconcile_app(app: &App, ctx: &AppContext) -> Result<ReconcileResult> {
    if app.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes
        // them. Nothing failed, so this counts as a success.
        if let Some(emulator) = &ctx.emulator {
            emulator.forget(app);
        }
        return Ok(ReconcileResult::Success);
    }
    // Caches that have not listed yet would report every policy missing
    // and every disruption budget, Function and Rule absent.
    ctx.listed.wait().await;
    let inputs = dereference(app, ctx);
    let now = Timestamp::now();
    match validate::validate(app, &inputs) {
        Err(invalid) => {
            info!(reason = invalid.reason(), "spec cannot be satisfied");
            write_status(app, &Outcome::Invalid(&invalid), now, ctx).await?;
            Ok(ReconcileResult::Invalid)
        }
        Ok(plan) => {
            let children = build::children(&plan);
            let deployment = apply_children(ctx, &plan, children).await?;
            write_status(
                app,
                &Outcome::Applied {
                    plan: &plan,
                    deployment: &deployment,
                },
                now,
                ctx,
            )
            .await?;
            if let Some(emulator) = &ctx.emulator {
                emulator.ensure(app);
            }
            Ok(ReconcileResult::Success)
        }
    }
}

/// Reads what validation needs from the caches.
fn dereference(app: &App, ctx: &AppContext) -> Inputs {
    let policy_exists = app
        .spec
        .policy
        .as_ref()
        .map(|name| ctx.policies.get(&ObjectRef::new(name)).is_some());
    Inputs {
        policy_exists,
        vault_configured: ctx.settings.vault_configured,
    }
}

/// Applies every child, deletes what is no longer desired, and returns the
/// Deployment as the server holds it.
async fn apply_children(ctx: &AppContext, plan: &Plan<'_>, children: Children) -> Result<Deployment> {
    // Exhaustive on purpose: a new child must be applied here to compile.
    let Children {
        deployment,
        service,
        service_account,
        config_map,
        network_policy,
        pod_disruption_budget,
    } = children;
    let client = &ctx.core.client;
    let (_, _, _, _, deployment) = futures::try_join!(
        apply(client, &service_account),
        apply(client, &config_map),
        apply(client, &service),
        apply(client, &network_policy),
        apply(client, &deployment),
    )?;
    match &pod_disruption_budget {
        Some(pdb) => {
            apply(client, pdb).await?;
        }
        None => {
            // The only child that can stop being desired (replicas dropped to 1).
            let owned_by = naming::owned_by(OwnerKind::App, &plan.name);
            let ns = plan.target.namespace.as_str();
            if delete_stale(client, &ctx.pod_disruption_budgets, ns, &plan.name, &owned_by).await? {
                info!("deleted the PodDisruptionBudget: one replica needs none");
            }
        }
    }
    Ok(deployment)
}

/// Writes the status when it changed, and publishes an Event per transition.
async fn write_status(app: &App, outcome: &Outcome<'_>, now: Timestamp, ctx: &AppContext) -> Result<()> {
    let mut old = app.status.clone().unwrap_or_default();
    // status.emulator belongs to the emulator's field manager: never sent here.
    old.emulator = None;
    let new = status::desired_status(app, outcome, now);
    driver::write_status(ctx, app, &old, &new, status_events).await
}

/// `RevisionApplied` for a new revision, and one Event per condition that
/// turned True.
fn status_events(old: &AppStatus, new: &AppStatus) -> Vec<Event> {
    let mut events = Vec::new();
    let old_revision = old.revision.as_ref().map(|r| r.id.as_str());
    if let Some(rev) = &new.revision
        && old_revision != Some(rev.id.as_str())
    {
        events.push(Event {
            type_: EventType::Normal,
            reason: "RevisionApplied".into(),
            note: Some(format!("applied revision {} (image {})", rev.id, rev.image)),
            action: "Apply".into(),
            secondary: None,
        });
    }
    events.extend(events::for_transitions(&old.conditions, &new.conditions));
    events
}

#[cfg(test)]
mod tests;
