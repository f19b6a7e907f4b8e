//! What wakes the Rule controller and what it reads.
//!
//! ```text
//!   Rule (shared watch) ──────────────────────────▶ reconcile the Rule
//!   runtime ConfigMap (its own watch, whole) ─────▶ the Rules of its App (index),
//!                                                   and the Rules its rules.json lists
//! ```

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};

use super::{CONTROLLER, RuleContext, reconcile, rules_of_config_map};
use crate::context::Core;
use crate::driver;
use crate::index::rules_published_in;
use crate::listed::{Listed, cache};
use crate::metrics::Metrics;
use crate::naming::{OwnerKind, managed_selector};
use crate::run::Options;
use crate::shared::Watches;
use crate::triggers::{applied_objects, listed_objects};
use crate::watch::scoped;

/// The Rule controller, subscribed to the shared `watches` now and running
/// when the returned future is polled, until `stop` resolves.
pub fn controller(
    client: &Client,
    options: &Options,
    watches: &mut Watches,
    metrics: &Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let ns = options.namespace.as_deref();
    let caches = watches.caches();
    let rules = applied_objects(watches.rules.subscribe());
    // A second watch of the runtime ConfigMaps, beside the App controller's
    // (kube-runtime's shared reflectors do not forward deletions, which the
    // App controller needs to recreate a deleted ConfigMap), and of the whole
    // object: `rules.json` is applied only when it differs from the cache.
    // Nor a `SharedWatch` (which does forward deletions): the App
    // controller's is a metadata-only trigger with no cache, and feeding it
    // whole ConfigMaps through this one would change what wakes it and when.
    // Indexed by the Rules each one's rules.json lists (before the trigger
    // below and the reconciles read it), so that a Rule finds the App it was
    // moved away from.
    let (config_maps, writer) = reflector::store();
    let published_in = rules_published_in();
    let config_map_changes = listed_objects(
        published_in.maintain(
            watcher(
                scoped::<ConfigMap>(client, ns),
                watcher::Config::default().labels(&managed_selector(OwnerKind::App)),
            )
            .default_backoff()
            .reflect(writer),
        ),
    );
    let rules_by_app = caches.rules_by_app.clone();
    let controller = Controller::for_stream(rules, caches.rules.store.clone())
        .with_config(controller::Config::default().concurrency(options.concurrency))
        .watches_stream(config_map_changes, move |cm| {
            rules_of_config_map(&rules_by_app, &cm)
        })
        .graceful_shutdown_on(stop);
    let ctx = Arc::new(RuleContext {
        core: Core::new(client.clone(), &options.identity, metrics.clone()),
        rules: caches.rules.store,
        rules_by_app: caches.rules_by_app,
        listed: Listed::of([cache(&config_maps)]),
        published_in,
        config_maps,
        verdicts: Default::default(),
    });
    let metrics = metrics.clone();
    async move {
        let results = controller.run(reconcile, driver::error_policy, ctx);
        driver::drive(CONTROLLER, &metrics, results).await;
    }
}
