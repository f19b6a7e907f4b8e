//! Writing objects in tests.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Server-side applies `value` (a whole object as JSON, with its
/// `metadata.name`) in `namespace` as the field manager `e2e`, taking over
/// conflicting fields; returns the object as the apiserver stored it.
/// Panics with the apiserver's answer when it refuses.
pub async fn apply_json<K>(client: &Client, namespace: &str, value: serde_json::Value) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap_or_else(|e| panic!("not a {}: {e}", K::kind(&())));
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(
            &object.name_any(),
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {}: {e}", K::kind(&()), object.name_any()))
}

/// Whether `name` is gone or going (its deletion begun): `None` when the
/// apiserver could not be asked, so `eventually` asks again.
pub async fn gone_or_going<K>(api: &Api<K>, name: &str) -> Option<bool>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let object = api.get_opt(name).await.ok()?;
    Some(object.is_none_or(|o| o.meta().deletion_timestamp.is_some()))
}

/// Server-side applies the cluster-scoped PromotionPolicy `name` with `spec`
/// as the field manager `e2e` (what it set before and `spec` leaves out goes).
pub async fn apply_policy(client: &Client, name: &str, spec: serde_json::Value) {
    Api::<winky_crds::PromotionPolicy>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "winky.dev/v1alpha1", "kind": "PromotionPolicy", "metadata": {"name": name},
                "spec": spec,
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("applying PromotionPolicy {name}: {e}"));
}

/// The Promotions of `namespace` (none when the apiserver could not be asked).
pub async fn promotions(client: &Client, namespace: &str) -> Vec<winky_crds::Promotion> {
    Api::<winky_crds::Promotion>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}
