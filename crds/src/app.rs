//! `App`: a deployable application and the runtime it needs.

use std::collections::BTreeMap;

#[allow(unused_imports)] // used inside x_kube attributes
use kube::core::{ListMerge, Rule as CelRule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, EgressRule, EnvVar, Probes, Resources, RevisionRef, SecretEnv};

/// An application: its container, how it is reached, the secrets and backend
/// runtime it needs, and the promotion policy that moves it through stages.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "winky.dev",
    version = "v1alpha1",
    kind = "App",
    namespaced,
    status = "AppStatus",
    shortname = "wapp",
    category = "winky",
    doc = "An application managed by Winky: its workload, network isolation, secrets, backend runtime and promotion through stages.",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image", priority = "1"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Revision", type_ = "string", json_path = ".status.revision.id"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // Root-level rules may read metadata.name: its children take the name
    // (a Service's must be a DNS-1035 label) and labels hold it (63 at most).
    validation = CelRule::new("size(self.metadata.name) <= 63").message("an App's name may have at most 63 characters: its Service, Deployment and ServiceAccount are named after it, and the label winky.dev/app, which holds it, may have no more"),
    validation = CelRule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("an App's name must be lowercase letters, digits and '-', start with a letter and end with a letter or digit (no dots): its Service is named after it, and a Service name is a DNS-1035 label")
)]
#[x_kube(validation = CelRule::new("!has(self.env) || !has(self.secrets) || self.secrets.all(s, !self.env.exists(e, e.name == s.name))").message("a name cannot be both in env and in secrets"))]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Container image, with a tag (`registry.example/notes:1.2.0`) or a
    /// digest (`name@sha256:…`); one with neither is refused. A digest is what
    /// gets promoted, so prefer one.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    #[x_kube(validation = CelRule::new(IMAGE_REFERENCE).message(IMAGE_REFERENCE_MESSAGE))]
    pub image: String,
    /// TCP port the container listens on, 1 to 65535; the Service exposes the
    /// same port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Number of pods, 0 to 100; default 1. A PodDisruptionBudget is created
    /// when more than one.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,
    /// Entrypoint override; the image's entrypoint when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub args: Vec<String>,
    /// Plain environment variables, unique by name. `PORT` and `WINKY_*` are
    /// reserved: the runtime sets them (`PORT` is `spec.port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = CelRule::new(RESERVED_ENV).message(RESERVED_ENV_MESSAGE))]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// Environment variables whose values come from Vault or a Kubernetes Secret,
    /// unique by name. Only references are stored. `PORT` and `WINKY_*` are
    /// reserved, as in `env`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = CelRule::new(RESERVED_ENV).message(RESERVED_SECRETS_MESSAGE))]
    #[schemars(length(max = 64))]
    pub secrets: Vec<SecretEnv>,
    /// CPU and memory limits of the container; by default `250m` of CPU and
    /// `256Mi` of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// HTTP health probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    /// Who may call the app, and whether an Ingress serves it from outside the
    /// cluster. By default only pods of the same namespace.
    #[serde(default)]
    pub ingress: AppIngress,
    /// Destinations the app may reach besides cluster DNS. Empty means none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub egress: Vec<EgressRule>,
    /// Backend runtime the platform provisions for the app: authentication,
    /// data collections and storage buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<AppRuntime>,
    /// Name of the cluster-scoped PromotionPolicy the app follows. Without one
    /// the app runs in a single stage, its own namespace, with no gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub policy: Option<String>,
}

/// CEL over a string: it can name an App (see the App's own name rules).
pub const APP_NAME: &str = "self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
/// Why [`APP_NAME`] refused a reference to an App.
pub const APP_NAME_MESSAGE: &str = "app must name an App: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit";

/// CEL over a list of variables: none is named `PORT` or `WINKY_*`, which the
/// runtime sets in every App's and Function's container (a duplicate name
/// makes the apiserver refuse the Deployment).
pub const RESERVED_ENV: &str = "self.all(e, e.name != 'PORT' && !e.name.startsWith('WINKY_'))";
/// Why [`RESERVED_ENV`] refused `env`.
pub const RESERVED_ENV_MESSAGE: &str = "env may not set PORT or WINKY_* variables: the runtime sets them (PORT is the port, WINKY_APP, WINKY_REVISION and the others describe the deployment)";
/// Why [`RESERVED_ENV`] refused `secrets`.
pub const RESERVED_SECRETS_MESSAGE: &str = "secrets may not be named PORT or WINKY_*: the runtime sets those variables (PORT is the port, WINKY_APP, WINKY_REVISION and the others describe the deployment)";

/// CEL over an image reference: it names a tag (`:1.2.0` after the last
/// `/`) or a digest (`@sha256:…`).
pub const IMAGE_REFERENCE: &str = "self.matches('@[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$') || self.matches(':[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$')";
/// Why [`IMAGE_REFERENCE`] refused an image.
pub const IMAGE_REFERENCE_MESSAGE: &str = "image must name a tag (name:1.2.0) or a digest (name@sha256:...): without either it is whatever the registry's latest is when a node pulls it, and the revision would not say what runs";

fn default_replicas() -> i32 {
    1
}

