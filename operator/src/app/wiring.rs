//! What wakes the App controller and what it reads.
//!
//! ```text
//!   App (shared watch) ──────────────▶ reconcile the App
//!   its children (metadata, owner-kind=App) ─▶ their App
//!   PromotionPolicy (shared) ────────▶ the Apps that name it (index)
//!   Function, Rule spec (shared, with the emulator) ─▶ their App
//! ```

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use tracing::warn;
use winky_crds::{App, Function, PromotionPolicy, Rule};

use super::{AppContext, CONTROLLER, reconcile};
use crate::context::{Core, recorder};
use crate::driver;
use crate::emulate::{Bundles, EmulatorRunner};
use crate::listed::{Listed, cache};
use crate::metrics::Metrics;
use crate::naming::OwnerKind;
use crate::run::Options;
use crate::shared::Watches;
use crate::triggers::{applied_objects, listed_objects, spec_changes};
use crate::watch::{cached_managed_changes, managed_changes};

/// The App controller, subscribed to the shared `watches` now and running
/// when the returned future is polled, until `stop` resolves.
pub fn controller(
    client: &Client,
    options: &Options,
    watches: &mut Watches,
    metrics: &Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let caches = watches.caches();
    let apps = applied_objects(watches.apps.subscribe());
    let policies = listed_objects(watches.policies.subscribe());
    // With the emulator on, an App's Functions and Rules are part of what it
    // checks: a change to one re-checks its App. Only a spec change (or an
    // appearance or deletion) changes the bundle: the Function and Rule
    // controllers' status writes, and the emulator's own, do not wake the
    // App. With it off, they are not subscribed to at all.
    let bundle_changes = options.engine.is_some().then(|| {
        (
            spec_changes(watches.functions.subscribe()),
            spec_changes(watches.rules.subscribe()),
        )
    });
    let (client, options, metrics) = (client.clone(), options.clone(), metrics.clone());
    async move {
        let ns = options.namespace.as_deref();
        let (pod_disruption_budgets, pdb_changes) =
            cached_managed_changes::<PodDisruptionBudget>(&client, ns, OwnerKind::App);
        let engine = match &options.engine {
            None => None,
            Some(socket) => winky_emulator::Engine::connect(socket)
                .await
                .inspect_err(|e| warn!(error = %e, "the emulator is off: no container engine"))
                .ok(),
        };
        let mut caches_read = vec![caches.policies.listed.part(), cache(&pod_disruption_budgets)];
        // Without an engine the subscriptions are dropped here: the watches
        // stop copying events for them.
        let (emulator, function_changes, rule_changes) = match (engine, bundle_changes) {
            (Some(engine), Some((functions, rules))) => {
                caches_read.extend([caches.functions.listed.part(), caches.rules.listed.part()]);
                let runner = EmulatorRunner::new(
                    client.clone(),
                    engine,
                    recorder(&client, &options.identity),
                    metrics.clone(),
                    Bundles::of(&caches),
                    options.emulator_concurrency,
                );
                (Some(Arc::new(runner)), functions.boxed(), rules.boxed())
            }
            _ => (
                None,
                futures::stream::empty().boxed(),
                futures::stream::empty().boxed(),
            ),
        };

        let apps_by_policy = caches.apps_by_policy.clone();
        let app_of =
            |namespace: Option<String>, app: &str| Some(ObjectRef::<App>::new(app).within(&namespace?));
        let controller = Controller::for_stream(apps, caches.apps.store.clone())
            .with_config(controller::Config::default().concurrency(options.concurrency))
            .owns_stream(managed_changes::<Deployment>(&client, ns, OwnerKind::App))
            .owns_stream(managed_changes::<Service>(&client, ns, OwnerKind::App))
            .owns_stream(managed_changes::<ServiceAccount>(&client, ns, OwnerKind::App))
            // The Rule controller watches these ConfigMaps too, whole and
            // cached; here their metadata is a trigger only.
            .owns_stream(managed_changes::<ConfigMap>(&client, ns, OwnerKind::App))
            .owns_stream(managed_changes::<NetworkPolicy>(&client, ns, OwnerKind::App))
            .owns_stream(pdb_changes)
            .watches_stream(policies, move |policy: PromotionPolicy| {
                apps_by_policy.get(&policy.name_any())
            })
            .watches_stream(function_changes, move |f: Function| {
                app_of(f.namespace(), &f.spec.app)
            })
            .watches_stream(rule_changes, move |r: Rule| app_of(r.namespace(), &r.spec.app))
            .graceful_shutdown_on(stop);

        // The emulator's runs end with this controller, stopped or aborted.
        let _runs = StopRunsOnDrop(emulator.clone());
        let ctx = Arc::new(AppContext {
            core: Core::new(client, &options.identity, metrics.clone()),
            settings: options.settings.clone(),
            policies: caches.policies.store.clone(),
            pod_disruption_budgets,
            listed: Listed::of(caches_read),
            emulator,
        });
        let results = controller.run(reconcile, driver::error_policy, ctx);
        driver::drive(CONTROLLER, &metrics, results).await;
    }
}

/// Stops the emulator's runs when dropped.
struct StopRunsOnDrop(Option<Arc<EmulatorRunner>>);

impl Drop for StopRunsOnDrop {
    fn drop(&mut self) {
        if let Some(runner) = &self.0 {
            runner.stop();
        }
    }
}
