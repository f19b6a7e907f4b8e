//! What wakes the GitSource controller and what it reads, and the webhook
//! receiver that runs with it.
//!
//! ```text
//!   GitSource (its own watch: appeared, spec changed, gone) ─▶ sync it
//!   push webhook for a GitSource ─────────────────────────────▶ sync it (`reconcile_on`)
//!   every spec.interval ──────────────────────────────────────▶ sync it (requeue)
//!   PromotionPolicy (shared cache) — read, never a trigger: a policy change needs no sync
//! ```

use std::sync::Arc;

use kube::Client;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tracing::{info, warn};
use winky_crds::GitSource;

use super::{CONTROLLER, GitSourceContext, reconcile};
use crate::context::Core;
use crate::driver;
use crate::listed::Listed;
use crate::metrics::Metrics;
use crate::pulls::{self, PullRequests};
use crate::run::Options;
use crate::shared::Watches;
use crate::watch::{scoped, spec_reflected};
use crate::webhook::{self, KubeSources, Webhooks};

/// The GitSource controller and, with `options.webhook_addr`, the webhook
/// receiver, running when the returned future is polled, until `stop`
/// resolves (the receiver stops with the controller).
pub fn controller(
    client: &Client,
    options: &Options,
    watches: &mut Watches,
    metrics: &Arc<Metrics>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    let ns = options.namespace.as_deref();
    let caches = watches.caches();
    // Only a new spec (or an appearance or deletion) starts a sync: the
    // controller's own status writes do not. The interval requeues, and the
    // webhook asks for a sync through `syncs`. Not a shared watch: the
    // controller and its webhook receiver are its only readers.
    let (sources, source_changes) =
        spec_reflected(scoped::<GitSource>(client, ns), watcher::Config::default());
    // Room for a queued sync per GitSource of a large installation: a full
    // channel only drops requests for sources that already have one queued.
    let (syncs, requested) = tokio::sync::mpsc::channel::<ObjectRef<GitSource>>(1024);
    let requested = futures::stream::unfold(
        requested,
        |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
    );
    let core = Core::new(client.clone(), &options.identity, metrics.clone());
    let recorder = core.recorder.clone();
    let ctx = Arc::new(GitSourceContext {
        core,
        cache_dir: options.git_cache_dir.clone(),
        // Who the agents are, for the provenance of commits and the agents'
        // pull requests, from the cache the App controller's watch fills.
        policies: caches.policies.store.clone(),
        listed: Listed::of([caches.policies.listed.part()]),
    });
    let controller = Controller::for_stream(source_changes, sources.clone())
        .with_config(controller::Config::default().concurrency(options.concurrency))
        .reconcile_on(requested)
        .graceful_shutdown_on(stop);
    let webhook_addr = options.webhook_addr;
    let cache_dir = options.git_cache_dir.clone();
    let (apps, nudge) = (caches.apps.store.clone(), watches.nudges.0.clone());
    let (client, metrics) = (client.clone(), metrics.clone());
    async move {
        // The webhook receiver runs with the controller (on the leader) and stops with it.
        let _webhooks = webhook_addr.map(|addr| {
            let (deliveries, received) = tokio::sync::mpsc::channel(256);
            let hooks = Webhooks::new(
                KubeSources {
                    sources: sources.clone(),
                    client: client.clone(),
                },
                syncs.clone(),
                deliveries,
                metrics.clone(),
            );
            info!(%addr, "serving the GitHub webhook receiver on /hooks/github/{{namespace}}/{{name}}");
            let server = tokio::spawn(async move {
                if let Err(e) = webhook::serve(addr, webhook::router(Arc::new(hooks))).await {
                    warn!(%addr, error = %e, "the webhook receiver stopped");
                }
            });
            let recorded = tokio::spawn(pulls::handle(
                received,
                PullRequests {
                    client: client.clone(),
                    recorder,
                    sources: sources.clone(),
                    policies: caches.policies.store.clone(),
                    metrics: metrics.clone(),
                    cache_dir,
                    apps,
                    promotions: caches.promotions.store.clone(),
                    nudge,
                },
            ));
            AbortOnDrop(vec![server, recorded])
        });
        // Until the controller stops, so that the sync channel stays open.
        let _syncs = syncs;
        let results = controller.run(reconcile, driver::error_policy, ctx);
        driver::drive(CONTROLLER, &metrics, results).await;
    }
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