/// Which callers the app's NetworkPolicy admits, and the Ingress of a public app.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = CelRule::new("!has(self.tlsSecret) || has(self.host)").message("ingress.tlsSecret needs ingress.host: the certificate is served for that host"))]
pub struct AppIngress {
    /// Admit traffic from anywhere, inside or outside the cluster, and serve
    /// the app through an Ingress (`/` to the app, each HTTP Function's path
    /// to the function). Default false: no Ingress, only the namespaces below.
    #[serde(default)]
    pub public: bool,
    /// Host name the Ingress answers (`notes.example.com`, or `*.example.com`);
    /// every host when unset. `{stage}` is replaced by the stage's name
    /// (`default` without a PromotionPolicy), to give each stage its own host.
    /// Used only when `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^(\*\.)?(([a-z0-9-]|\{stage\})+\.)*([a-z0-9-]|\{stage\})+$")
    )]
    pub host: Option<String>,
    /// Name of a Secret of type `kubernetes.io/tls` (in the namespace the
    /// stage runs in) holding the certificate of `host`: the Ingress
    /// terminates TLS with it. Needs `host`. Used only when `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub tls_secret: Option<String>,
    /// IngressClass of the Ingress. When unset, the operator's
    /// `--ingress-class`; when neither is set, the cluster's default class.
    /// Used only when `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub class_name: Option<String>,
    /// Also admit pods of these namespaces (by name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 63)))]
    pub from_namespaces: Vec<String>,
}

/// What the backend runtime provisions for the app.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct AppRuntime {
    /// End-user authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// Document collections, unique by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 64))]
    pub collections: Vec<Collection>,
    /// Object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// End-user authentication providers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AuthSpec {
    /// Sign-in methods offered to end users: any of `email`, `google`,
    /// `github`, `phone` and `anonymous`. Default none.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub providers: Vec<AuthProvider>,
}

/// A sign-in method: `email`, `google`, `github`, `phone` or `anonymous`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthProvider {
    /// Email and password, or email link.
    Email,
    /// Google accounts.
    Google,
    /// GitHub accounts.
    Github,
    /// Phone number with a one-time code.
    Phone,
    /// Anonymous sessions.
    Anonymous,
}

/// A document collection and the shape of its documents.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct Collection {
    /// Collection name, as used in rule paths (`/notes/{id}`).
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z][a-zA-Z0-9_]*$"))]
    pub name: String,
    /// Typed fields of each document, unique by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 128))]
    pub fields: Vec<Field>,
}

/// A typed document field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Field {
    /// Field name.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_]*$"))]
    pub name: String,
    /// Field type: `string`, `number`, `boolean`, `timestamp`, `array`, `map`
    /// or `reference`.
    #[serde(rename = "type")]
    pub type_: FieldType,
    /// Whether every document must carry the field.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// The type of a document field.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// UTF-8 text.
    #[default]
    String,
    /// A number.
    Number,
    /// true or false.
    Boolean,
    /// A point in time.
    Timestamp,
    /// A list of values.
    Array,
    /// A nested object.
    Map,
    /// A path to another document.
    Reference,
}

/// Object storage buckets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct StorageSpec {
    /// Buckets, unique by name. Default none.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 32))]
    pub buckets: Vec<Bucket>,
}

/// A storage bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// Bucket name.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9][a-z0-9-]*$"))]
    pub name: String,
    /// Largest object accepted, as a quantity (`10Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = CelRule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("maxObjectSize must be a positive quantity such as 10Mi"))]
    #[schemars(length(max = 32))]
    pub max_object_size: Option<String>,
}

/// Observed state of an App, written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`, plus one condition per gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The revision the spec describes now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<RevisionRef>,
    /// Where each stage stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageStatus>,
    /// Summary of the last emulator run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<EmulatorSummary>,
    /// The last value of the annotation `winky.dev/requested-at` that an
    /// emulator run handled: a value that differs from it asks for a run
    /// (and a reconcile) now, once. Written with `emulator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// In-cluster URL of the first stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Where one stage of an App stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// Stage name, from the PromotionPolicy (`default` without one).
    pub name: String,
    /// Namespace the stage runs in.
    pub namespace: String,
    /// Revision running in the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `Progressing`, `Available` or `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// In-cluster URL of the stage's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Ready replicas over desired, as `1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<String>,
    /// When the stage reached its current revision (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

/// Result of the emulator checks of one revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorSummary {
    /// Revision the checks ran on.
    pub revision: String,
    /// Whether every check passed.
    pub passed: bool,
    /// Number of checks run.
    pub checks: i32,
    /// Number of checks that failed.
    pub failed: i32,
    /// Per-kind counts, for example `{"rule-test": 4}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_kind: BTreeMap<String, i32>,
    /// The failed checks, in the order they ran: at most 10, each message
    /// cut to 300 characters and redacted (no secret values). The rest are
    /// counted in `failedChecksOmitted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<FailedCheck>,
    /// How many failed checks `failedChecks` leaves out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_checks_omitted: i32,
    /// When the run finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Digest of what the run checked: the revision, the specs of the App's
    /// Functions and Rules and the ids of their images in the container
    /// engine. The emulator runs again when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Most failed checks `status.emulator.failedChecks` lists.
pub const MAX_FAILED_CHECKS: usize = 10;
/// Most characters of a failed check's message in `status.emulator`.
pub const MAX_FAILED_CHECK_MESSAGE: usize = 300;

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// One failed emulator check.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedCheck {
    /// The check, as `winky emulate` names it: `<function>/<case>`,
    /// `<rule>/<test>` or `<app> answers its health probe`.
    pub name: String,
    /// `rule-test`, `function` or `app-health`.
    pub kind: String,
    /// Why it failed: at most 300 characters, redacted.
    pub message: String,
}
