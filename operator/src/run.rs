//! Wiring: caches, the App, Rule, Function and GitSource controllers, leader election and shutdown.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::{NamespaceResourceScope, PartialObjectMeta};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use winky_crds::keys::{MANAGED_BY_LABEL, OWNER_KIND_LABEL};
use winky_crds::{App, Function, GitSource, PromotionPolicy, Rule};

use crate::context::{Backoffs, Context, Settings, Stores};
use crate::emulate::EmulatorRunner;
use crate::events::Recorder;
use crate::function::{self, FunctionContext};
use crate::gitsource::{self, GitSourceContext};
use crate::http::Health;
use crate::leader::{self, LeaderConfig};
use crate::listed::{Listed, cache};
use crate::metrics::Metrics;
use crate::pulls::{self, PullRequests};
use crate::rule::{self, RuleContext};
use crate::webhook::{self, KubeSources, Webhooks};
use crate::{MANAGED_BY, app};

/// How long running reconciles get to finish at shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Time kept free between a lost leader's last act and the Lease's expiry:
/// for requests already sent when its controllers are aborted, and for clocks
/// that disagree a little.
const HANDOVER_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    /// Most concurrent reconciles (0: unlimited).
    pub concurrency: u16,
    /// What the operator can provide.
    pub settings: Settings,
    /// Leader election, or none when exactly one replica runs.
    pub leader: Option<LeaderConfig>,
    /// Name in Events (`reportingController`'s instance).
    pub identity: String,
    /// The container engine the emulator runs in, if any.
    pub engine: Option<std::path::PathBuf>,
    /// Most emulator runs at once (at least one).
    pub emulator_concurrency: usize,
    /// Where GitSources keep their bare cache repositories.
    pub git_cache_dir: std::path::PathBuf,
    /// Where the GitHub webhook receiver listens, if anywhere.
    pub webhook_addr: Option<std::net::SocketAddr>,
}

/// Runs the controllers until `shutdown` resolves (then returns `Ok`) or
/// leadership is lost (then returns the error, and the process should exit).
pub async fn run(
    client: Client,
    options: Options,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let version = client.apiserver_version().await?;
    info!(apiserver = %version.git_version, namespace = options.namespace.as_deref().unwrap_or("<all>"), "connected");
    // A follower is healthy and ready too: it only waits for the Lease.
    health.ready.store(true, Ordering::Relaxed);

    let mut shutdown = Box::pin(shutdown);
    let mut renewed = None;
    if let Some(config) = &options.leader {
        tokio::select! {
            acquired = leader::acquire(&client, config) => renewed = Some(acquired),
            _ = &mut shutdown => return Ok(()),
        }
        health.metrics.leader.set(1);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let controllers = futures::future::join(
        app_controller(
            client.clone(),
            options.clone(),
            health.clone(),
            stop(stop_rx.clone()),
        ),
        futures::future::join(
            rule_controller(
                client.clone(),
                options.clone(),
                health.clone(),
                stop(stop_rx.clone()),
            ),
            futures::future::join(
                function_controller(
                    client.clone(),
                    options.clone(),
                    health.clone(),
                    stop(stop_rx.clone()),
                ),
                gitsource_controller(client.clone(), options.clone(), health.clone(), stop(stop_rx)),
            ),
        ),
    );
    let mut controller = tokio::spawn(async move {
        controllers.await;
    });

    let lost = async {
        match (&options.leader, renewed) {
            (Some(config), Some(renewed)) => leader::hold(&client, config, renewed).await,
            _ => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = &mut shutdown => Ok(()),
        lost = lost => Err(anyhow::Error::new(lost)),
        ended = &mut controller => Err(anyhow::anyhow!("the controllers stopped unexpectedly: {ended:?}")),
    };
    let _ = stop_tx.send(true);
    // A graceful shutdown lets running reconciles finish; a reconcile stuck
    // on an unanswered request must not hold the process, so it gets a
    // deadline after which the controller is aborted. A leader that lost its
    // Lease must have stopped before another replica can take it.
    let grace = shutdown_grace(options.leader.as_ref());
    if tokio::time::timeout(grace, &mut controller).await.is_err() {
        warn!(?grace, "the controllers did not stop in time; aborting them");
        controller.abort();
    }
    health.metrics.leader.set(0);
    if let (Some(config), Ok(())) = (&options.leader, &outcome) {
        leader::release(&client, config).await;
    }
    outcome
}

/// How long running reconciles get to finish at shutdown: [`SHUTDOWN_GRACE`],
/// and shorter, by [`HANDOVER_MARGIN`], than what a lost Lease leaves before
/// another replica can lead.
fn shutdown_grace(leader: Option<&LeaderConfig>) -> std::time::Duration {
    leader.map_or(SHUTDOWN_GRACE, |config| {
        SHUTDOWN_GRACE.min(
            config
                .lease_duration
                .saturating_sub(config.renew_deadline)
                .saturating_sub(HANDOVER_MARGIN),
        )
    })
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Whose children a watch selects: each controller watches only its own,
/// so a change to a Function's Deployment never wakes the App controller.
#[derive(Clone, Copy, Debug)]
enum Owner {
    App,
    Function,
}

impl Owner {
    /// The value of `winky.dev/owner-kind` on its children.
    fn kind(self) -> &'static str {
        match self {
            Owner::App => "App",
            Owner::Function => "Function",
        }
    }
}

/// The label selector of what the operator creates for `owner`'s kind.
fn managed_selector(owner: Owner) -> watcher::Config {
    watcher::Config::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{OWNER_KIND_LABEL}={}",
        owner.kind()
    ))
}

