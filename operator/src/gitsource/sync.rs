//! Applying one commit's manifests all or nothing, and pruning what left it.
//!
//! 1. **Dry run** every object (server-side apply, `dryRun=All`): the
//!    apiserver's schema, CEL rules and admission judge the whole commit
//!    before anything is written. The dry run does not force, so a field
//!    owned by another GitSource's field manager shows up as a conflict and
//!    refuses the commit; a conflict with anyone else (a person's `kubectl
//!    edit`) is drift, validated again with force and then corrected.
//! 2. **Apply** with force, Namespaces first, under the GitSource's own field
//!    manager.
//! 3. **Prune** the objects of the previous inventory that are no longer in
//!    the commit, when they still carry this GitSource's annotation.

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use winky_crds::gitsource::InventoryEntry;
use winky_crds::keys::GIT_SOURCE_ANNOTATION;

use super::manifests::{Kind, Manifest, SourceRef, describe};

/// Prefix of every GitSource's field manager: `winky-gitsource/<namespace>/<name>`.
pub const MANAGER_PREFIX: &str = "winky-gitsource/";

/// The field manager of a GitSource.
pub fn field_manager(source: &SourceRef<'_>) -> String {
    format!("{MANAGER_PREFIX}{}/{}", source.namespace, source.name)
}

/// Why a commit could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The apiserver refused an object in the dry run: the commit is wrong.
    #[error("{origin}: {object} was refused by the apiserver: {message}")]
    Refused {
        origin: String,
        object: String,
        message: String,
    },
    /// Another GitSource applies the same object.
    #[error(
        "{origin}: {object} belongs to another GitSource ({owner}); a GitSource never takes over another's objects"
    )]
    Owned {
        origin: String,
        object: String,
        owner: String,
    },
    /// A Namespace of the commit exists and this GitSource did not create it.
    #[error("{origin}: Namespace {namespace} already exists and was not created by this GitSource")]
    NamespaceTaken { origin: String, namespace: String },
    /// The apiserver could not be asked or answered with an error of its own.
    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
}

impl SyncError {
    /// CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            SyncError::Refused { .. } => "DryRunFailed",
            SyncError::Owned { .. } | SyncError::NamespaceTaken { .. } => "OwnershipConflict",
            SyncError::Api { .. } => "ApplyFailed",
        }
    }

    /// Whether waiting and trying again can help (else the commit must change).
    pub fn is_transient(&self) -> bool {
        matches!(self, SyncError::Api { .. })
    }
}

fn api(client: &Client, resource: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// The apiserver's own words: its message, then each cause's field and message.
fn message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Dry-runs every manifest; the first refusal or ownership conflict refuses the commit.
pub async fn dry_run(
    client: &Client,
    manifests: &[Manifest],
    source: &SourceRef<'_>,
) -> Result<(), SyncError> {
    let manager = field_manager(source);
    let declared: Vec<&str> = manifests
        .iter()
        .filter(|m| m.kind == Kind::Namespace)
        .map(Manifest::name)
        .collect();
    let mut new_namespaces = Vec::new();
    for m in manifests.iter().filter(|m| m.kind == Kind::Namespace) {
        if !namespace_is_ours(client, m, source).await? {
            new_namespaces.push(m.name().to_string());
        }
    }
    for m in manifests {
        // An object in a Namespace this commit creates cannot be dry-run
        // there yet; the apiserver's schema, CEL rules and admission do not
        // depend on the namespace, so it is judged in the source's own.
        let namespace = match m.namespace() {
            Some(ns) if declared.contains(&ns) && new_namespaces.iter().any(|n| n == ns) => {
                Some(source.namespace)
            }
            other => other,
        };
        let mut object = m.object.clone();
        if m.kind.namespaced() {
            object.metadata.namespace = namespace.map(str::to_string);
        }
        dry_run_one(client, m, &object, namespace, &manager).await?;
    }
    Ok(())
}

/// Whether the Namespace `m` names exists and carries this source's
/// annotation (true), or does not exist yet (false); one that exists and is
/// someone else's refuses the commit.
async fn namespace_is_ours(client: &Client, m: &Manifest, source: &SourceRef<'_>) -> Result<bool, SyncError> {
    let resource = m.kind.api_resource();
    match api(client, &resource, None).get_opt(m.name()).await {
        Ok(None) => Ok(false),
        Ok(Some(existing)) => {
            let owner = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(GIT_SOURCE_ANNOTATION));
            if owner.map(String::as_str) == Some(source.annotation().as_str()) {
                Ok(true)
            } else {
                Err(SyncError::NamespaceTaken {
                    origin: m.origin(),
                    namespace: m.name().to_string(),
                })
            }
        }
        Err(source) => Err(SyncError::Api {
            action: "reading",
            object: describe(&m.entry()),
            source,
        }),
    }
}

