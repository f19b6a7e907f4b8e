//! What the GitOps tests share: a minimal App manifest, and waiting on a
//! GitSource's conditions and applied commit.

use std::time::Duration;

use kube::{Api, Client};
use winky_crds::GitSource;

use crate::eventually;

/// How long a GitSource gets to reach what a test waits for.
pub const WAIT: Duration = Duration::from_secs(30);

/// A minimal App manifest, as a repository holds it.
pub fn app_yaml(name: &str, image: &str) -> String {
    format!(
        "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  port: 8080\n"
    )
}

/// The GitSource `namespace/name` once its condition `type_` has `status`
/// (and, when given, `reason`).
pub async fn condition(
    client: &Client,
    namespace: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> GitSource {
    let api: Api<GitSource> = Api::namespaced(client.clone(), namespace);
    eventually(
        &format!("GitSource {name} {type_}={status} {reason:?}"),
        WAIT,
        || async {
            let source = api.get(name).await.ok()?;
            let c = source
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == type_)?
                .clone();
            (c.status == status && reason.is_none_or(|r| c.reason == r)).then_some(source)
        },
    )
    .await
}

/// The GitSource `namespace/name` once it applied `commit`.
pub async fn applied(client: &Client, namespace: &str, name: &str, commit: &str) -> GitSource {
    let api: Api<GitSource> = Api::namespaced(client.clone(), namespace);
    eventually(&format!("GitSource {name} to apply {commit}"), WAIT, || async {
        let source = api.get(name).await.ok()?;
        (source.status.as_ref()?.last_applied_commit.as_deref() == Some(commit)).then_some(source)
    })
    .await
}

/// The message of the condition `type_`, empty when there is none.
pub fn message(source: &GitSource, type_: &str) -> String {
    source
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}