/// Changes to the metadata of the objects of kind `K` the operator manages: a
/// trigger for their owner, with no cache (a reconcile never reads them).
fn managed_changes<K>(
    client: &Client,
    namespace: Option<&str>,
    owner: Owner,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    watcher(
        scoped::<PartialObjectMeta<K>>(client, namespace),
        managed_selector(owner),
    )
    .default_backoff()
    .touched_objects()
}

/// Like [`managed_changes`], plus a cache of that metadata for reconciles to read.
fn cached_managed_changes<K>(
    client: &Client,
    namespace: Option<&str>,
    owner: Owner,
) -> (
    Store<PartialObjectMeta<K>>,
    impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    reflected(
        scoped::<PartialObjectMeta<K>>(client, namespace),
        managed_selector(owner),
    )
}

/// A cache of the objects of `api` that `config` selects, and the stream of
/// their changes that fills it (the stream must be polled, as a trigger).
fn reflected<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = crate::triggers::listed_objects(watcher(api, config).default_backoff().reflect(writer));
    (reader, stream)
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

/// Like [`reflected`], passing on only appearances, spec changes and
/// deletions (see [`crate::triggers::spec_changes`]).
fn spec_reflected<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = crate::triggers::spec_changes(watcher(api, config).default_backoff().reflect(writer));
    (reader, stream)
}

/// The Event recorder of every controller.
fn recorder(client: &Client, options: &Options) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "winky-operator".into(),
            instance: Some(options.identity.clone()),
        },
    )
}

/// Drives the result stream of the controller `name` (its metrics label) to
/// its end. Reconcile errors are logged by the error policies; this logs the
/// others and counts failed lists and watches.
async fn drive<T, R, Q>(
    name: &'static str,
    metrics: &Metrics,
    results: impl Stream<Item = Result<T, controller::Error<R, Q>>>,
) where
    R: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    info!("{name} controller started");
    results
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                // A reconcile queued for an object deleted since: expected.
                Err(e @ controller::Error::ObjectNotFound(_)) => debug!(error = %e, "{name} controller"),
                // A list or watch of one of its inputs failed (it is retried).
                Err(e @ controller::Error::QueueError(_)) => {
                    metrics.watch_failed(name);
                    warn!(error = %e, "{name} controller");
                }
                Err(e) => warn!(error = %e, "{name} controller"),
            }
        })
        .await;
    info!("{name} controller stopped");
}

