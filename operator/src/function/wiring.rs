//! What wakes the Function controller and what it reads.
//!
//! ```text
//!   Function (shared watch) ──────────────────────▶ reconcile the Function
//!   its children (metadata, cached, owner-kind=Function) ─▶ their Function
//!   App spec (shared watch: appeared, changed, gone) ─▶ its Functions (index)
//! ```

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::runtime::controller::{self, Controller};
use winky_crds::App;

use super::{CONTROLLER, FunctionContext, functions_of_app, reconcile};
use crate::context::Core;
use crate::driver;
use crate::listed::{Listed, cache};
use crate::metrics::Metrics;
use crate::naming::OwnerKind;
use crate::run::Options;
use crate::shared::Watches;
use crate::triggers::{applied_objects, spec_changes};
use crate::watch::cached_managed_changes;

/// The Function controller, subscribed to the shared `watches` now and
/// running when the returned future is polled, until `stop` resolves.
pub fn controller(
    client: &Client,
    options: &Options,
    watches: &mut Watches,
    metrics: &Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let ns = options.namespace.as_deref();
    let caches = watches.caches();
    let functions = applied_objects(watches.functions.subscribe());
    // Every App is cached, but only a new, changed or deleted App wakes its
    // Functions: the App controller's status writes do not.
    let app_changes = spec_changes(watches.apps.subscribe());
    // Caches of the metadata of its workloads: a changed trigger deletes the
    // workload of the old one.
    let (deployments, deployment_changes) =
        cached_managed_changes::<Deployment>(client, ns, OwnerKind::Function);
    let (services, service_changes) = cached_managed_changes::<Service>(client, ns, OwnerKind::Function);
    let (cron_jobs, cron_job_changes) = cached_managed_changes::<CronJob>(client, ns, OwnerKind::Function);
    // And of the rest: without its App, a Function's children all go.
    let (service_accounts, service_account_changes) =
        cached_managed_changes::<ServiceAccount>(client, ns, OwnerKind::Function);
    let (network_policies, network_policy_changes) =
        cached_managed_changes::<NetworkPolicy>(client, ns, OwnerKind::Function);

    let functions_by_app = caches.functions_by_app.clone();
    let app_metrics = metrics.clone();
    let controller = Controller::for_stream(functions, caches.functions.store.clone())
        .with_config(controller::Config::default().concurrency(options.concurrency))
        .owns_stream(deployment_changes)
        .owns_stream(service_changes)
        .owns_stream(cron_job_changes)
        .owns_stream(service_account_changes)
        .owns_stream(network_policy_changes)
        .watches_stream(app_changes, move |app: App| {
            app_metrics.triggered(CONTROLLER, "App");
            functions_of_app(&functions_by_app, &app)
        })
        .graceful_shutdown_on(stop);
    let ctx = Arc::new(FunctionContext {
        core: Core::new(client.clone(), &options.identity, metrics.clone()),
        settings: options.settings.clone(),
        listed: Listed::of([
            caches.apps.listed.part(),
            cache(&deployments),
            cache(&services),
            cache(&cron_jobs),
            cache(&service_accounts),
            cache(&network_policies),
        ]),
        apps: caches.apps.store,
        deployments,
        services,
        cron_jobs,
        service_accounts,
        network_policies,
    });
    let metrics = metrics.clone();
    async move {
        let results = controller.run(reconcile, driver::error_policy, ctx);
        driver::drive(CONTROLLER, &metrics, results).await;
    }
}
