//! Indexes over reflector caches, so that "the objects of this App" is a
//! lookup rather than a scan of every object in the cache.
//!
//! ```text
//!   watch ─▶ reflect (Store) ─▶ SharedIndex::maintain ─▶ triggers, controllers
//!                                  │
//!            (namespace, app) ─────┴─▶ { Function, … }   functions_by_app
//!            (namespace, app) ───────▶ { Rule, … }       rules_by_app
//!            policy name ────────────▶ { App, … }        apps_by_policy
//!            (namespace, app) ───────▶ { Promotion, … }  promotions_by_app
//!            (app-namespace, app) ───▶ { child metadata } children_by_app (an App's
//!                                                         children, in any namespace)
//!            repository URL ─────────▶ { GitSource, … }  (ready for the webhook)
//!            (namespace, rule) ──────▶ { runtime ConfigMap } rules_published_in (the
//!                                                         Apps whose rules.json lists it)
//! ```
//!
//! An [`Index`] is pure: [`Index::apply`] folds one watch event into it, the
//! way kube-runtime's store does — a list (`Init`, `InitApply`…, `InitDone`)
//! fills a fresh buffer that replaces the index only when the list ends, so a
//! re-list forgets what is gone without an instant of emptiness. An object
//! whose key changed is moved: it is never found under both keys. The index
//! holds references only; the objects stay in the store, and a caller that
//! needs them reads the store (and checks the key again, as the two are
//! updated one after the other).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use winky_crds::keys::{APP_LABEL, APP_NAMESPACE_LABEL};
use winky_crds::{App, Function, GitSource, Promotion, Rule};

use crate::rule::publish::RULES_KEY;

/// An App's identity: its namespace and name. Functions, Rules and
/// Promotions name their App in `spec.app`, in their own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppKey {
    /// The namespace of the App and of what belongs to it.
    pub namespace: String,
    /// The App's name.
    pub app: String,
}

impl AppKey {
    /// The key of the App `app` in `namespace`.
    pub fn new(namespace: impl Into<String>, app: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            app: app.into(),
        }
    }

    /// The key of `app` itself; `None` without a namespace.
    pub fn of(app: &App) -> Option<Self> {
        Some(Self::new(app.namespace()?, app.name_any()))
    }
}

/// A kind whose objects belong to an App of their namespace (`spec.app`).
pub trait OfApp: Resource<DynamicType = ()> {
    /// The name of the App the object belongs to.
    fn app_name(&self) -> &str;

    /// The key of the App the object belongs to; `None` without a namespace.
    fn app_key(&self) -> Option<AppKey> {
        Some(AppKey::new(self.meta().namespace.clone()?, self.app_name()))
    }
}

impl OfApp for Function {
    fn app_name(&self) -> &str {
        &self.spec.app
    }
}

impl OfApp for Rule {
    fn app_name(&self) -> &str {
        &self.spec.app
    }
}

impl OfApp for Promotion {
    fn app_name(&self) -> &str {
        &self.spec.app
    }
}

/// Where each object is, by key and by reference.
struct Entries<K: Resource<DynamicType = ()>, Q> {
    by_key: HashMap<Q, HashSet<ObjectRef<K>>>,
    keys_of: HashMap<ObjectRef<K>, Vec<Q>>,
}

impl<K: Resource<DynamicType = ()>, Q: Clone + Eq + Hash> Entries<K, Q> {
    fn new() -> Self {
        Self {
            by_key: HashMap::new(),
            keys_of: HashMap::new(),
        }
    }

    /// Files `object` under `keys` (none: nowhere), leaving the keys it had.
    fn insert(&mut self, object: ObjectRef<K>, keys: Vec<Q>) {
        self.remove(&object);
        if keys.is_empty() {
            return;
        }
        for key in &keys {
            self.by_key.entry(key.clone()).or_default().insert(object.clone());
        }
        self.keys_of.insert(object, keys);
    }

