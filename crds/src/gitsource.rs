//! `GitSource`: a git repository whose protected branch is applied to the cluster.

#[allow(unused_imports)] // used inside x_kube attributes
use kube::core::{ListMerge, Rule as CelRule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, LocalSecretRef, SecretKeyRef};

/// A git repository whose protected branch holds Winky resources. Only that
/// branch is ever applied; a push webhook triggers a sync at once, the interval
/// is the fallback.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "winky.dev",
    version = "v1alpha1",
    kind = "GitSource",
    namespaced,
    status = "GitSourceStatus",
    shortname = "wgit",
    category = "winky",
    doc = "A git repository whose protected branch is applied to the cluster with server-side apply, pruning what was removed.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Branch", type_ = "string", json_path = ".spec.branch"),
    printcolumn(name = "Commit", type_ = "string", json_path = ".status.lastAppliedCommit"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct GitSourceSpec {
    /// Repository URL: `https://`, `ssh://`, `git://` or `file://`.
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^(https?|ssh|git|file)://\S+$")
    )]
    pub url: String,
    /// The protected branch; default `main`. Nothing else is ever applied.
    #[serde(default = "default_branch")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[A-Za-z0-9._/\-]+$"))]
    #[x_kube(validation = CelRule::new("!self.startsWith('winky/')").message("branch must be the protected branch, never an agent's winky/ branch"))]
    pub branch: String,
    /// Directory inside the repository that holds the manifests; default
    /// `./`, the whole repository.
    #[serde(default = "default_path")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = CelRule::new("!self.contains('..')").message("path must stay inside the repository"))]
    pub path: String,
    /// Fallback polling interval, as a duration (`1m`, `30s`); default `1m`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// Delete objects that were applied from the repository and are no longer
    /// in it; default true.
    #[serde(default = "default_true")]
    pub prune: bool,
    /// Stop syncing without deleting anything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Allow a commit with no manifests under `path` to prune everything this
    /// source applied. Off by default: an empty path is far more often a
    /// mistake (a moved directory, a wrong `path`) than a wish to delete it all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
    /// Credentials for private repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<GitCredentials>,
    /// Shared secret that signs the repository's push webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    /// The GitHub repository, for commit statuses and ChatOps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubRepo>,
}

fn default_branch() -> String {
    "main".into()
}
fn default_path() -> String {
    "./".into()
}
fn default_interval() -> String {
    "1m".into()
}
fn default_true() -> bool {
    true
}

/// Where git credentials come from: exactly one of secretRef or vault.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = CelRule::new("has(self.secretRef) != has(self.vault)").message("set exactly one of secretRef or vault"))]
pub struct GitCredentials {
    /// A Secret with `username` and `password` (a token), or `identity` (an SSH key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalSecretRef>,
    /// A Vault KV path with the same keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultPath>,
}

/// A Vault KV path.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct VaultPath {
    /// Path below the KV mount.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[A-Za-z0-9_.\-/]+$"))]
    pub path: String,
}

/// Webhook verification.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Secret key holding the HMAC secret GitHub signs deliveries with.
    pub secret_ref: SecretKeyRef,
}

/// A GitHub repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitHubRepo {
    /// Owner (user or organization).
    #[schemars(length(min = 1, max = 39))]
    pub owner: String,
    /// Repository name.
    #[schemars(length(min = 1, max = 100))]
    pub repo: String,
    /// Secret key holding a token that may set commit statuses and comment.
    pub token_secret_ref: SecretKeyRef,
    /// API base URL, for GitHub Enterprise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub api_url: Option<String>,
}

/// Observed state of a GitSource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSourceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Commit of the branch last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched_commit: Option<String>,
    /// When the branch was last fetched (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched_at: Option<String>,
    /// The commit the last sync attempt was about (applied or refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_commit: Option<String>,
    /// The pull request that merged the applied commit, when GitHub said
    /// (`spec.github`); every applied object carries it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_pull_request: Option<i64>,
    /// Commit whose manifests are applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_commit: Option<String>,
    /// Objects applied from the repository, for pruning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
}

/// An object applied from a repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    /// apiVersion of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Namespace, empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}
