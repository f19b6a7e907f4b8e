//! What wakes the Promotion controller and what it reads.
//!
//! ```text
//!   App (shared watch: any change, a new revision or emulator result) ─▶ its pipeline
//!   Promotion (its own watch) ──────────────────────────────────────────▶ its App's pipeline
//!   a soak ending, approvals to look at again ─────────────────────────▶ requeue
//!   PromotionPolicy (shared cache) — read
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::Client;
use kube::ResourceExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use winky_crds::App;
use winky_crds::promotion::Promotion;

use super::{CONTROLLER, PromotionContext, reconcile};
use crate::context::Core;
use crate::driver;
use crate::listed::Listed;
use crate::metrics::Metrics;
use crate::run::Options;
use crate::shared::Watches;
use crate::triggers::applied_objects;

/// The Promotion controller, subscribed to the shared `watches` now and
/// running when the returned future is polled, until `stop` resolves.
pub fn controller(
    client: &Client,
    options: &Options,
    watches: &mut Watches,
    metrics: &Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let caches = watches.caches();
    let apps = applied_objects(watches.apps.subscribe());
    let promotion_changes = applied_objects(watches.promotions.subscribe());
    // Nudges from the pull-request handler: a comment or a review came.
    let nudged: Arc<Mutex<HashSet<ObjectRef<App>>>> = Arc::default();
    let nudges = match watches.nudges.1.take() {
        Some(rx) => {
            let nudged = nudged.clone();
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
                .inspect(move |app| {
                    // GitHub has news for this App: its next look reads GitHub.
                    nudged
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(app.clone());
                })
                .boxed()
        }
        None => futures::stream::empty().boxed(),
    };
    let controller = Controller::for_stream(apps, caches.apps.store.clone())
        .with_config(controller::Config::default().concurrency(options.concurrency))
        .watches_stream(promotion_changes, |p: Promotion| {
            let namespace = p.namespace()?;
            Some(ObjectRef::<App>::new(&p.spec.app).within(&namespace))
        })
        .reconcile_on(nudges)
        .graceful_shutdown_on(stop);
    let ctx = Arc::new(PromotionContext {
        core: Core::new(client.clone(), &options.identity, metrics.clone()),
        listed: Listed::of([
            caches.apps.listed.part(),
            caches.policies.listed.part(),
            caches.promotions.listed.part(),
            caches.snapshots.listed.part(),
        ]),
        promotions: caches.promotions.store.clone(),
        promotions_by_app: caches.promotions_by_app.clone(),
        kept: caches.snapshots.store.clone(),
        policies: caches.policies.store.clone(),
        snapshots: Mutex::default(),
        nudged,
        github_read: Mutex::default(),
        stale: Mutex::default(),
    });
    let metrics = metrics.clone();
    async move {
        let results = controller.run(reconcile, driver::error_policy, ctx);
        driver::drive(CONTROLLER, &metrics, results).await;
    }
}