    fn remove(&mut self, object: &ObjectRef<K>) {
        let Some(old) = self.keys_of.remove(object) else {
            return;
        };
        for key in old {
            if let Some(objects) = self.by_key.get_mut(&key) {
                objects.remove(object);
                // An App with nothing left takes no room.
                if objects.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }
}

/// How an [`Index`] reads an object's keys.
enum KeysOf<K, Q> {
    /// At most one key (most indexes: the App an object belongs to).
    One(fn(&K) -> Option<Q>),
    /// Any number (the Rules a runtime ConfigMap publishes).
    Many(fn(&K) -> Vec<Q>),
}

impl<K, Q> KeysOf<K, Q> {
    fn of(&self, object: &K) -> Vec<Q> {
        match self {
            KeysOf::One(key_of) => key_of(object).into_iter().collect(),
            KeysOf::Many(keys_of) => keys_of(object),
        }
    }
}

/// Objects of kind `K` grouped by a key of type `Q` that `key_of` reads
/// from each object (an object without a key is not indexed), or by each of
/// the keys `keys_of` reads ([`Index::with_keys`]).
pub struct Index<K: Resource<DynamicType = ()>, Q> {
    keys_of: KeysOf<K, Q>,
    live: Entries<K, Q>,
    /// What a list in progress has found, until it ends.
    listing: Option<Entries<K, Q>>,
}

impl<K: Resource<DynamicType = ()>, Q: Clone + Eq + Hash> Index<K, Q> {
    /// An empty index keyed by `key_of`.
    pub fn new(key_of: fn(&K) -> Option<Q>) -> Self {
        Self {
            keys_of: KeysOf::One(key_of),
            live: Entries::new(),
            listing: None,
        }
    }

    /// An empty index that files each object under every key `keys_of`
    /// reads from it.
    pub fn with_keys(keys_of: fn(&K) -> Vec<Q>) -> Self {
        Self {
            keys_of: KeysOf::Many(keys_of),
            live: Entries::new(),
            listing: None,
        }
    }

    /// Folds one watch event into the index.
    pub fn apply(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Init => self.listing = Some(Entries::new()),
            watcher::Event::InitApply(object) => {
                let keys = self.keys_of.of(object);
                self.listing
                    .get_or_insert_with(Entries::new)
                    .insert(reference(object), keys);
            }
            watcher::Event::InitDone => {
                self.live = self.listing.take().unwrap_or_else(Entries::new);
            }
            watcher::Event::Apply(object) => {
                let keys = self.keys_of.of(object);
                self.live.insert(reference(object), keys);
            }
            watcher::Event::Delete(object) => self.live.remove(&reference(object)),
        }
    }

    /// The objects filed under `key`, by namespace and name.
    pub fn get(&self, key: &Q) -> Vec<ObjectRef<K>> {
        let mut objects: Vec<ObjectRef<K>> = self
            .live
            .by_key
            .get(key)
            .map(|objects| objects.iter().cloned().collect())
            .unwrap_or_default();
        objects.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        objects
    }

    /// How many keys have objects.
    pub fn keys(&self) -> usize {
        self.live.by_key.len()
    }
}

impl<K: Resource<DynamicType = ()>, Q> fmt::Debug for Index<K, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("kind", &K::kind(&()))
            .field("keys", &self.live.by_key.len())
            .field("objects", &self.live.keys_of.len())
            .field("listing", &self.listing.is_some())
            .finish()
    }
}

/// A reference without the resourceVersion and uid a store's key carries:
/// equal either way (kube-runtime compares name and namespace only), and
/// smaller to hold.
fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<K> {
    let name = object.name_any();
    match object.meta().namespace.as_deref() {
        Some(namespace) => ObjectRef::new(&name).within(namespace),
        None => ObjectRef::new(&name),
    }
}

/// An [`Index`] shared between the watch that maintains it and the
/// reconciles and trigger mappers that read it.
pub struct SharedIndex<K: Resource<DynamicType = ()>, Q>(Arc<RwLock<Index<K, Q>>>);

impl<K: Resource<DynamicType = ()>, Q> Clone for SharedIndex<K, Q> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Resource<DynamicType = ()>, Q> fmt::Debug for SharedIndex<K, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedIndex").field(&*self.read()).finish()
    }
}