async fn app_controller(
    client: Client,
    options: Options,
    health: Arc<Health>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = options.namespace.as_deref();
    let (pod_disruption_budgets, pdb_events) =
        cached_managed_changes::<PodDisruptionBudget>(&client, ns, Owner::App);
    let (policies, policy_events) = reflected(
        Api::<PromotionPolicy>::all(client.clone()),
        watcher::Config::default(),
    );

    // With the emulator on, an App's Functions and Rules are part of what it
    // checks: they are cached, and a change to one re-checks its App. With
    // it off, they are not watched here at all.
    let engine = match &options.engine {
        None => None,
        Some(socket) => winky_emulator::Engine::connect(socket)
            .await
            .inspect_err(|e| warn!(error = %e, "the emulator is off: no container engine"))
            .ok(),
    };
    let mut caches = vec![cache(&policies), cache(&pod_disruption_budgets)];
    let (emulator, function_events, rule_events) = match engine {
        None => (
            None,
            futures::stream::empty().boxed(),
            futures::stream::empty().boxed(),
        ),
        Some(engine) => {
            // Only a spec change (or an appearance or deletion) changes the
            // bundle: the Function and Rule controllers' status writes, and the
            // emulator's own, do not wake the App.
            let (functions, function_events) =
                spec_reflected(scoped::<Function>(&client, ns), watcher::Config::default());
            let (rules, rule_events) =
                spec_reflected(scoped::<Rule>(&client, ns), watcher::Config::default());
            caches.extend([cache(&functions), cache(&rules)]);
            let runner = EmulatorRunner::new(
                client.clone(),
                engine,
                recorder(&client, &options),
                health.metrics.clone(),
                functions,
                rules,
                options.emulator_concurrency,
            );
            (
                Some(Arc::new(runner)),
                function_events.boxed(),
                rule_events.boxed(),
            )
        }
    };

    let controller = Controller::new(
        scoped::<App>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller::Config::default().concurrency(options.concurrency));
    let apps = controller.store();
    let app_of = |namespace: Option<String>, app: &str| Some(ObjectRef::<App>::new(app).within(&namespace?));
    let controller = controller
        .owns_stream(managed_changes::<Deployment>(&client, ns, Owner::App))
        .owns_stream(managed_changes::<Service>(&client, ns, Owner::App))
        .owns_stream(managed_changes::<ServiceAccount>(&client, ns, Owner::App))
        .owns_stream(managed_changes::<ConfigMap>(&client, ns, Owner::App))
        .owns_stream(managed_changes::<NetworkPolicy>(&client, ns, Owner::App))
        .owns_stream(pdb_events)
        .watches_stream(policy_events, move |policy: PromotionPolicy| {
            let name = policy.name_any();
            apps.state()
                .into_iter()
                .filter(|a| a.spec.policy.as_deref() == Some(name.as_str()))
                .map(|a| ObjectRef::from_obj(&*a))
                .collect::<Vec<_>>()
        })
        .watches_stream(function_events, move |f: Function| {
            app_of(f.namespace(), &f.spec.app)
        })
        .watches_stream(rule_events, move |r: Rule| app_of(r.namespace(), &r.spec.app))
        .graceful_shutdown_on(stop);

    // The emulator's runs end with this controller, stopped or aborted.
    let _runs = StopRunsOnDrop(emulator.clone());
    let ctx = Arc::new(Context {
        emulator,
        recorder: recorder(&client, &options),
        client,
        metrics: health.metrics.clone(),
        settings: options.settings.clone(),
        stores: Stores {
            policies,
            pod_disruption_budgets,
        },
        listed: Listed::of(caches),
        backoffs: Backoffs::default(),
    });
    let results = controller.run(app::reconcile, app::error_policy, ctx);
    drive(app::CONTROLLER, &health.metrics, results).await;
}

async fn rule_controller(
    client: Client,
    options: Options,
    health: Arc<Health>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = options.namespace.as_deref();
    // A second watch of the runtime ConfigMaps, beside the App controller's
    // (kube-runtime's shared reflectors do not forward deletions, which the
    // App controller needs to recreate a deleted ConfigMap), and of the whole
    // object: `rules.json` is applied only when it differs from the cache.
    let (config_maps, config_map_events) =
        reflected(scoped::<ConfigMap>(&client, ns), managed_selector(Owner::App));
    let controller = Controller::new(scoped::<Rule>(&client, ns), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(options.concurrency));
    let rules = controller.store();
    let rules_of = rules.clone();
    let controller = controller
        .watches_stream(config_map_events, move |cm| {
            rule::rules_of_config_map(&rules_of, &cm)
        })
        .graceful_shutdown_on(stop);
    let ctx = Arc::new(RuleContext {
        recorder: recorder(&client, &options),
        client,
        metrics: health.metrics.clone(),
        rules,
        listed: Listed::of([cache(&config_maps)]),
        config_maps,
        verdicts: Default::default(),
        backoffs: Backoffs::default(),
    });
    let results = controller.run(rule::reconcile, rule::error_policy, ctx);
    drive(rule::CONTROLLER, &health.metrics, results).await;
}

