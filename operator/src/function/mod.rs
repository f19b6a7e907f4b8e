//! The Function controller: a Function of an App becomes a hardened workload
//! (see [`build`] for which), its ServiceAccount and a NetworkPolicy that
//! denies all egress unless the spec allows some.
//!
//! dereference (the App, from the cache) → validate → [`build`] (pure) →
//! apply, and delete the workload of a trigger no longer used → [`status`]
//! (pure) → Events.
//!
//! Without its App a Function runs nothing: its children are deleted
//! (`AppNotFound`), and made again when the App is back. A `document`
//! trigger on a collection the App does not declare is refused
//! (`CollectionNotFound`); what runs stays, as for any spec that cannot be
//! satisfied.

pub mod build;
pub mod status;
mod wiring;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use tracing::{info, instrument};
use winky_crds::{App, Function};

use self::build::{Children, Workload};
use self::status::{Invalid, Outcome};
pub use self::wiring::controller;
use crate::apply::{apply, delete_stale};
use crate::context::{ControllerContext, Core, Settings};
use crate::driver;
use crate::error::{Error, Result};
use crate::events;
use crate::index::{AppKey, ByApp};
use crate::listed::Listed;
use crate::metrics::ReconcileResult;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "function";

/// Shared state of the Function controller.
pub struct FunctionContext {
    /// Client, Events, metrics and backoffs.
    pub core: Core,
    /// What the operator can provide.
    pub settings: Settings,
    /// Every App in scope: a Function needs its App.
    pub apps: Store<App>,
    /// Metadata of the workloads the operator manages, to delete the one a
    /// changed trigger no longer uses.
    pub deployments: Store<PartialObjectMeta<Deployment>>,
    /// See `deployments`.
    pub services: Store<PartialObjectMeta<Service>>,
    /// See `deployments`.
    pub cron_jobs: Store<PartialObjectMeta<CronJob>>,
    /// Metadata of the Functions' ServiceAccounts: deleted with the rest
    /// when the App is gone.
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    /// See `service_accounts`.
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    /// Resolves once the caches above have listed.
    pub listed: Listed,
}

impl std::fmt::Debug for FunctionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionContext").finish_non_exhaustive()
    }
}

impl ControllerContext for FunctionContext {
    const NAME: &'static str = CONTROLLER;

    fn core(&self) -> &Core {
        &self.core
    }
}

/// Reconciles one Function.
#[instrument(skip(function, ctx), fields(function = %function.name_any(), namespace = function.namespace().unwrap_or_default()))]
pub async fn reconcile(function: Arc<Function>, ctx: Arc<FunctionContext>) -> Result<Action> {
    driver::reconcile(function.as_ref(), ctx.as_ref(), async {
        // The App is watched: a missing one wakes its Functions when it appears.
        Ok((reconcile_function(&function, &ctx).await?, Action::await_change()))
    })
    .await
}

/// The Functions of `app`, to reconcile when it changes.
pub fn functions_of_app(functions_by_app: &ByApp<Function>, app: &App) -> Vec<ObjectRef<Function>> {
    AppKey::of(app).map_or_else(Vec::new, |key| functions_by_app.get(&key))
}

/// Checks what the schema cannot: the App exists, Vault is there if asked
/// for, the App declares the collection a `document` trigger names.
pub fn validate<'a>(
    function: &Function,
    app: Option<&'a App>,
    settings: &Settings,
) -> Result<&'a App, Invalid> {
    let app = app.ok_or_else(|| Invalid::AppNotFound {
        app: function.spec.app.clone(),
    })?;
    if !settings.vault_configured
        && let Some(secret) = function.spec.secrets.iter().find(|s| s.vault.is_some())
    {
        return Err(Invalid::VaultNotConfigured {
            variable: secret.name.clone(),
        });
    }
    if let Some(document) = &function.spec.trigger.document {
        let declared = app
            .spec
            .runtime
            .iter()
            .flat_map(|r| &r.collections)
            .any(|c| c.name == document.collection);
        if !declared {
            return Err(Invalid::CollectionNotFound {
                app: function.spec.app.clone(),
                collection: document.collection.clone(),
            });
        }
    }
    Ok(app)
}