impl<K, Q> SharedIndex<K, Q>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    Q: Clone + Eq + Hash + Send + Sync + 'static,
{
    /// An empty index keyed by `key_of`.
    pub fn new(key_of: fn(&K) -> Option<Q>) -> Self {
        Self(Arc::new(RwLock::new(Index::new(key_of))))
    }

    /// An empty index that files each object under every key `keys_of` reads.
    pub fn with_keys(keys_of: fn(&K) -> Vec<Q>) -> Self {
        Self(Arc::new(RwLock::new(Index::with_keys(keys_of))))
    }

    /// The objects filed under `key`, by namespace and name.
    pub fn get(&self, key: &Q) -> Vec<ObjectRef<K>> {
        self.read().get(key)
    }

    /// Passes `events` on, folding each into the index first. Placed after
    /// `.reflect()`, so the store and the index hold an event before anything
    /// downstream of them sees it.
    pub fn maintain<S>(
        &self,
        events: S,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + use<K, Q, S>
    where
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    {
        let index = self.clone();
        events.inspect(move |event| {
            if let Ok(event) = event {
                index.write().apply(event);
            }
        })
    }

    // The state behind a poisoned lock is an index that was being updated
    // by a panicking thread: still the best answer there is.
    fn write(&self) -> RwLockWriteGuard<'_, Index<K, Q>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K: Resource<DynamicType = ()>, Q> SharedIndex<K, Q> {
    fn read(&self) -> RwLockReadGuard<'_, Index<K, Q>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Objects by the App they belong to.
pub type ByApp<K> = SharedIndex<K, AppKey>;

/// An index of `K` by the App each object belongs to.
pub fn by_app<K>() -> ByApp<K>
where
    K: OfApp + Send + Sync + 'static,
{
    SharedIndex::new(|object: &K| object.app_key())
}

/// The App a child of an App belongs to, from its labels:
/// `winky.dev/app-namespace` (the child's own namespace when it has none, as
/// children made before stages did not) and `winky.dev/app`.
pub fn child_app_key<K: Resource>(child: &K) -> Option<AppKey> {
    let labels = child.meta().labels.as_ref()?;
    let app = labels.get(APP_LABEL)?;
    let namespace = labels
        .get(APP_NAMESPACE_LABEL)
        .or(child.meta().namespace.as_ref())?;
    Some(AppKey::new(namespace, app))
}

/// An index of the metadata of the App children of kind `K` by the App they
/// belong to ([`child_app_key`]), wherever they are.
pub fn children_by_app<K>() -> ByApp<PartialObjectMeta<K>>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    SharedIndex::new(child_app_key::<PartialObjectMeta<K>>)
}

/// The App runtime ConfigMaps by each Rule their `rules.json` publishes:
/// where a Rule is published, whichever App it names now. A Rule that moved
/// to another App is found in its old App's ConfigMap and unpublished there.
pub type PublishedRules = SharedIndex<ConfigMap, ObjectRef<Rule>>;

/// An index of runtime ConfigMaps by the Rules they publish ([`published_rules`]).
pub fn rules_published_in() -> PublishedRules {
    SharedIndex::with_keys(published_rules)
}

/// The Rules (of the ConfigMap's namespace) that the `rules.json` of a
/// runtime ConfigMap lists by name; none when it has no such key or it is not
/// the operator's document.
pub fn published_rules(config_map: &ConfigMap) -> Vec<ObjectRef<Rule>> {
    #[derive(serde::Deserialize)]
    struct Document {
        rules: Vec<Published>,
    }
    #[derive(serde::Deserialize)]
    struct Published {
        name: String,
    }
    let (Some(namespace), Some(document)) = (
        config_map.meta().namespace.as_deref(),
        config_map.data.as_ref().and_then(|d| d.get(RULES_KEY)),
    ) else {
        return Vec::new();
    };
    serde_json::from_str::<Document>(document).map_or_else(
        |_| Vec::new(),
        |d| {
            d.rules
                .into_iter()
                .map(|r| ObjectRef::new(&r.name).within(namespace))
                .collect()
        },
    )
}

/// Apps by the name of the PromotionPolicy they follow.
pub fn apps_by_policy() -> SharedIndex<App, String> {
    SharedIndex::new(|app: &App| app.spec.policy.clone())
}

/// GitSources by the [`repository`] of their URL.
pub fn gitsources_by_repository() -> SharedIndex<GitSource, String> {
    SharedIndex::new(repository_of)
}

/// The key of a GitSource in [`gitsources_by_repository`].
pub fn repository_of(source: &GitSource) -> Option<String> {
    Some(repository(&source.spec.url))
}

/// The repository a URL points at, so that the spellings of one repository
/// meet: `scheme://host[:port]/path` with scheme and host lowercased, without
/// user information (a token must never become a key), query or fragment,
/// and without a trailing `/` or `.git`. `https://x-access-token:t@GitHub.com/org/repo.git/`
/// and GitHub's `html_url` `https://github.com/org/repo` are both
/// `https://github.com/org/repo`. The path keeps its case: only some hosts
/// ignore it.
pub fn repository(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let mut path = path;
    loop {
        let trimmed = path.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
        if trimmed == path {
            break;
        }
        path = trimmed;
    }
    let host = host.to_ascii_lowercase();
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn function(namespace: &str, name: &str, app: &str) -> Function {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7", "uid": name},
            "spec": {"app": app, "image": "fn:1", "trigger": {"http": {"path": "/"}}},
        }))
        .unwrap()
    }

    fn names(refs: Vec<ObjectRef<Function>>) -> Vec<String> {
        refs.into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect()
    }

    fn index() -> Index<Function, AppKey> {
        Index::new(|f: &Function| f.app_key())
    }

    #[test]
    fn objects_are_found_by_their_app_in_their_namespace() {
        let mut index = index();
        index.apply(&Event::Apply(function("n", "resize", "notes")));
        index.apply(&Event::Apply(function("n", "thumbs", "notes")));
        index.apply(&Event::Apply(function("n", "checkout", "shop")));
        // Same App name, another namespace: another App.
        index.apply(&Event::Apply(function("m", "resize", "notes")));
        assert_eq!(
            names(index.get(&AppKey::new("n", "notes"))),
            ["n/resize", "n/thumbs"]
        );
        assert_eq!(names(index.get(&AppKey::new("m", "notes"))), ["m/resize"]);
        assert_eq!(names(index.get(&AppKey::new("n", "shop"))), ["n/checkout"]);
        assert!(index.get(&AppKey::new("n", "chat")).is_empty());
        // Applying again (a status write) files nothing twice.
        index.apply(&Event::Apply(function("n", "resize", "notes")));
        assert_eq!(index.get(&AppKey::new("n", "notes")).len(), 2);
    }

    #[test]
    fn an_object_whose_app_changed_leaves_the_old_app() {
        let mut index = index();
        index.apply(&Event::Apply(function("n", "resize", "notes")));
        index.apply(&Event::Apply(function("n", "resize", "shop")));
        assert!(index.get(&AppKey::new("n", "notes")).is_empty());
        assert_eq!(names(index.get(&AppKey::new("n", "shop"))), ["n/resize"]);
        assert_eq!(index.keys(), 1, "an App with nothing left takes no room");
    }

    #[test]
    fn a_deleted_object_is_forgotten_whatever_it_names_now() {
        let mut index = index();
        index.apply(&Event::Apply(function("n", "resize", "notes")));
        index.apply(&Event::Apply(function("n", "thumbs", "notes")));
        // A deletion carries the last state the watch saw; the key is looked
        // up by reference, not read from it.
        index.apply(&Event::Delete(function("n", "resize", "elsewhere")));
        assert_eq!(names(index.get(&AppKey::new("n", "notes"))), ["n/thumbs"]);
        index.apply(&Event::Delete(function("n", "never-seen", "notes")));
        assert_eq!(names(index.get(&AppKey::new("n", "notes"))), ["n/thumbs"]);
    }

    #[test]
    fn a_relist_replaces_the_index_when_it_ends() {
        let mut index = index();
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(function("n", "resize", "notes")));
        index.apply(&Event::InitApply(function("n", "gone-later", "notes")));
        index.apply(&Event::InitDone);
        assert_eq!(
            names(index.get(&AppKey::new("n", "notes"))),
            ["n/gone-later", "n/resize"]
        );

        // The watch lost its place; a re-list starts.
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(function("n", "resize", "shop")));
        index.apply(&Event::InitApply(function("n", "new", "notes")));
        // Until the list ends, the index answers as before it.
        assert_eq!(
            names(index.get(&AppKey::new("n", "notes"))),
            ["n/gone-later", "n/resize"]
        );
        index.apply(&Event::InitDone);
        // What the list did not return is gone; a moved object moved.
        assert_eq!(names(index.get(&AppKey::new("n", "notes"))), ["n/new"]);
        assert_eq!(names(index.get(&AppKey::new("n", "shop"))), ["n/resize"]);

        // An empty list empties the index.
        index.apply(&Event::Init);
        index.apply(&Event::InitDone);
        assert_eq!(index.keys(), 0);
    }

    #[test]
    fn an_apps_children_are_found_by_their_labels_in_any_namespace() {
        use k8s_openapi::api::apps::v1::Deployment;
        let child =
            |namespace: &str, name: &str, labels: serde_json::Value| -> PartialObjectMeta<Deployment> {
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": namespace, "labels": labels},
                }))
                .unwrap()
            };
        let mut index = Index::new(child_app_key::<PartialObjectMeta<Deployment>>);
        index.apply(&Event::Apply(child(
            "n-preview",
            "notes",
            serde_json::json!({"winky.dev/app": "notes", "winky.dev/app-namespace": "n"}),
        )));
        index.apply(&Event::Apply(child(
            "n",
            "notes",
            serde_json::json!({"winky.dev/app": "notes", "winky.dev/app-namespace": "n"}),
        )));
        // Made before stages: no app-namespace label, its own namespace.
        index.apply(&Event::Apply(child(
            "m",
            "notes",
            serde_json::json!({"winky.dev/app": "notes"}),
        )));
        index.apply(&Event::Apply(child("n", "stray", serde_json::json!({}))));
        let found: Vec<String> = index
            .get(&AppKey::new("n", "notes"))
            .into_iter()
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect();
        assert_eq!(found, ["n/notes", "n-preview/notes"]);
        assert_eq!(index.get(&AppKey::new("m", "notes")).len(), 1);
        assert_eq!(index.keys(), 2, "a child without an App label is not indexed");
    }

    #[test]
    fn objects_without_a_key_are_not_indexed() {
        let mut index = index();
        let mut homeless = function("n", "resize", "notes");
        homeless.metadata.namespace = None;
        index.apply(&Event::Apply(homeless));
        assert_eq!(index.keys(), 0);
        // An App that stops naming a policy leaves the policy's entry.
        let mut by_policy: Index<App, String> = Index::new(|a: &App| a.spec.policy.clone());
        let mut app: App = serde_json::from_value(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App",
            "metadata": {"name": "notes", "namespace": "n"},
            "spec": {"image": "a:1", "port": 8080, "policy": "default"},
        }))
        .unwrap();
        by_policy.apply(&Event::Apply(app.clone()));
        assert_eq!(by_policy.get(&"default".to_string()).len(), 1);
        app.spec.policy = None;
        by_policy.apply(&Event::Apply(app));
        assert!(by_policy.get(&"default".to_string()).is_empty());
    }

    #[test]
    fn a_config_map_is_found_by_each_rule_it_publishes_and_leaves_those_it_drops() {
        let config_map = |name: &str, rules: &[&str]| -> ConfigMap {
            let listed: Vec<serde_json::Value> = rules
                .iter()
                .map(|r| serde_json::json!({"name": r, "hash": "h", "rules": []}))
                .collect();
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "n"},
                "data": {"rules.json": serde_json::json!({"rules": listed}).to_string()},
            }))
            .unwrap()
        };
        let rule = |name: &str| ObjectRef::<Rule>::new(name).within("n");
        let found = |index: &Index<ConfigMap, ObjectRef<Rule>>, name: &str| -> Vec<String> {
            index.get(&rule(name)).into_iter().map(|r| r.name).collect()
        };
        let mut index = Index::with_keys(published_rules);
        index.apply(&Event::Apply(config_map("notes-runtime", &["owners", "movable"])));
        index.apply(&Event::Apply(config_map("shop-runtime", &["orders"])));
        assert_eq!(found(&index, "movable"), ["notes-runtime"]);
        assert_eq!(found(&index, "owners"), ["notes-runtime"]);
        // movable moved to shop: published there, then unpublished from notes.
        index.apply(&Event::Apply(config_map("shop-runtime", &["movable", "orders"])));
        assert_eq!(found(&index, "movable"), ["notes-runtime", "shop-runtime"]);
        index.apply(&Event::Apply(config_map("notes-runtime", &["owners"])));
        assert_eq!(found(&index, "movable"), ["shop-runtime"]);
        assert_eq!(found(&index, "owners"), ["notes-runtime"]);
        // Another namespace's Rule of the same name is another Rule.
        assert!(index.get(&ObjectRef::new("movable").within("m")).is_empty());
        // Without rules.json, or with a document that is not the operator's: nothing.
        let mut bare = config_map("chat-runtime", &[]);
        bare.data = Some([("rules.json".to_string(), "not json".to_string())].into());
        assert!(published_rules(&bare).is_empty());
        bare.data = None;
        assert!(published_rules(&bare).is_empty());
        index.apply(&Event::Delete(config_map("shop-runtime", &[])));
        assert!(found(&index, "movable").is_empty());
        assert!(found(&index, "orders").is_empty());
    }

    #[tokio::test]
    async fn the_shared_index_holds_each_event_before_passing_it_on() {
        let index = by_app::<Function>();
        let events = futures::stream::iter([
            Ok(Event::Init),
            Ok(Event::InitApply(function("n", "resize", "notes"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(function("n", "thumbs", "notes"))),
        ]);
        let key = AppKey::new("n", "notes");
        let seen: Vec<usize> = index
            .maintain(events)
            .map(|_| index.get(&key).len())
            .collect()
            .await;
        assert_eq!(seen, [0, 0, 1, 2]);
    }

    #[test]
    fn a_repository_has_one_key_however_its_url_is_written() {
        let key = "https://github.com/winky-dev/examples";
        for url in [
            "https://github.com/winky-dev/examples",
            "https://github.com/winky-dev/examples.git",
            "https://github.com/winky-dev/examples/",
            "https://github.com/winky-dev/examples.git/",
            "HTTPS://GitHub.com/winky-dev/examples",
            "https://x-access-token:s3cr3t@github.com/winky-dev/examples.git",
            "https://github.com/winky-dev/examples?tab=readme#top",
            " https://github.com/winky-dev/examples ",
        ] {
            assert_eq!(repository(url), key, "{url}");
        }
        assert!(!repository("https://user:s3cr3t@host/r.git").contains("s3cr3t"));
        // The path keeps its case, the port and scheme stay apart.
        assert_ne!(
            repository("https://github.com/Org/Repo"),
            repository("https://github.com/org/repo")
        );
        assert_eq!(
            repository("ssh://git@git.example:2222/team/apps.git"),
            "ssh://git.example:2222/team/apps"
        );
        assert_eq!(repository("file:///srv/git/apps.git"), "file:///srv/git/apps");
        assert_eq!(repository("git://host"), "git://host");
    }

    #[test]
    fn gitsources_of_one_repository_are_found_together() {
        let source = |name: &str, url: &str| -> GitSource {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "winky.dev/v1alpha1", "kind": "GitSource",
                "metadata": {"name": name, "namespace": "n"},
                "spec": {"url": url},
            }))
            .unwrap()
        };
        let mut index = Index::new(repository_of);
        index.apply(&Event::Apply(source("apps", "https://github.com/o/r.git")));
        index.apply(&Event::Apply(source("infra", "https://github.com/o/r")));
        index.apply(&Event::Apply(source("other", "https://github.com/o/s")));
        let found: Vec<String> = index
            .get(&repository("https://github.com/o/r/"))
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(found, ["apps", "infra"]);
    }
}
