//! The watches and caches more than one controller reads, built once by
//! [`crate::run`] and handed to each controller's constructor.
//!
//! | kind | read by | subscribed to by |
//! |---|---|---|
//! | App (+ by policy) | App (own), Function (its App) | App (own objects), Function (spec changes) |
//! | Function (+ by App) | Function (own), emulator (bundle) | Function (own objects), App with the emulator (spec changes) |
//! | Rule (+ by App) | Rule (own, siblings), emulator (bundle) | Rule (own objects), App with the emulator (spec changes) |
//! | PromotionPolicy | App (exists?), GitSource and pull requests (agents) | App (Apps that name it) |
//!
//! What stays with one controller is built by that controller: the
//! children's metadata watches (each selects its own owner kind), the Rule
//! controller's whole-ConfigMap cache (the App controller watches the same
//! ConfigMaps by metadata only, as triggers), the GitSources (the GitSource
//! controller and its webhook receiver alone read them).

use std::sync::Arc;

use futures::FutureExt;
use kube::runtime::watcher;
use kube::{Api, Client};
use winky_crds::{App, Function, PromotionPolicy, Rule};

use crate::index::{self, ByApp, SharedIndex};
use crate::metrics::Metrics;
use crate::watch::{Cache, SharedWatch, scoped};

/// What reconciles read from the shared watches.
#[derive(Clone, Debug)]
pub struct Caches {
    /// Every App in scope.
    pub apps: Cache<App>,
    /// Apps by the PromotionPolicy they name.
    pub apps_by_policy: SharedIndex<App, String>,
    /// Every Function in scope.
    pub functions: Cache<Function>,
    /// Functions by App.
    pub functions_by_app: ByApp<Function>,
    /// Every Rule in scope.
    pub rules: Cache<Rule>,
    /// Rules by App.
    pub rules_by_app: ByApp<Rule>,
    /// Every PromotionPolicy (cluster-scoped).
    pub policies: Cache<PromotionPolicy>,
}

/// The shared watches: subscribe while building the controllers, then
/// [`Watches::run`] them with the controllers.
#[derive(Debug)]
pub struct Watches {
    /// Apps, owned by the App controller.
    pub apps: SharedWatch<App>,
    /// Functions, owned by the Function controller.
    pub functions: SharedWatch<Function>,
    /// Rules, owned by the Rule controller.
    pub rules: SharedWatch<Rule>,
    /// PromotionPolicies; their failures count for the App controller.
    pub policies: SharedWatch<PromotionPolicy>,
    caches: Caches,
}

impl Watches {
    /// The watches of `namespace` (or all namespaces); nothing is listed or
    /// watched before [`Watches::run`].
    pub fn new(client: &Client, namespace: Option<&str>) -> Self {
        let apps_by_policy = index::apps_by_policy();
        let functions_by_app = index::by_app::<Function>();
        let rules_by_app = index::by_app::<Rule>();
        // The configurations the controllers had for their own watches: Apps
        // and Functions listed from the apiserver's cache (`any_semantic`).
        let apps = SharedWatch::indexed(
            scoped::<App>(client, namespace),
            watcher::Config::default().any_semantic(),
            crate::app::CONTROLLER,
            &apps_by_policy,
        );
        let functions = SharedWatch::indexed(
            scoped::<Function>(client, namespace),
            watcher::Config::default().any_semantic(),
            crate::function::CONTROLLER,
            &functions_by_app,
        );
        let rules = SharedWatch::indexed(
            scoped::<Rule>(client, namespace),
            watcher::Config::default(),
            crate::rule::CONTROLLER,
            &rules_by_app,
        );
        let policies = SharedWatch::new(
            Api::<PromotionPolicy>::all(client.clone()),
            watcher::Config::default(),
            crate::app::CONTROLLER,
        );
        let caches = Caches {
            apps: apps.cache(),
            apps_by_policy,
            functions: functions.cache(),
            functions_by_app,
            rules: rules.cache(),
            rules_by_app,
            policies: policies.cache(),
        };
        Self {
            apps,
            functions,
            rules,
            policies,
            caches,
        }
    }

    /// What reconciles read.
    pub fn caches(&self) -> Caches {
        self.caches.clone()
    }

    /// Runs every watch until `stop` resolves.
    pub async fn run(self, metrics: Arc<Metrics>, stop: impl Future<Output = ()> + Send + 'static) {
        let stop = stop.shared();
        futures::join!(
            self.apps.run(metrics.clone(), stop.clone()),
            self.functions.run(metrics.clone(), stop.clone()),
            self.rules.run(metrics.clone(), stop.clone()),
            self.policies.run(metrics, stop),
        );
    }
}