async fn dry_run_one(
    client: &Client,
    m: &Manifest,
    object: &DynamicObject,
    namespace: Option<&str>,
    manager: &str,
) -> Result<(), SyncError> {
    let resource = m.kind.api_resource();
    let api = api(
        client,
        &resource,
        if m.kind.namespaced() { namespace } else { None },
    );
    let mut params = PatchParams::apply(manager).dry_run();
    let refused = |e: kube::Error| -> SyncError {
        match code(&e) {
            Some(400 | 404 | 409 | 422) => SyncError::Refused {
                origin: m.origin(),
                object: describe(&m.entry()),
                message: message(&e),
            },
            _ => SyncError::Api {
                action: "dry-running",
                object: describe(&m.entry()),
                source: e,
            },
        }
    };
    match api.patch(m.name(), &params, &Patch::Apply(object)).await {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some(409) => {
            let text = message(&e);
            if let Some(owner) = other_source(&text, manager) {
                return Err(SyncError::Owned {
                    origin: m.origin(),
                    object: describe(&m.entry()),
                    owner,
                });
            }
            // Drift by someone who is not a GitSource: the real apply takes
            // the fields back; judge the object as that apply will send it.
            params.force = true;
            api.patch(m.name(), &params, &Patch::Apply(object))
                .await
                .map(|_| ())
                .map_err(refused)
        }
        Err(e) => Err(refused(e)),
    }
}

/// The other GitSource a conflict message names, if any. The apiserver says
/// `conflict with "kubectl-edit" using v1: .spec.image` for one conflict and
/// `conflicts with "winky-gitsource/team/apps":` followed by the paths for several.
fn other_source(conflict: &str, own_manager: &str) -> Option<String> {
    conflict
        .split(" with \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|manager| manager.starts_with(MANAGER_PREFIX) && *manager != own_manager)
        .map(|manager| manager.trim_start_matches(MANAGER_PREFIX).to_string())
}

/// Applies every manifest (Namespaces come first in `manifests`) with force.
pub async fn apply(client: &Client, manifests: &[Manifest], source: &SourceRef<'_>) -> Result<(), SyncError> {
    let params = PatchParams::apply(&field_manager(source)).force();
    for m in manifests {
        let resource = m.kind.api_resource();
        api(client, &resource, m.namespace())
            .patch(m.name(), &params, &Patch::Apply(&m.object))
            .await
            .map_err(|source| SyncError::Api {
                action: "applying",
                object: describe(&m.entry()),
                source,
            })?;
    }
    Ok(())
}

/// Deletes the objects of `stale` that still carry this source's annotation,
/// Namespaces last. Returns the entries actually deleted.
pub async fn prune(
    client: &Client,
    stale: &[InventoryEntry],
    source: &SourceRef<'_>,
) -> Result<Vec<InventoryEntry>, SyncError> {
    let ours = source.annotation();
    let mut ordered: Vec<&InventoryEntry> = stale.iter().collect();
    ordered.sort_by_key(|e| e.kind == "Namespace");
    let mut deleted = Vec::new();
    for entry in ordered {
        // The inventory only ever holds kinds a repository may hold.
        let Some(kind) = Kind::of(&entry.api_version, &entry.kind) else {
            continue;
        };
        let resource = kind.api_resource();
        let namespace = (!entry.namespace.is_empty()).then_some(entry.namespace.as_str());
        let api = api(client, &resource, namespace);
        let failed = |action: &'static str| {
            move |source: kube::Error| SyncError::Api {
                action,
                object: describe(entry),
                source,
            }
        };
        let Some(existing) = api.get_opt(&entry.name).await.map_err(failed("reading"))? else {
            continue;
        };
        let owner = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(GIT_SOURCE_ANNOTATION));
        if owner != Some(&ours) || existing.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&entry.name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(entry.clone()),
            Err(e) if code(&e) == Some(404) => {}
            Err(e) => return Err(failed("pruning")(e)),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_sources_field_manager_is_found_in_a_conflict() {
        let own = "winky-gitsource/team/apps";
        let several = "Apply failed with 2 conflicts: conflicts with \"kubectl-edit\" using winky.dev/v1alpha1:\n- .spec.image\nconflicts with \"winky-gitsource/other/repo\":\n- .metadata.annotations.winky.dev/gitsource";
        assert_eq!(other_source(several, own).as_deref(), Some("other/repo"));
        let drift = r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using winky.dev/v1alpha1: .spec.image"#;
        assert_eq!(other_source(drift, own), None);
        let self_conflict = r#"conflict with "winky-gitsource/team/apps" using v1"#;
        assert_eq!(other_source(self_conflict, own), None);
    }
}
