//! What wakes the App controller and what it reads.
//!
//! ```text
//!   App (shared watch) ──────────────▶ reconcile the App
//!   its children (metadata, owner-kind=App, in every namespace) ─▶ their App (labels)
//!   PromotionPolicy (shared) ────────▶ the Apps that name it (index)
//!   Promotion (shared: appeared, phase changed, gone) ─▶ its App (spec.app)
//!   ControllerRevision (shared, managed-by=winky-operator) ─▶ its App (winky.dev/app)
//!   Namespace (metadata) ────────────  read only: does a stage namespace exist
//!   Function spec (shared) ─────────▶ its App (its Ingress, runtime config; the emulator)
//!   Rule spec (shared, with the emulator) ─▶ its App
//! ```
//!
//! The children are watched in every namespace, as stages run in namespaces
//! of their own: with `--namespace X`, those labelled
//! `winky.dev/app-namespace=X` (the children of X's Apps) only.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tracing::warn;
use winky_crds::keys::APP_LABEL;
use winky_crds::promotion::Phase;
use winky_crds::{App, Function, Promotion, PromotionPolicy, Rule};

use super::children::{ChildCache, ChildCaches};
use super::{AppContext, CONTROLLER, reconcile};
use crate::context::{Core, recorder};
use crate::driver;
use crate::emulate::{Bundles, EmulatorRunner};
use crate::index::child_app_key;
use crate::listed::{Listed, cache};
use crate::metrics::Metrics;
use crate::run::Options;
use crate::shared::Watches;
use crate::triggers::{applied_objects, listed_objects, spec_changes};
use crate::watch::{app_children, namespaces};

/// The Promotions whose phase changed (or that appeared or went): all the
/// App controller reads of one, as its spec never changes. The Promotion
/// controller appends to a Promotion's history and gates far more often
/// than it moves its phase. A list passes every Promotion on once it ended.
pub(super) fn phase_changes<S>(events: S) -> impl Stream<Item = Result<Promotion, watcher::Error>> + Send
where
    S: Stream<Item = Result<watcher::Event<Promotion>, watcher::Error>> + Send,
{
    let phase = |p: &Promotion| p.status.as_ref().map(|s| s.phase);
    let mut seen: HashMap<ObjectRef<Promotion>, Option<Phase>> = HashMap::new();
    let mut listing: Vec<Promotion> = Vec::new();
    events.flat_map(move |event| {
        let passed: Vec<Result<Promotion, watcher::Error>> = match event {
            Err(e) => vec![Err(e)],
            Ok(watcher::Event::Init) => {
                listing.clear();
                Vec::new()
            }
            Ok(watcher::Event::InitApply(p)) => {
                listing.push(p);
                Vec::new()
            }
            Ok(watcher::Event::InitDone) => {
                seen = listing
                    .iter()
                    .map(|p| (ObjectRef::from_obj(p), phase(p)))
                    .collect();
                std::mem::take(&mut listing).into_iter().map(Ok).collect()
            }
            Ok(watcher::Event::Apply(p)) => {
                let now = phase(&p);
                if seen.insert(ObjectRef::from_obj(&p), now) == Some(now) {
                    Vec::new()
                } else {
                    vec![Ok(p)]
                }
            }
            Ok(watcher::Event::Delete(p)) => {
                seen.remove(&ObjectRef::from_obj(&p));
                vec![Ok(p)]
            }
        };
        futures::stream::iter(passed)
    })
}

