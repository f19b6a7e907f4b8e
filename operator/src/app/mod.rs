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
//! Between validate and build, [`stages`] decides which revision runs in
//! which stage: without a PromotionPolicy, the App's current spec in its own
//! namespace (stage `default`); with one, in each stage's namespace, the
//! snapshot of the revision Promoted into it. Children no stage keeps any
//! more are deleted ([`children`]); children outside the App's namespace
//! carry no owner reference, so an App with a policy has a [`FINALIZER`]
//! that deletes them before it goes.
//!
//! This module is the template of a controller: a context holding a
//! [`Core`] and what only it reads, a `reconcile` that hands its pipeline to
//! [`driver::reconcile`], [`driver::error_policy`], and one constructor.

pub mod build;
pub mod children;
pub mod stages;
pub mod status;
pub mod validate;
mod wiring;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use tracing::{debug, info, instrument};
use winky_crds::app::AppStatus;
use winky_crds::keys::{MANAGED_BY_LABEL, POD_SECURITY_ENFORCE_LABEL, STAGE_OF_LABEL};
use winky_crds::promotion::snapshot_name;
use winky_crds::{App, Function, Promotion, PromotionPolicy};

use self::build::{Children, HttpFunction, Surroundings};
use self::children::{ChildCaches, Keep};
use self::stages::{Run, Stage};
use self::status::{Outcome, StageOutcome};
use self::validate::{Inputs, Invalid};
pub use self::wiring::controller;
use crate::apply::apply;
use crate::context::{ControllerContext, Core, Settings};
use crate::driver;
use crate::emulate::EmulatorRunner;
use crate::error::{Error, Result};
use crate::events;
use crate::index::{AppKey, ByApp};
use crate::listed::Listed;
use crate::metrics::ReconcileResult;
use crate::naming;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "app";
/// Finalizer of an App that follows a PromotionPolicy: its children in
/// other namespaces than its own, which no owner reference can reach, are
/// deleted before it goes.
pub const FINALIZER: &str = "winky.dev/stage-cleanup";
/// How soon a stage whose namespace is being deleted is looked at again.
const NAMESPACE_TERMINATING_RETRY: Duration = Duration::from_secs(5);

/// Shared state of the App controller.
pub struct AppContext {
    /// Client, Events, metrics and backoffs.
    pub core: Core,
    /// What the operator can provide.
    pub settings: Settings,
    /// PromotionPolicies: whether the one an App names exists, and its stages.
    pub policies: Store<PromotionPolicy>,
    /// Promotions: which revision is Promoted into each stage.
    pub promotions: Store<Promotion>,
    /// Promotions by App.
    pub promotions_by_app: ByApp<Promotion>,
    /// The snapshots of the Apps' revisions.
    pub snapshots: Store<ControllerRevision>,
    /// Functions: an App's HTTP Functions, for its Ingress and runtime config.
    pub functions: Store<Function>,
    /// Functions by App.
    pub functions_by_app: ByApp<Function>,
    /// Namespaces, by metadata: which stage namespaces exist.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// The metadata of every child, in every namespace, by App: what no stage
    /// keeps any more is deleted.
    pub children: ChildCaches,
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
    driver::reconcile(app.as_ref(), ctx.as_ref(), reconcile_app(app.clone(), &ctx)).await
}

/// An App without a policy is applied as it always was: its children all
/// live in its namespace, owned by it, and the garbage collector removes
/// them. One with a policy (or that had one) runs through the
/// [`FINALIZER`].
async fn reconcile_app(app: Arc<App>, ctx: &AppContext) -> Result<(ReconcileResult, Action)> {
    let deleting = app.metadata.deletion_timestamp.is_some();
    if deleting && let Some(emulator) = &ctx.emulator {
        emulator.forget(&app);
    }
    let finalized = app.finalizers().iter().any(|f| f == FINALIZER);
    if app.spec.policy.is_none() && !finalized {
        if deleting {
            // Children carry owner references: the garbage collector removes
            // them. Nothing failed, so this counts as a success.
            return Ok((ReconcileResult::Success, Action::await_change()));
        }
        return apply_app(&app, ctx).await;
    }
    let namespace = app.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<App> = Api::namespaced(ctx.core.client.clone(), &namespace);
    let key = driver::key(app.as_ref());
    let result = Mutex::new(ReconcileResult::Success);
    let action = match finalizer(&api, FINALIZER, app, |event| async {
        match event {
            FinalizerEvent::Apply(app) => {
                let (outcome, action) = apply_app(&app, ctx).await?;
                *result.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
                Ok(action)
            }
            FinalizerEvent::Cleanup(app) => cleanup(&app, ctx).await,
        }
    })
    .await
    {
        Ok(action) => action,
        Err(FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e)) => return Err(e),
        // A reconcile queued before the App went finds it gone: its
        // finalizer was removed already, and there is nothing left to do.
        Err(
            FinalizerError::AddFinalizer(kube::Error::Api(e))
            | FinalizerError::RemoveFinalizer(kube::Error::Api(e)),
        ) if e.code == 404 => Action::await_change(),
        // The finalizer patch tests the finalizers it read from the cache;
        // 422 means the server's differ. The newer App is on its way through
        // the watch and reconciles again.
        Err(
            FinalizerError::AddFinalizer(kube::Error::Api(e))
            | FinalizerError::RemoveFinalizer(kube::Error::Api(e)),
        ) if e.code == 422 => {
            debug!(app = %key, "the cached finalizers were stale; waiting for the newer App");
            Action::await_change()
        }
        Err(e) => return Err(Error::Finalizer(Box::new(e))),
    };
    let result = result.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok((result, action))
}

