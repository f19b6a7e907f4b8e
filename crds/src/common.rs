//! Building blocks shared by several kinds.

use kube::KubeSchema;
#[allow(unused_imports)] // used inside x_kube attributes
use kube::core::{ListMerge, Rule as CelRule};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// A plain environment variable. Never put a secret here: use `secrets`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct EnvVar {
    /// Variable name, as a C identifier (`LOG_LEVEL`).
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// Literal value; by default empty.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// An environment variable whose value comes from a secret store. Only the
/// reference is ever stored in the object; the value never enters git, status or Events.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = CelRule::new("has(self.vault) != has(self.secretKeyRef)").message("set exactly one of vault or secretKeyRef"))]
pub struct SecretEnv {
    /// Variable name the value is exposed under.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// A key of a Vault (or OpenBao) KV secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultRef>,
    /// A key of a Kubernetes Secret in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

/// A key in a Vault KV secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct VaultRef {
    /// Path of the secret below the KV mount, for example `apps/notes/db`.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[A-Za-z0-9_.\-/]+$"))]
    pub path: String,
    /// Key within the secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A key in a Kubernetes Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the referring object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to a whole Kubernetes Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// CPU and memory for one container. Requests equal limits for memory, so the
/// scheduler's view and the OOM killer's agree.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct Resources {
    /// CPU limit (and request) as a Kubernetes quantity (`250m`, `1`); an
    /// App's default is `250m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = CelRule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("cpu must be a positive quantity such as 250m"))]
    #[schemars(length(max = 32))]
    pub cpu: Option<String>,
    /// Memory limit (and request) as a Kubernetes quantity (`256Mi`); an
    /// App's default is `256Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = CelRule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("memory must be a positive quantity such as 256Mi"))]
    #[schemars(length(max = 32))]
    pub memory: Option<String>,
}

/// One allowed egress destination. Kubernetes NetworkPolicy enforces CIDRs and
/// ports; name-based rules need an egress proxy and are not part of this API yet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = CelRule::new("isCIDR(self.cidr)").message("cidr must be an IP range such as 10.0.0.0/8 or 2001:db8::/32"))]
pub struct EgressRule {
    /// Destination IP range in CIDR notation.
    #[schemars(length(min = 1, max = 64))]
    pub cidr: String,
    /// Destination TCP ports, each 1 to 65535; empty means every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 1, max = 65535)))]
    pub ports: Vec<i32>,
}

/// HTTP health probes of a container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Probes {
    /// HTTP path of the liveness probe; the container restarts when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^/"))]
    pub liveness: Option<String>,
    /// HTTP path of the readiness probe; the pod gets traffic only while it passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), regex(pattern = r"^/"))]
    pub readiness: Option<String>,
}

/// The revision of an App: a stable hash of everything that ships, and where it came from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRef {
    /// Revision id, `r-` followed by hex, stable for the same image and specs.
    #[schemars(length(max = 64))]
    pub id: String,
    /// Commit the revision was applied from, when a GitSource applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub git_commit: Option<String>,
    /// Pull request that merged the commit, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<i64>,
    /// Container image of the revision.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 512))]
    pub image: String,
}

/// Schema of a free-form JSON object: the apiserver keeps whatever is inside.
pub fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}