/// The App a child belongs to, from its labels.
fn app_of_child<K: Resource>(child: &K) -> Option<ObjectRef<App>> {
    let key = child_app_key(child)?;
    Some(ObjectRef::new(&key.app).within(&key.namespace))
}

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
    let promotions = phase_changes(watches.promotions.subscribe());
    let snapshots = listed_objects(watches.snapshots.subscribe());
    // An App's HTTP Functions are routed by its Ingress and listed in its
    // runtime config, and with the emulator on, its Functions and Rules are
    // part of what it checks: a change to one wakes its App. Only a spec
    // change (or an appearance or deletion) matters: the Function and Rule
    // controllers' status writes, and the emulator's own, do not wake the
    // App. Rules are not subscribed to at all with the emulator off.
    let function_changes = spec_changes(watches.functions.subscribe());
    let rule_changes = options
        .engine
        .is_some()
        .then(|| spec_changes(watches.rules.subscribe()));
    let (client, options, metrics) = (client.clone(), options.clone(), metrics.clone());
    async move {
        let ns = options.namespace.as_deref();
        let ((deployments, deployments_by_app), deployment_changes) = app_children::<Deployment>(&client, ns);
        let ((services, services_by_app), service_changes) = app_children::<Service>(&client, ns);
        let ((service_accounts, service_accounts_by_app), service_account_changes) =
            app_children::<ServiceAccount>(&client, ns);
        // The Rule controller watches these ConfigMaps too, whole and cached
        // (in the Apps' namespaces); here their metadata is enough.
        let ((config_maps, config_maps_by_app), config_map_changes) = app_children::<ConfigMap>(&client, ns);
        let ((network_policies, network_policies_by_app), network_policy_changes) =
            app_children::<NetworkPolicy>(&client, ns);
        let ((pod_disruption_budgets, pdbs_by_app), pdb_changes) =
            app_children::<PodDisruptionBudget>(&client, ns);
        let ((ingresses, ingresses_by_app), ingress_changes) = app_children::<Ingress>(&client, ns);
        let (namespace_store, namespace_changes) = namespaces(&client);
        let engine = match &options.engine {
            None => None,
            Some(socket) => winky_emulator::Engine::connect(socket)
                .await
                .inspect_err(|e| warn!(error = %e, "the emulator is off: no container engine"))
                .ok(),
        };
        let mut caches_read = vec![
            caches.policies.listed.part(),
            caches.promotions.listed.part(),
            caches.snapshots.listed.part(),
            cache(&namespace_store),
            cache(&deployments),
            cache(&services),
            cache(&service_accounts),
            cache(&config_maps),
            cache(&network_policies),
            cache(&pod_disruption_budgets),
            cache(&ingresses),
            caches.functions.listed.part(),
        ];
        // Without an engine the subscriptions are dropped here: the watches
        // stop copying events for them.
        let (emulator, rule_changes) = match (engine, rule_changes) {
            (Some(engine), Some(rules)) => {
                caches_read.push(caches.rules.listed.part());
                let runner = EmulatorRunner::new(
                    client.clone(),
                    engine,
                    recorder(&client, &options.identity),
                    metrics.clone(),
                    Bundles::of(&caches),
                    options.emulator_concurrency,
                );
                (Some(Arc::new(runner)), rules.boxed())
            }
            _ => (None, futures::stream::empty().boxed()),
        };

        let apps_by_policy = caches.apps_by_policy.clone();
        let app_of =
            |namespace: Option<String>, app: &str| Some(ObjectRef::<App>::new(app).within(&namespace?));
        let controller = Controller::for_stream(apps, caches.apps.store.clone())
            .with_config(controller::Config::default().concurrency(options.concurrency))
            // Children in another namespace have no owner reference: their
            // labels say whose they are.
            .watches_stream(deployment_changes, |c: PartialObjectMeta<Deployment>| {
                app_of_child(&c)
            })
            .watches_stream(service_changes, |c: PartialObjectMeta<Service>| app_of_child(&c))
            .watches_stream(service_account_changes, |c: PartialObjectMeta<ServiceAccount>| {
                app_of_child(&c)
            })
            .watches_stream(config_map_changes, |c: PartialObjectMeta<ConfigMap>| {
                app_of_child(&c)
            })
            .watches_stream(network_policy_changes, |c: PartialObjectMeta<NetworkPolicy>| {
                app_of_child(&c)
            })
            .watches_stream(pdb_changes, |c: PartialObjectMeta<PodDisruptionBudget>| {
                app_of_child(&c)
            })
            .watches_stream(ingress_changes, |c: PartialObjectMeta<Ingress>| app_of_child(&c))
            // Read only; polled here so that the cache fills.
            .watches_stream(namespace_changes, |_: PartialObjectMeta<Namespace>| {
                None::<ObjectRef<App>>
            })
            .watches_stream(policies, move |policy: PromotionPolicy| {
                apps_by_policy.get(&policy.name_any())
            })
            .watches_stream(promotions, move |p: Promotion| app_of(p.namespace(), &p.spec.app))
            .watches_stream(snapshots, move |s: ControllerRevision| {
                let app = s.labels().get(APP_LABEL)?.clone();
                app_of(s.namespace(), &app)
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
            promotions: caches.promotions.store.clone(),
            promotions_by_app: caches.promotions_by_app.clone(),
            snapshots: caches.snapshots.store.clone(),
            functions: caches.functions.store.clone(),
            functions_by_app: caches.functions_by_app.clone(),
            namespaces: namespace_store,
            children: ChildCaches {
                deployments: ChildCache {
                    store: deployments,
                    by_app: deployments_by_app,
                },
                services: ChildCache {
                    store: services,
                    by_app: services_by_app,
                },
                service_accounts: ChildCache {
                    store: service_accounts,
                    by_app: service_accounts_by_app,
                },
                config_maps: ChildCache {
                    store: config_maps,
                    by_app: config_maps_by_app,
                },
                network_policies: ChildCache {
                    store: network_policies,
                    by_app: network_policies_by_app,
                },
                pod_disruption_budgets: ChildCache {
                    store: pod_disruption_budgets,
                    by_app: pdbs_by_app,
                },
                ingresses: ChildCache {
                    store: ingresses,
                    by_app: ingresses_by_app,
                },
            },
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
