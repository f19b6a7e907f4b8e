//! Watches: what wakes the controllers and what fills their caches.
//!
//! Each controller builds the watches only it reads ([`managed_changes`],
//! [`reflected`], …). A kind that several controllers read is watched once,
//! as a [`SharedWatch`]: one list and one cache, and each reader gets its own
//! copy of the events to filter as it needs.
//!
//! ```text
//!   watcher ─▶ reflect (Store) ─▶ indexes ─▶ first list? ─▶ SharedWatch::run ─┬─▶ subscriber (App controller)
//!                                                                            └─▶ subscriber (Function controller)
//! ```
//!
//! Why not kube-runtime's own shared streams (`reflect_shared`,
//! `Controller::for_shared_stream`): they are unstable, and their
//! subscribers are not sent deletions, which the Function controller needs
//! to see an App go; and their bounded broadcast makes the watch wait for its
//! slowest subscriber.

use std::fmt::Debug;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::{NamespaceResourceScope, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::index::{self, ByApp, SharedIndex};
use crate::listed::{Listed, first_list};
use crate::metrics::Metrics;
use crate::naming::{OwnerKind, app_children_selector, managed_selector};
use crate::triggers::listed_objects;

/// The Api of `K` in `namespace`, or in all namespaces.
pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// What the operator creates for `owner`'s kind (see [`managed_selector`]).
fn managed(owner: OwnerKind) -> watcher::Config {
    watcher::Config::default().labels(&managed_selector(owner))
}

/// Changes to the metadata of the objects of kind `K` the operator manages
/// for `owner`'s kind: a trigger for their owner, with no cache (a reconcile
/// never reads them).
pub fn managed_changes<K>(
    client: &Client,
    namespace: Option<&str>,
    owner: OwnerKind,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + 'static,
{
    watcher(scoped::<PartialObjectMeta<K>>(client, namespace), managed(owner))
        .default_backoff()
        .touched_objects()
}

/// Like [`managed_changes`], plus a cache of that metadata for reconciles to read.
pub fn cached_managed_changes<K>(
    client: &Client,
    namespace: Option<&str>,
    owner: OwnerKind,
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
    reflected(scoped::<PartialObjectMeta<K>>(client, namespace), managed(owner))
}

/// A cache of the objects of `api` that `config` selects, and the stream of
/// their changes that fills it (the stream must be polled, as a trigger).
pub fn reflected<K>(
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

/// Like [`reflected`], passing on only appearances, spec changes and
/// deletions (see [`crate::triggers::spec_changes`]).
pub fn spec_reflected<K>(
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

/// What a metadata cache keeps of an object: its name, namespace, uid,
/// labels and deletion. Managed fields (most of an object's metadata),
/// annotations and owner references are never read from these caches.
fn slim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
}

/// A cache of the metadata of an App's children of kind `K`, and its index by App.
pub type ChildMetadata<K> = (Store<PartialObjectMeta<K>>, ByApp<PartialObjectMeta<K>>);

/// The App children of kind `K`, by metadata, in every namespace
/// ([`app_children_selector`]: with `namespace`, the children of the Apps of
/// that namespace only, wherever their stages run): a cache, an index by App,
/// and the stream of their changes that fills both — a trigger for their
/// App, which must be polled.
pub fn app_children<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    ChildMetadata<K>,
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
    let by_app = index::children_by_app::<K>();
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(&app_children_selector(namespace));
    let events = watcher(Api::<PartialObjectMeta<K>>::all(client.clone()), config)
        .default_backoff()
        .modify(slim::<PartialObjectMeta<K>>)
        .reflect(writer);
    let stream = listed_objects(by_app.maintain(events));
    ((reader, by_app), stream)
}

/// Every Namespace, by metadata: a cache, and the stream that fills it
/// (which must be polled).
pub fn namespaces(
    client: &Client,
) -> (
    Store<PartialObjectMeta<Namespace>>,
    impl Stream<Item = Result<PartialObjectMeta<Namespace>, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let events = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(slim::<PartialObjectMeta<Namespace>>)
    .reflect(writer);
    (reader, listed_objects(events))
}

/// A cache several controllers read, and the wait for its first list.
#[derive(Clone, Debug)]
pub struct Cache<K: Resource<DynamicType = ()> + 'static> {
    /// The objects.
    pub store: Store<K>,
    /// Resolves once the store has listed. Wait on this, never on the
    /// store's own readiness (see [`crate::listed`]).
    pub listed: Listed,
}

/// The events of a watch after its cache (and indexes) took them.
type Events<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// One watch of `K` for several readers: one list, one cache, and a copy of
/// every event for each subscriber. It is polled by [`SharedWatch::run`] and
/// nothing else, so its store fills whatever its readers do, and one
/// controller backing off its own triggers does not hold the others'.
pub struct SharedWatch<K: Resource<DynamicType = ()> + 'static> {
    cache: Cache<K>,
    events: Events<K>,
    subscribers: Vec<mpsc::UnboundedSender<watcher::Event<K>>>,
    /// The controller whose objects these are: the label of its failures.
    owner: &'static str,
}

