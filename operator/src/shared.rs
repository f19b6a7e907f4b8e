//! The watches and caches more than one controller reads, built once by
//! [`crate::run`] and handed to each controller's constructor.
//!
//! | kind | read by | subscribed to by |
//! |---|---|---|
//! | App (+ by policy) | App (own), Function (its App) | App (own objects), Function (spec changes) |
//! | Function (+ by App) | Function (own), emulator (bundle) | Function (own objects), App (spec changes: its Ingress routes and runtime config name its HTTP Functions) |
//! | Rule (+ by App) | Rule (own, siblings), emulator (bundle) | Rule (own objects), App with the emulator (spec changes) |
//! | PromotionPolicy | App (exists?), GitSource and pull requests (agents) | App (Apps that name it) |
//! | Promotion (+ by App) | App (the revision Promoted into each stage) | App (their App) |
//! | ControllerRevision (managed-by=winky-operator) | App (the snapshot of a promoted revision) | App (their App) |
//!
//! What stays with one controller is built by that controller: the
//! children's metadata watches (each selects its own owner kind), the Rule
//! controller's whole-ConfigMap cache (the App controller watches the same
//! ConfigMaps by metadata only, as triggers), the GitSources (the GitSource
//! controller and its webhook receiver alone read them).

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use winky_crds::{App, Function, Promotion, PromotionPolicy, Rule};

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
    /// Every Promotion in scope.
    pub promotions: Cache<Promotion>,
    /// Promotions by App.
    pub promotions_by_app: ByApp<Promotion>,
    /// The ControllerRevisions the operator manages: the snapshots of the
    /// Apps' revisions (`winky_crds::promotion::snapshot_name`).
    pub snapshots: Cache<ControllerRevision>,
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
    /// Promotions; their failures count for the App controller.
    pub promotions: SharedWatch<Promotion>,
    /// Revision snapshots; their failures count for the App controller.
    pub snapshots: SharedWatch<ControllerRevision>,
    caches: Caches,
    /// Requests for another look at an App's pipeline: the pull-request
    /// handler sends, the Promotion controller takes the receiver.
    pub nudges: (
        tokio::sync::mpsc::Sender<ObjectRef<App>>,
        Option<tokio::sync::mpsc::Receiver<ObjectRef<App>>>,
    ),
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
        let promotions_by_app = index::by_app::<Promotion>();
        let promotions = SharedWatch::indexed(
            scoped::<Promotion>(client, namespace),
            watcher::Config::default(),
            crate::app::CONTROLLER,
            &promotions_by_app,
        );
        let snapshots = SharedWatch::new(
            scoped::<ControllerRevision>(client, namespace),
            watcher::Config::default().labels(&format!(
                "{}={}",
                winky_crds::keys::MANAGED_BY_LABEL,
                crate::MANAGED_BY
            )),
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
            promotions: promotions.cache(),
            promotions_by_app,
            snapshots: snapshots.cache(),
        };
        Self {
            apps,
            functions,
            rules,
            policies,
            promotions,
            snapshots,
            caches,
            nudges: {
                // Room for a nudge per App of a busy pull request; a full
                // queue drops nudges for Apps that already have one queued.
                let (tx, rx) = tokio::sync::mpsc::channel(1024);
                (tx, Some(rx))
            },
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
            self.policies.run(metrics.clone(), stop.clone()),
            self.promotions.run(metrics.clone(), stop.clone()),
            self.snapshots.run(metrics, stop),
        );
    }
}
