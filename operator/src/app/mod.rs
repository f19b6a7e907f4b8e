//! The App controller.
//!
//! A reconcile is a pipeline, one module per step:
//! dereference (read caches) → [`validate`] (pure) → [`build`] (pure) →
//! apply (server-side apply, delete what is no longer desired) → [`status`] (pure conditions,
//! written through the status subresource) → Events for transitions.
//! Invalid specs set `Degraded` and wait for a change; API errors requeue
//! with backoff.

pub mod build;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument, warn};
use winky_crds::App;
use winky_crds::app::AppStatus;
use winky_crds::keys::{APP_LABEL, MANAGED_BY_LABEL, OWNER_KIND_LABEL};

use self::build::Children;
use self::status::Outcome;
use self::validate::{Inputs, Plan};
use crate::MANAGED_BY;
use crate::apply::{apply, apply_status, delete_stale};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "app";

/// What a reconcile ended with, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Finished {
    Applied,
    Invalid,
    Deleting,
}

/// Reconciles one App.
#[instrument(skip(app, ctx), fields(app = %app.name_any(), namespace = app.namespace().unwrap_or_default()))]
pub async fn reconcile(app: Arc<App>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let key = object_key(&app);
    let finished = reconcile_app(&app, &ctx).await?;
    ctx.backoffs.reset(&key);
    let result = match finished {
        Finished::Applied | Finished::Deleting => "success",
        Finished::Invalid => "invalid",
    };
    ctx.metrics.reconciled(CONTROLLER, result, started.elapsed());
    // Everything the App depends on is watched: wait for a change, never poll.
    Ok(Action::await_change())
}

/// Requeues a failed reconcile with exponential backoff and jitter.
pub fn error_policy(app: Arc<App>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, error.category());
    let delay = ctx.backoffs.next(&object_key(&app));
    warn!(app = %app.name_any(), category = error.category(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn object_key(app: &App) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

async fn reconcile_app(app: &App, ctx: &Context) -> Result<Finished> {
    if app.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes them.
        if let Some(emulator) = &ctx.emulator {
            emulator.forget(app);
        }
        return Ok(Finished::Deleting);
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
            Ok(Finished::Invalid)
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
            Ok(Finished::Applied)
        }
    }
}

/// Reads what validation needs from the caches.
fn dereference(app: &App, ctx: &Context) -> Inputs {
    let policy_exists = app
        .spec
        .policy
        .as_ref()
        .map(|name| ctx.stores.policies.get(&ObjectRef::new(name)).is_some());
    Inputs {
        policy_exists,
        vault_configured: ctx.settings.vault_configured,
    }
}

/// Applies every child, deletes what is no longer desired, and returns the
/// Deployment as the server holds it.
async fn apply_children(ctx: &Context, plan: &Plan<'_>, children: Children) -> Result<Deployment> {
    // Exhaustive on purpose: a new child must be applied here to compile.
    let Children {
        deployment,
        service,
        service_account,
        config_map,
        network_policy,
        pod_disruption_budget,
    } = children;
    let client = &ctx.client;
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
            let owned_by = [
                (APP_LABEL.to_string(), plan.name.clone()),
                (OWNER_KIND_LABEL.to_string(), "App".to_string()),
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
            ]
            .into_iter()
            .collect();
            let ns = plan.target.namespace.as_str();
            let stores = &ctx.stores;
            if delete_stale(client, &stores.pod_disruption_budgets, ns, &plan.name, &owned_by).await? {
                info!("deleted the PodDisruptionBudget: one replica needs none");
            }
        }
    }
    Ok(deployment)
}

/// Writes the status when it changed, and publishes an Event per transition.
async fn write_status(app: &App, outcome: &Outcome<'_>, now: Timestamp, ctx: &Context) -> Result<()> {
    let mut old = app.status.clone().unwrap_or_default();
    // status.emulator belongs to the emulator's field manager: never sent here.
    old.emulator = None;
    let new = status::desired_status(app, outcome, now);
    if new == old {
        return Ok(());
    }
    apply_status(&ctx.client, app, &new).await?;
    publish_events(app, &old, &new, ctx).await;
    Ok(())
}

async fn publish_events(app: &App, old: &AppStatus, new: &AppStatus, ctx: &Context) {
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
    events::publish(&ctx.recorder, &app.object_ref(&()), events).await;
}

#[cfg(test)]
mod tests;