impl<K: Resource<DynamicType = ()> + 'static> Debug for SharedWatch<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWatch")
            .field("kind", &K::kind(&()))
            .field("owner", &self.owner)
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// A watch of what `api` and `config` select; its failures count as the
    /// controller `owner`'s watch errors.
    pub fn new(api: Api<K>, config: watcher::Config, owner: &'static str) -> Self {
        let (store, writer) = reflector::store();
        let events = watcher(api, config).default_backoff().reflect(writer);
        Self::of(store, events.boxed(), owner)
    }

    /// Like [`SharedWatch::new`], keeping `index` in step with the store.
    pub fn indexed<Q>(
        api: Api<K>,
        config: watcher::Config,
        owner: &'static str,
        index: &SharedIndex<K, Q>,
    ) -> Self
    where
        Q: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
    {
        let (store, writer) = reflector::store();
        let events = index.maintain(watcher(api, config).default_backoff().reflect(writer));
        Self::of(store, events.boxed(), owner)
    }

    /// `events`, which fill `store`, shared.
    fn of(store: Store<K>, events: Events<K>, owner: &'static str) -> Self {
        let (listed, events) = first_list(events);
        Self {
            cache: Cache { store, listed },
            events: events.boxed(),
            subscribers: Vec::new(),
            owner,
        }
    }

    /// The cache, to read.
    pub fn cache(&self) -> Cache<K> {
        self.cache.clone()
    }

    /// A copy of every event, after the cache holds it. Errors are not
    /// copied: [`SharedWatch::run`] counts them once, for the owner.
    ///
    /// Taking `&mut self` makes every subscription come before the watch runs
    /// (which consumes it), so no subscriber misses the first list.
    pub fn subscribe(
        &mut self,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
        // Unbounded: the watch must never wait for a reader (the others would
        // wait with it), and controllers take their triggers as they come.
        let (sender, receiver) = mpsc::unbounded();
        self.subscribers.push(sender);
        receiver.map(Ok)
    }

    /// Polls the watch until `stop` resolves, handing each event to every
    /// subscriber still listening. A failed list or watch is retried with
    /// backoff, and counted in `winky_watch_errors_total` of the owner.
    pub async fn run(self, metrics: Arc<Metrics>, stop: impl Future<Output = ()>) {
        let Self {
            events,
            mut subscribers,
            owner,
            ..
        } = self;
        events
            .take_until(stop)
            .for_each(|event| {
                match event {
                    Ok(event) => dispatch(&mut subscribers, event),
                    Err(e) => {
                        metrics.watch_failed(owner);
                        warn!(error = %e, kind = %K::kind(&()), "{owner} controller");
                    }
                }
                std::future::ready(())
            })
            .await;
    }
}

/// Sends `event` to every subscriber that still listens: a clone to each
/// but the last, which gets `event` itself.
fn dispatch<K: Clone>(
    subscribers: &mut Vec<mpsc::UnboundedSender<watcher::Event<K>>>,
    event: watcher::Event<K>,
) {
    // A reader that stopped (the emulator without an engine) costs no clone.
    subscribers.retain(|s| !s.is_closed());
    if let Some((last, others)) = subscribers.split_last() {
        for subscriber in others {
            let _ = subscriber.unbounded_send(event.clone());
        }
        let _ = last.unbounded_send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::watcher::Event;
    use std::time::Duration;

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("n".into()),
                ..Default::default()
            },
            ..ConfigMap::default()
        }
    }

    fn name(event: &Event<ConfigMap>) -> String {
        match event {
            Event::Init => "Init".into(),
            Event::InitApply(o) => format!("InitApply {}", o.metadata.name.as_deref().unwrap_or_default()),
            Event::InitDone => "InitDone".into(),
            Event::Apply(o) => format!("Apply {}", o.metadata.name.as_deref().unwrap_or_default()),
            Event::Delete(o) => format!("Delete {}", o.metadata.name.as_deref().unwrap_or_default()),
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_event_after_the_cache_and_errors_count_once() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let (events, rx) = mpsc::unbounded::<Result<Event<ConfigMap>, watcher::Error>>();
        // A reflector's stream: the store applies each event before it passes on.
        let reflected = rx
            .map(move |event| {
                if let Ok(event) = &event {
                    writer.apply_watcher_event(event);
                }
                event
            })
            .boxed();
        let mut shared = SharedWatch::of(store, reflected, "app");
        let cache = shared.cache();
        let first = shared.subscribe();
        let second = shared.subscribe();
        let gone = shared.subscribe();
        drop(gone);
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = futures::channel::oneshot::channel::<()>();
        let running = tokio::spawn(shared.run(metrics.clone(), stopped.map(|_| ())));

        for event in [
            Event::Init,
            Event::InitApply(config_map("a")),
            Event::InitDone,
            Event::Apply(config_map("b")),
            Event::Delete(config_map("a")),
        ] {
            events.unbounded_send(Ok(event)).unwrap();
        }
        events
            .unbounded_send(Err(watcher::Error::NoResourceVersion))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), cache.listed.wait())
            .await
            .expect("the cache never listed");
        let expected = ["Init", "InitApply a", "InitDone", "Apply b", "Delete a"];
        // Deletions are passed on, unlike kube-runtime's shared streams.
        for subscriber in [first, second] {
            let seen: Vec<String> = subscriber
                .take(expected.len())
                .map(|e| name(&e.unwrap()))
                .collect()
                .await;
            assert_eq!(seen, expected);
        }
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the watch did not stop")
            .unwrap();
        assert_eq!(cache.store.state().len(), 1, "b is cached, a is gone");
        assert!(
            metrics
                .encode()
                .contains(r#"winky_watch_errors_total{controller="app"} 1"#),
            "{}",
            metrics.encode()
        );
    }
}