async fn function_controller(
    client: Client,
    options: Options,
    health: Arc<Health>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = options.namespace.as_deref();
    // Caches of the metadata of its workloads: a changed trigger deletes the
    // workload of the old one.
    let (deployments, deployment_events) = cached_managed_changes::<Deployment>(&client, ns, Owner::Function);
    let (services, service_events) = cached_managed_changes::<Service>(&client, ns, Owner::Function);
    let (cron_jobs, cron_job_events) = cached_managed_changes::<CronJob>(&client, ns, Owner::Function);
    // Every App is cached, but only a new, changed or deleted App wakes its
    // Functions: the App controller's status writes do not.
    let (apps, app_events) = spec_reflected(
        scoped::<App>(&client, ns),
        watcher::Config::default().any_semantic(),
    );

    let controller = Controller::new(
        scoped::<Function>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .with_config(controller::Config::default().concurrency(options.concurrency));
    let app_metrics = health.metrics.clone();
    let functions = controller.store();
    let controller = controller
        .owns_stream(deployment_events)
        .owns_stream(service_events)
        .owns_stream(cron_job_events)
        .owns_stream(managed_changes::<ServiceAccount>(&client, ns, Owner::Function))
        .owns_stream(managed_changes::<NetworkPolicy>(&client, ns, Owner::Function))
        .watches_stream(app_events, move |app: App| {
            app_metrics.triggered(function::CONTROLLER, "App");
            function::functions_of_app(&functions, &app)
        })
        .graceful_shutdown_on(stop);
    let ctx = Arc::new(FunctionContext {
        recorder: recorder(&client, &options),
        client,
        metrics: health.metrics.clone(),
        settings: options.settings.clone(),
        listed: Listed::of([
            cache(&apps),
            cache(&deployments),
            cache(&services),
            cache(&cron_jobs),
        ]),
        apps,
        deployments,
        services,
        cron_jobs,
        backoffs: Backoffs::default(),
    });
    let results = controller.run(function::reconcile, function::error_policy, ctx);
    drive(function::CONTROLLER, &health.metrics, results).await;
}

async fn gitsource_controller(
    client: Client,
    options: Options,
    health: Arc<Health>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = options.namespace.as_deref();
    // Only a new spec (or an appearance or deletion) starts a sync: the
    // controller's own status writes do not. The interval requeues, and the
    // webhook asks for a sync through `syncs`.
    let (sources, source_events) =
        spec_reflected(scoped::<GitSource>(&client, ns), watcher::Config::default());
    // Who the agents are, for the provenance of commits and the agents'
    // pull requests; a policy change needs no new sync.
    let (policies, policy_events) = reflected(
        Api::<PromotionPolicy>::all(client.clone()),
        watcher::Config::default(),
    );
    // Room for a queued sync per GitSource of a large installation: a full
    // channel only drops requests for sources that already have one queued.
    let (syncs, requested) = tokio::sync::mpsc::channel::<ObjectRef<GitSource>>(1024);
    let requested = futures::stream::unfold(
        requested,
        |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
    );
    let recorder = recorder(&client, &options);

    // The webhook receiver runs with the controller (on the leader) and stops with it.
    let _webhooks = options.webhook_addr.map(|addr| {
        let (deliveries, received) = tokio::sync::mpsc::channel(256);
        let hooks = Webhooks::new(
            KubeSources {
                sources: sources.clone(),
                client: client.clone(),
            },
            syncs.clone(),
            deliveries,
            health.metrics.clone(),
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
                recorder: recorder.clone(),
                sources: sources.clone(),
                policies: policies.clone(),
                metrics: health.metrics.clone(),
                cache_dir: options.git_cache_dir.clone(),
            },
        ));
        AbortOnDrop(vec![server, recorded])
    });

    let controller = Controller::for_stream(source_events, sources)
        .with_config(controller::Config::default().concurrency(options.concurrency))
        .reconcile_on(requested)
        .watches_stream(policy_events, |_: PromotionPolicy| {
            Vec::<ObjectRef<GitSource>>::new()
        })
        .graceful_shutdown_on(stop);
    let ctx = Arc::new(GitSourceContext {
        recorder,
        client,
        metrics: health.metrics.clone(),
        cache_dir: options.git_cache_dir.clone(),
        backoffs: Backoffs::default(),
        listed: Listed::of([cache(&policies)]),
        policies,
    });
    let results = controller.run(gitsource::reconcile, gitsource::error_policy, ctx);
    drive(gitsource::CONTROLLER, &health.metrics, results).await;
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

#[cfg(test)]
mod tests {
    use super::{SHUTDOWN_GRACE, shutdown_grace};
    use crate::leader::LeaderConfig;
    use std::time::Duration;

    #[test]
    fn a_lost_leader_stops_before_the_lease_can_be_taken() {
        let defaults = LeaderConfig::new("ns", "a");
        let grace = shutdown_grace(Some(&defaults));
        assert_eq!(grace, Duration::from_secs(4));
        assert!(defaults.renew_deadline + grace < defaults.lease_duration);
        let tight = LeaderConfig {
            renew_deadline: Duration::from_secs(13),
            ..defaults
        };
        assert_eq!(shutdown_grace(Some(&tight)), Duration::from_secs(1));
        assert_eq!(shutdown_grace(None), SHUTDOWN_GRACE);
    }
}