/// dereference → validate → which revision runs where → build → delete what
/// no stage keeps → stage namespaces → apply → status.
async fn apply_app(app: &App, ctx: &AppContext) -> Result<(ReconcileResult, Action)> {
    // Caches that have not listed yet would report every policy missing,
    // every stage idle and every child absent.
    ctx.listed.wait().await;
    let (inputs, policy) = dereference(app, ctx);
    let now = Timestamp::now();
    let plan = match validate::validate(app, &inputs) {
        Ok(plan) => plan,
        Err(invalid) => return invalid_app(app, &invalid, now, ctx).await,
    };
    let key = AppKey::new(plan.app_namespace.clone(), plan.name.clone());
    let stages = match (&app.spec.policy, policy) {
        (None, _) => stages::unstaged(plan),
        (Some(_), Some(policy)) => {
            let promotions = promotions_of(ctx, &key);
            let snapshot = |revision: &str| {
                let name = snapshot_name(&key.app, revision);
                ctx.snapshots.get(&ObjectRef::new(&name).within(&key.namespace))
            };
            match stages::resolve(app, &plan, &policy.spec, &promotions, snapshot) {
                Ok(stages) => stages,
                Err(invalid) => return invalid_app(app, &invalid, now, ctx).await,
            }
        }
        // validate() reports a named policy that is not cached.
        (Some(policy), None) => {
            let invalid = Invalid::PolicyNotFound {
                policy: policy.clone(),
            };
            return invalid_app(app, &invalid, now, ctx).await;
        }
    };
    let terminating = |namespace: &str| {
        ctx.namespaces
            .get(&ObjectRef::new(namespace))
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
    };
    let stages = stages::hold(stages, terminating, |namespace, child| {
        ctx.children.claimed(namespace, child, &key)
    });
    let around = surroundings(ctx, &key);
    let built: Vec<Option<Children>> = stages
        .iter()
        .map(|s| s.plan().map(|plan| build::children(plan, &around)))
        .collect();

    // First what no stage keeps: a name that moved to another stage is made
    // anew (a Deployment's selector, which names the stage, is immutable).
    let keep = Keep::of(&stages, &built);
    let keeps = |kind: &str, namespace: &str, name: &str, stage: Option<&str>| {
        keep.keeps(kind, namespace, name, stage)
    };
    let written = async {
        let deleted = ctx.children.prune(&ctx.core.client, &key, &keeps).await?;
        if deleted > 0 {
            info!(deleted, "deleted the children no stage runs any more");
        }
        ensure_namespaces(app, &key, &stages, ctx).await?;
        futures::future::try_join_all(built.into_iter().map(|children| async {
            Ok::<_, Error>(match children {
                Some(children) => Some(apply_children(ctx, children).await?),
                None => None,
            })
        }))
        .await
    };
    let deployments = match written.await {
        Ok(deployments) => deployments,
        Err(error) => return Err(failed(app, error, now, ctx).await),
    };

    let outcomes: Vec<StageOutcome<'_>> = stages
        .iter()
        .zip(&deployments)
        .map(|(stage, deployment)| StageOutcome {
            stage,
            deployment: deployment.as_ref(),
        })
        .collect();
    write_status(app, &Outcome::Applied(&outcomes), &stages, now, ctx).await?;
    if let Some(emulator) = &ctx.emulator {
        emulator.ensure(app);
    }
    let waiting_for_namespace = stages.iter().any(|s| {
        matches!(
            s.run,
            Run::Held {
                reason: "NamespaceTerminating",
                ..
            }
        )
    });
    let action = if waiting_for_namespace {
        Action::requeue(NAMESPACE_TERMINATING_RETRY)
    } else {
        // Everything the App depends on is watched: wait for a change, never poll.
        Action::await_change()
    };
    Ok((ReconcileResult::Success, action))
}

