//! Server-side apply and prune, shared by every controller.
//!
//! Apply always uses [`FIELD_MANAGER`] and forces ownership of the fields the
//! operator sets: the operator is the source of truth for its children. An
//! apply that changes nothing is a no-op on the server (no new resourceVersion).

use std::collections::BTreeMap;
use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::FIELD_MANAGER;
use crate::error::{Error, Result};

/// The patch parameters of every apply.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `obj` (which names its own namespace) and returns what the server holds.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let kind = K::kind(&()).to_string();
    let name = obj.meta().name.clone().ok_or(Error::MissingMetadata("name"))?;
    let namespace = obj
        .meta()
        .namespace
        .clone()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(&name, &apply_params(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply { kind, name, source })
}

/// Deletes every object in `store` of `namespace` whose labels include all of
/// `selector` and whose name is not in `keep`. Returns the names deleted.
/// Reads only the cache; a delete is guarded by the object's uid.
pub async fn prune<K>(
    client: &Client,
    store: &Store<K>,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    keep: &[&str],
) -> Result<Vec<String>>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let stale: Vec<_> = store
        .state()
        .into_iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .filter(|o| selector.iter().all(|(k, v)| o.labels().get(k) == Some(v)))
        .filter(|o| !keep.contains(&o.name_any().as_str()))
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .collect();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut deleted = Vec::new();
    for obj in stale {
        let name = obj.name_any();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: obj.uid(),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(_) => deleted.push(name),
            // Already gone, or replaced by a new object with another uid.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(source) => {
                return Err(Error::Prune {
                    kind: K::kind(&()).to_string(),
                    name,
                    source,
                });
            }
        }
    }
    Ok(deleted)
}

/// Writes `status` through the status subresource of `obj` by server-side
/// apply (only the status is sent, so nothing else is touched).
pub async fn apply_status<K>(client: &Client, obj: &K, status: &impl Serialize) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let name = obj.meta().name.clone().ok_or(Error::MissingMetadata("name"))?;
    let namespace = obj
        .meta()
        .namespace
        .clone()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&name, &apply_params(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Status)
}
