//! The App's children as the caches hold them, in every namespace its
//! stages run in: what a reconcile deletes when no stage keeps it any more,
//! what the finalizer deletes where no owner reference reaches, and whose a
//! name in a stage namespace is.
//!
//! Each kind is watched by metadata ([`crate::watch::app_children`]) and
//! indexed by App from its labels (`winky.dev/app-namespace`,
//! `winky.dev/app`), so "the children of this App" is a lookup.

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::{NamespaceResourceScope, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::info;
use winky_crds::keys::STAGE_LABEL;

use super::build::Children;
use super::stages::{Run, Stage};
use crate::apply::delete_stale;
use crate::error::Result;
use crate::index::{AppKey, ByApp, child_app_key};
use crate::naming::{self, OwnerKind};

/// Whether a child is kept: its kind, namespace, name and stage label.
pub type KeepFn<'a> = dyn Fn(&str, &str, &str, Option<&str>) -> bool + Sync + 'a;

/// The children of one kind: their metadata, and an index by App.
pub struct ChildCache<K: Resource<DynamicType = ()> + 'static> {
    /// The metadata of every App child of the kind.
    pub store: Store<PartialObjectMeta<K>>,
    /// The same, by App.
    pub by_app: ByApp<PartialObjectMeta<K>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Debug for ChildCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildCache")
            .field("kind", &K::kind(&()))
            .finish_non_exhaustive()
    }
}

/// The caches of every kind of child an App has.
#[derive(Debug)]
pub struct ChildCaches {
    /// Deployments.
    pub deployments: ChildCache<Deployment>,
    /// Services.
    pub services: ChildCache<Service>,
    /// ServiceAccounts.
    pub service_accounts: ChildCache<ServiceAccount>,
    /// Runtime ConfigMaps.
    pub config_maps: ChildCache<ConfigMap>,
    /// NetworkPolicies.
    pub network_policies: ChildCache<NetworkPolicy>,
    /// PodDisruptionBudgets.
    pub pod_disruption_budgets: ChildCache<PodDisruptionBudget>,
    /// Ingresses of public Apps.
    pub ingresses: ChildCache<Ingress>,
}

/// What a reconcile keeps of an App's children: those it applies, and
/// everything of a held stage. Anything else of the App is deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    /// Kind, namespace, name and stage of every child a stage applies.
    children: BTreeSet<(String, String, String, String)>,
    /// Namespace and stage of every held stage.
    held: BTreeSet<(String, String)>,
}

impl Keep {
    /// What `stages` keep, `built` being the children of each (`None` when it
    /// runs nothing).
    pub fn of(stages: &[Stage<'_>], built: &[Option<Children>]) -> Self {
        let mut keep = Keep::default();
        for (stage, children) in stages.iter().zip(built) {
            let name = &stage.target.stage;
            if let Run::Held { .. } = stage.run {
                keep.held.insert((stage.target.namespace.clone(), name.clone()));
            }
            for (kind, namespace, child) in children.iter().flat_map(Children::names) {
                keep.children
                    .insert((kind.into(), namespace.into(), child.into(), name.clone()));
            }
        }
        keep
    }

    /// Whether the child `kind` `namespace/name` of the stage `stage` (its
    /// label) is kept.
    pub fn keeps(&self, kind: &str, namespace: &str, name: &str, stage: Option<&str>) -> bool {
        let Some(stage) = stage else {
            return false;
        };
        self.held.contains(&(namespace.to_string(), stage.to_string()))
            || self.children.contains(&(
                kind.to_string(),
                namespace.to_string(),
                name.to_string(),
                stage.to_string(),
            ))
    }
}

impl ChildCaches {
    /// Deletes every child of the App `key` that `keep` does not keep (its
    /// kind, namespace, name and stage label); returns how many it deleted.
    pub async fn prune(&self, client: &Client, key: &AppKey, keep: &KeepFn<'_>) -> Result<usize> {
        let deleted = prune_kind(client, &self.deployments, key, keep).await?
            + prune_kind(client, &self.services, key, keep).await?
            + prune_kind(client, &self.service_accounts, key, keep).await?
            + prune_kind(client, &self.config_maps, key, keep).await?
            + prune_kind(client, &self.network_policies, key, keep).await?
            + prune_kind(client, &self.pod_disruption_budgets, key, keep).await?
            + prune_kind(client, &self.ingresses, key, keep).await?;
        Ok(deleted)
    }

    /// The App (`<namespace>/<app>`) whose children hold the names the
    /// children `child` of another App than `key` would take in
    /// `namespace`, if any.
    pub fn claimed(&self, namespace: &str, child: &str, key: &AppKey) -> Option<String> {
        let runtime = naming::runtime_config_map(child);
        [
            owner(&self.deployments, namespace, child),
            owner(&self.services, namespace, child),
            owner(&self.service_accounts, namespace, child),
            owner(&self.config_maps, namespace, &runtime),
            owner(&self.network_policies, namespace, child),
            owner(&self.pod_disruption_budgets, namespace, child),
            owner(&self.ingresses, namespace, child),
        ]
        .into_iter()
        .flatten()
        .find(|other| other != key)
        .map(|other| format!("{}/{}", other.namespace, other.app))
    }
}

/// The App the cached child `namespace/name` of kind `K` belongs to.
fn owner<K: Resource<DynamicType = ()> + Clone + 'static>(
    cache: &ChildCache<K>,
    namespace: &str,
    name: &str,
) -> Option<AppKey> {
    let cached = cache.store.get(&ObjectRef::new(name).within(namespace))?;
    child_app_key(cached.as_ref())
}

/// Deletes every cached child of kind `K` of the App `key` that `keep` does
/// not keep; each delete is guarded by the cached uid.
async fn prune_kind<K>(
    client: &Client,
    cache: &ChildCache<K>,
    key: &AppKey,
    keep: &KeepFn<'_>,
) -> Result<usize>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + Sync,
{
    let kind = K::kind(&());
    let owned_by = naming::owned_by(OwnerKind::App, &key.app);
    let mut deleted = 0;
    for reference in cache.by_app.get(key) {
        let Some(child) = cache.store.get(&reference) else {
            continue;
        };
        // The index follows the store a step behind: the store decides.
        if child_app_key(child.as_ref()).as_ref() != Some(key) {
            continue;
        }
        let namespace = child.namespace().unwrap_or_default();
        let name = child.name_any();
        let stage = child.labels().get(STAGE_LABEL).map(String::as_str);
        if keep(&kind, &namespace, &name, stage) {
            continue;
        }
        if delete_stale(client, &cache.store, &namespace, &name, &owned_by).await? {
            info!(%kind, child = %format!("{namespace}/{name}"), stage, "deleted: no stage keeps it");
            deleted += 1;
        }
    }
    Ok(deleted)
}