/// Reports a spec that cannot be satisfied; what runs stays as it is.
async fn invalid_app(
    app: &App,
    invalid: &Invalid,
    now: Timestamp,
    ctx: &AppContext,
) -> Result<(ReconcileResult, Action)> {
    info!(reason = invalid.reason(), "spec cannot be satisfied");
    write_status(app, &Outcome::Invalid(invalid), &[], now, ctx).await?;
    Ok((ReconcileResult::Invalid, Action::await_change()))
}

/// Reports a child the apiserver refused (in status and a Warning Event)
/// and returns `error`, so that the reconcile is retried with backoff. What
/// runs stays as it is; an error that is not a child's is only returned.
async fn failed(app: &App, error: Error, now: Timestamp, ctx: &AppContext) -> Error {
    let Some(failure) = driver::ChildFailure::of(&error) else {
        return error;
    };
    // What the emulator's field manager writes is never sent here.
    let old = status::without_emulator_fields(app.status.clone().unwrap_or_default());
    let new = status::desired_status(app, &Outcome::Failed(&failure), now);
    driver::report_failure(ctx, app, &old, &new, &failure, error).await
}

/// Before the App goes: deletes its children outside its namespace (those
/// in it name the App as owner: the garbage collector removes them). Stage
/// namespaces stay, even those the operator created: something the operator
/// cannot see (a Secret) may live there.
async fn cleanup(app: &App, ctx: &AppContext) -> Result<Action> {
    ctx.listed.wait().await;
    let key = AppKey::of(app).ok_or(Error::MissingMetadata("namespace"))?;
    let own = key.namespace.clone();
    let in_own_namespace = |_: &str, namespace: &str, _: &str, _: Option<&str>| namespace == own;
    let deleted = ctx
        .children
        .prune(&ctx.core.client, &key, &in_own_namespace)
        .await?;
    info!(deleted, "deleted the App's children in its stage namespaces");
    Ok(Action::await_change())
}

/// Reads what validation needs from the caches, and the policy itself.
fn dereference(app: &App, ctx: &AppContext) -> (Inputs, Option<Arc<PromotionPolicy>>) {
    let policy = app
        .spec
        .policy
        .as_ref()
        .and_then(|name| ctx.policies.get(&ObjectRef::new(name)));
    let inputs = Inputs {
        policy_exists: app.spec.policy.as_ref().map(|_| policy.is_some()),
        vault_configured: ctx.settings.vault_configured,
    };
    (inputs, policy)
}

/// What the children of the App `key` need besides its plan: its HTTP
/// Functions (from the cache; one being deleted is left out) and the
/// operator's IngressClass.
fn surroundings(ctx: &AppContext, key: &AppKey) -> Surroundings {
    let mut http_functions: Vec<HttpFunction> = ctx
        .functions_by_app
        .get(key)
        .iter()
        .filter_map(|r| ctx.functions.get(r))
        // The index follows the store a step behind: what the store holds decides.
        .filter(|f| f.spec.app == key.app && f.metadata.deletion_timestamp.is_none())
        .filter_map(|f| {
            let http = f.spec.trigger.http.as_ref()?;
            Some(HttpFunction {
                name: f.name_any(),
                path: http.path.clone(),
            })
        })
        .collect();
    http_functions.sort();
    Surroundings {
        http_functions,
        ingress_class: ctx.settings.ingress_class.clone(),
    }
}

/// The Promotions of the App `key`, from the cache.
fn promotions_of(ctx: &AppContext, key: &AppKey) -> Vec<Arc<Promotion>> {
    ctx.promotions_by_app
        .get(key)
        .iter()
        .filter_map(|r| ctx.promotions.get(r))
        // The index follows the store a step behind: what the store holds decides.
        .filter(|p| p.spec.app == key.app)
        .collect()
}

