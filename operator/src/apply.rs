//! Server-side apply, status writes and deletion of stale children, shared
//! by every controller.
//!
//! Apply always uses [`FIELD_MANAGER`] and forces ownership of the fields the
//! operator sets: the operator is the source of truth for its children. An
//! apply that changes nothing is a no-op on the server (no new resourceVersion).

use std::collections::BTreeMap;
use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::{NamespaceResourceScope, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
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
    let (api, name) = api_of(client, obj)?;
    api.patch(&name, &apply_params(), &Patch::Apply(obj))
        .await
        .map_err(|source| Error::Apply { kind, name, source })
}

/// Deletes the object `name` of `namespace` when the cache holds it with all
/// the labels of `owned_by` — that is, when the operator created it for the
/// same owner. Returns whether it deleted something. Reads only the cache; the
/// delete is guarded by the cached uid, so a newer object of the same name
/// survives.
pub async fn delete_stale<K>(
    client: &Client,
    store: &Store<PartialObjectMeta<K>>,
    namespace: &str,
    name: &str,
    owned_by: &BTreeMap<String, String>,
) -> Result<bool>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let Some(cached) = store.get(&ObjectRef::new(name).within(namespace)) else {
        return Ok(false);
    };
    if cached.meta().deletion_timestamp.is_some()
        || !owned_by.iter().all(|(k, v)| cached.labels().get(k) == Some(v))
    {
        return Ok(false);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: cached.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        // Already gone, or replaced by a new object with another uid.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(false),
        Err(source) => Err(Error::Prune {
            kind: K::kind(&()).to_string(),
            name: name.to_string(),
            source,
        }),
    }
}

/// Writes `status` through the status subresource of `obj` by server-side
/// apply (only the status is sent, so nothing else is touched).
pub async fn apply_status<K>(client: &Client, obj: &K, status: &impl Serialize) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + Debug,
{
    let (api, name) = api_of(client, obj)?;
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&name, &apply_params(), &Patch::Apply(&patch))
        .await
        .map_err(Error::Status)
}

/// The Api of the namespace `obj` names, and its name.
fn api_of<K>(client: &Client, obj: &K) -> Result<(Api<K>, String)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    let name = obj.meta().name.clone().ok_or(Error::MissingMetadata("name"))?;
    let namespace = obj
        .meta()
        .namespace
        .as_deref()
        .ok_or(Error::MissingMetadata("namespace"))?;
    Ok((Api::namespaced(client.clone(), namespace), name))
}