async fn reconcile_function(function: &Function, ctx: &FunctionContext) -> Result<ReconcileResult> {
    if function.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: the garbage collector removes them.
        return Ok(ReconcileResult::Deleting);
    }
    let namespace = function.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    // A cache that has not listed yet would report every App missing.
    ctx.listed.wait().await;
    let app = ctx
        .apps
        .get(&ObjectRef::new(&function.spec.app).within(&namespace));
    let now = Timestamp::now();
    match validate(function, app.as_deref(), &ctx.settings) {
        Err(invalid) => {
            if let Invalid::AppNotFound { .. } = invalid
                && let Err(error) = delete_children(ctx, function, &namespace).await
            {
                return Err(failed(function, error, now, ctx).await);
            }
            write_status(function, &Outcome::Invalid(&invalid), None, now, ctx).await?;
            Ok(ReconcileResult::Invalid)
        }
        Ok(app) => {
            let revision = crate::revision::of(app);
            let children = build::children(function, app, &revision);
            let reference = children.workload.reference();
            let applied = match apply_children(ctx, function, &namespace, children).await {
                Ok(applied) => applied,
                Err(error) => return Err(failed(function, error, now, ctx).await),
            };
            match applied {
                Applied::Deployment(deployment) => {
                    write_status(
                        function,
                        &Outcome::Deployment(&deployment),
                        Some(reference),
                        now,
                        ctx,
                    )
                    .await?
                }
                Applied::CronJob(cron_job) => {
                    let cron = cron_job.spec.schedule.clone();
                    let outcome = Outcome::Scheduled { cron: &cron };
                    write_status(function, &outcome, Some(reference), now, ctx).await?
                }
            }
            Ok(ReconcileResult::Success)
        }
    }
}

// One value per reconcile, moved once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Applied {
    Deployment(Deployment),
    CronJob(CronJob),
}

async fn apply_children(
    ctx: &FunctionContext,
    function: &Function,
    namespace: &str,
    children: Children,
) -> Result<Applied> {
    let Children {
        workload,
        service_account,
        network_policy,
    } = children;
    let client = &ctx.core.client;
    // The policy first: the pods never run without it.
    apply(client, &network_policy).await?;
    apply(client, &service_account).await?;
    let name = build::child_name(function);
    let owned_by: BTreeMap<String, String> = build::labels(function);
    let applied = match &workload {
        Workload::Http { deployment, service } => {
            apply(client, service).await?;
            let deployment = apply(client, deployment).await?;
            delete_stale(client, &ctx.cron_jobs, namespace, &name, &owned_by).await?;
            Applied::Deployment(deployment)
        }
        Workload::Document { deployment } => {
            let deployment = apply(client, deployment).await?;
            delete_stale(client, &ctx.cron_jobs, namespace, &name, &owned_by).await?;
            delete_stale(client, &ctx.services, namespace, &name, &owned_by).await?;
            Applied::Deployment(deployment)
        }
        Workload::Schedule { cron_job } => {
            let cron_job = apply(client, cron_job).await?;
            delete_stale(client, &ctx.deployments, namespace, &name, &owned_by).await?;
            delete_stale(client, &ctx.services, namespace, &name, &owned_by).await?;
            Applied::CronJob(cron_job)
        }
    };
    Ok(applied)
}

/// Deletes every child of `function` (the workload first, the
/// NetworkPolicy after it): without its App, a Function runs nothing. Each
/// delete reads the caches and is guarded by the cached uid; only objects
/// the operator made for this Function are deleted.
async fn delete_children(ctx: &FunctionContext, function: &Function, namespace: &str) -> Result<()> {
    let client = &ctx.core.client;
    let name = build::child_name(function);
    let mut owned_by: BTreeMap<String, String> = build::selector_labels(function);
    owned_by.insert(
        winky_crds::keys::MANAGED_BY_LABEL.to_string(),
        crate::MANAGED_BY.to_string(),
    );
    let mut deleted = 0;
    for gone in [
        delete_stale(client, &ctx.deployments, namespace, &name, &owned_by).await?,
        delete_stale(client, &ctx.cron_jobs, namespace, &name, &owned_by).await?,
        delete_stale(client, &ctx.services, namespace, &name, &owned_by).await?,
        delete_stale(client, &ctx.network_policies, namespace, &name, &owned_by).await?,
        delete_stale(client, &ctx.service_accounts, namespace, &name, &owned_by).await?,
    ] {
        deleted += usize::from(gone);
    }
    if deleted > 0 {
        info!(deleted, "deleted the function's children: its App is gone");
    }
    Ok(())
}

/// Reports a child the apiserver refused (in status and a Warning Event)
/// and returns `error`, so that the reconcile is retried with backoff.
async fn failed(function: &Function, error: Error, now: Timestamp, ctx: &FunctionContext) -> Error {
    let Some(failure) = driver::ChildFailure::of(&error) else {
        return error;
    };
    let mut old = function.status.clone().unwrap_or_default();
    // status.emulator belongs to the emulator's field manager: never sent here.
    old.emulator = None;
    let new = status::desired_status(function, &Outcome::Failed(&failure), None, now);
    driver::report_failure(ctx, function, &old, &new, &failure, error).await
}

async fn write_status(
    function: &Function,
    outcome: &Outcome<'_>,
    workload: Option<(&'static str, String)>,
    now: Timestamp,
    ctx: &FunctionContext,
) -> Result<()> {
    let mut old = function.status.clone().unwrap_or_default();
    // status.emulator belongs to the emulator's field manager: never sent here.
    old.emulator = None;
    let new = status::desired_status(function, outcome, workload, now);
    driver::write_status(ctx, function, &old, &new, |old, new| {
        events::for_transitions(&old.conditions, &new.conditions)
    })
    .await
}

#[cfg(test)]
mod tests;