/// Creates the namespace of every stage that runs a revision outside the
/// App's namespace, unless it exists: a namespace is never taken over, and
/// one the operator creates is labelled `winky.dev/stage-of`, Pod Security
/// `restricted`.
async fn ensure_namespaces(app: &App, key: &AppKey, stages: &[Stage<'_>], ctx: &AppContext) -> Result<()> {
    let mut wanted: Vec<&str> = stages
        .iter()
        .filter(|s| s.plan().is_some())
        .map(|s| s.target.namespace.as_str())
        .filter(|ns| *ns != key.namespace)
        .filter(|ns| ctx.namespaces.get(&ObjectRef::new(ns)).is_none())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    for name in wanted {
        let namespace = stage_namespace(name, key);
        let api: Api<Namespace> = Api::all(ctx.core.client.clone());
        match api.create(&PostParams::default(), &namespace).await {
            Ok(_) => {
                info!(namespace = name, "created the stage namespace");
                let event = Event {
                    type_: EventType::Normal,
                    reason: "NamespaceCreated".into(),
                    note: Some(format!("created namespace {name} for a stage")),
                    action: "Create".into(),
                    secondary: None,
                };
                events::publish(&ctx.core.recorder, &app.object_ref(&()), vec![event]).await;
            }
            // There already (the cache is behind, or it is not ours): used as it is.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(source) => {
                return Err(Error::Apply {
                    kind: "Namespace".into(),
                    name: name.to_string(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// A stage namespace the operator creates for the App `key`.
pub fn stage_namespace(name: &str, key: &AppKey) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([
                (POD_SECURITY_ENFORCE_LABEL.to_string(), "restricted".to_string()),
                (MANAGED_BY_LABEL.to_string(), crate::MANAGED_BY.to_string()),
                (
                    STAGE_OF_LABEL.to_string(),
                    naming::stage_of(&key.namespace, &key.app),
                ),
            ])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Applies every child of one stage and returns the Deployment as the server
/// holds it.
async fn apply_children(ctx: &AppContext, children: Children) -> Result<Deployment> {
    // Exhaustive on purpose: a new child must be applied here to compile.
    let Children {
        deployment,
        service,
        service_account,
        config_map,
        network_policy,
        pod_disruption_budget,
        ingress,
    } = children;
    let client = &ctx.core.client;
    let (_, _, _, _, deployment) = futures::try_join!(
        apply(client, &service_account),
        apply(client, &config_map),
        apply(client, &service),
        apply(client, &network_policy),
        apply(client, &deployment),
    )?;
    // Without it (one replica), the prune before the apply deleted it.
    if let Some(pdb) = &pod_disruption_budget {
        apply(client, pdb).await?;
    }
    // Without it (not public), the prune before the apply deleted it.
    if let Some(ingress) = &ingress {
        apply(client, ingress).await?;
    }
    Ok(deployment)
}

/// Writes the status when it changed, and publishes an Event per transition.
async fn write_status(
    app: &App,
    outcome: &Outcome<'_>,
    stages: &[Stage<'_>],
    now: Timestamp,
    ctx: &AppContext,
) -> Result<()> {
    // What the emulator's field manager writes is never sent here.
    let old = status::without_emulator_fields(app.status.clone().unwrap_or_default());
    let new = status::desired_status(app, outcome, now);
    let images = status::images(stages);
    let staged = app.spec.policy.is_some();
    driver::write_status(ctx, app, &old, &new, |old, new| {
        status_events(old, new, &images, staged)
    })
    .await
}

/// Without a policy, `RevisionApplied` for a new revision; with one,
/// `RevisionApplied` for each stage that runs a new revision and
/// `StageStopped` for each that stopped running one. Then one Event per
/// condition that turned True.
fn status_events(
    old: &AppStatus,
    new: &AppStatus,
    images: &BTreeMap<String, String>,
    staged: bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    let applied = |note: String| Event {
        type_: EventType::Normal,
        reason: "RevisionApplied".into(),
        note: Some(note),
        action: "Apply".into(),
        secondary: None,
    };
    if !staged {
        let old_revision = old.revision.as_ref().map(|r| r.id.as_str());
        if let Some(rev) = &new.revision
            && old_revision != Some(rev.id.as_str())
        {
            events.push(applied(format!(
                "applied revision {} (image {})",
                rev.id, rev.image
            )));
        }
    } else {
        for stage in &new.stages {
            let before = old
                .stages
                .iter()
                .find(|s| s.name == stage.name)
                .and_then(|s| s.revision.as_deref());
            match (&stage.revision, images.get(&stage.name)) {
                (Some(revision), Some(image)) if before != Some(revision.as_str()) => {
                    events.push(applied(format!(
                        "applied revision {revision} (image {image}) to stage {} in namespace {}",
                        stage.name, stage.namespace
                    )));
                }
                (None, _) if before.is_some() => events.push(Event {
                    type_: EventType::Normal,
                    reason: "StageStopped".into(),
                    note: Some(format!(
                        "stage {} runs no revision any more; its children in namespace {} were deleted",
                        stage.name, stage.namespace
                    )),
                    action: "Delete".into(),
                    secondary: None,
                }),
                _ => {}
            }
        }
    }
    events.extend(events::for_transitions(&old.conditions, &new.conditions));
    events
}

#[cfg(test)]
mod tests;
