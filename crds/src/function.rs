//! `Function`: a unit of backend code that belongs to an App.

#[allow(unused_imports)] // used inside x_kube attributes
use kube::core::{ListMerge, Rule as CelRule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[allow(unused_imports)] // used inside x_kube attributes
use crate::app::{
    APP_NAME, APP_NAME_MESSAGE, IMAGE_REFERENCE, IMAGE_REFERENCE_MESSAGE, RESERVED_ENV, RESERVED_ENV_MESSAGE,
    RESERVED_SECRETS_MESSAGE,
};
use crate::common::{Condition, EgressRule, EnvVar, SecretEnv};

/// A function of an App, run in a hardened sandbox: by default 512Mi of memory,
/// no network, non-root, read-only root filesystem, no capabilities.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "winky.dev",
    version = "v1alpha1",
    kind = "Function",
    namespaced,
    status = "FunctionStatus",
    shortname = "wfn",
    category = "winky",
    doc = "A function of an App, triggered by HTTP, a schedule or document events, run in a hardened sandbox.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(name = "Memory", type_ = "string", json_path = ".spec.memory"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Emulator", type_ = "string", json_path = ".status.emulator.passed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // Root-level rules may read metadata.name: its children are named
    // `<name>-fn` (a Service's name is a DNS-1035 label, a CronJob's at most
    // 52 characters) and the label app.kubernetes.io/name holds it.
    validation = CelRule::new("size(self.metadata.name) <= 60").message("a Function's name may have at most 60 characters: its Deployment, Service and NetworkPolicy are named <name>-fn, which a Service name limits to 63 characters"),
    validation = CelRule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("a Function's name must be lowercase letters, digits and '-', start with a letter and end with a letter or digit (no dots): its Service is named <name>-fn, and a Service name is a DNS-1035 label"),
    validation = CelRule::new("!has(self.spec.trigger.schedule) || size(self.metadata.name) <= 49").message("a scheduled Function's name may have at most 49 characters: its CronJob is named <name>-fn, and Kubernetes allows CronJob names of at most 52 characters")
)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// Name of the App (same namespace) the function belongs to.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = CelRule::new(APP_NAME).message(APP_NAME_MESSAGE))]
    pub app: String,
    /// Container image of the function, with a tag (`name:1.2.0`) or a
    /// digest (`name@sha256:…`); one with neither is refused.
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[^\s]+$"))]
    #[x_kube(validation = CelRule::new(IMAGE_REFERENCE).message(IMAGE_REFERENCE_MESSAGE))]
    pub image: String,
    /// Entrypoint override.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub command: Vec<String>,
    /// Arguments to the entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub args: Vec<String>,
    /// What runs the function: exactly one of http, schedule or document.
    pub trigger: Trigger,
    /// Memory limit (and request), between 64Mi and 4Gi; default 512Mi.
    #[serde(default = "default_memory")]
    #[x_kube(validation = CelRule::new("isQuantity(self) && quantity(self).compareTo(quantity('64Mi')) >= 0 && quantity(self).compareTo(quantity('4Gi')) <= 0").message("memory must be a quantity between 64Mi and 4Gi"))]
    #[schemars(length(max = 32))]
    pub memory: String,
    /// CPU limit (and request), above 0 and at most 4 cores; default 500m.
    #[serde(default = "default_cpu")]
    #[x_kube(validation = CelRule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('4')) <= 0").message("cpu must be a quantity above 0 and at most 4"))]
    #[schemars(length(max = 32))]
    pub cpu: String,
    /// Wall-clock limit of one invocation, in seconds: 1 to 900, default 30.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 900))]
    pub timeout_seconds: i32,
    /// Network access. None by default (`{}`: no egress at all).
    #[serde(default)]
    pub network: FunctionNetwork,
    /// Plain environment variables, unique by name. `PORT` and `WINKY_*` are
    /// reserved: the runtime sets them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = CelRule::new(RESERVED_ENV).message(RESERVED_ENV_MESSAGE))]
    #[schemars(length(max = 128))]
    pub env: Vec<EnvVar>,
    /// Secret environment variables (references only), unique by name.
    /// `PORT` and `WINKY_*` are reserved, as in `env`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = CelRule::new(RESERVED_ENV).message(RESERVED_SECRETS_MESSAGE))]
    #[schemars(length(max = 64))]
    pub secrets: Vec<SecretEnv>,
    /// Mount a Kubernetes service-account token. Off unless the function calls the Kubernetes API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service_account_token: bool,
    /// Emulator test cases: input in, expected output out. Unique by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 64))]
    pub tests: Vec<FunctionTest>,
}

fn default_memory() -> String {
    "512Mi".into()
}
fn default_cpu() -> String {
    "500m".into()
}
fn default_timeout() -> i32 {
    30
}

/// What runs a function. Exactly one member is set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = CelRule::new("(has(self.http) ? 1 : 0) + (has(self.schedule) ? 1 : 0) + (has(self.document) ? 1 : 0) == 1").message("set exactly one of trigger.http, trigger.schedule or trigger.document"))]
pub struct Trigger {
    /// Invoke on HTTP requests to a path of the App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTrigger>,
    /// Invoke on a cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleTrigger>,
    /// Invoke when documents of a collection change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentTrigger>,
}

/// An HTTP route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct HttpTrigger {
    /// Path prefix routed to the function, for example `/api/resize`: on the
    /// App's Ingress when the App is public (up to its first `{…}` segment),
    /// and in its runtime config. `/` is the App's own and cannot be taken.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/[A-Za-z0-9_.~/{}\-]*$"))]
    #[x_kube(validation = CelRule::new("self != '/' && !self.startsWith('/{')").message("a Function's path must start with a literal segment, such as /api/resize: / (and whatever a template such as /{id} matches) is the App's own on its Ingress"))]
    #[x_kube(validation = CelRule::new("!self.contains('//') && !self.contains('/./') && !self.contains('/../') && !self.endsWith('/.') && !self.endsWith('/..')").message("path may not contain //, /./ or /../ nor end with /. or /..: an Ingress refuses such paths"))]
    pub path: String,
}

/// A cron schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ScheduleTrigger {
    /// Five-field cron expression (`*/5 * * * *`) or a macro such as `@hourly`.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$")
    )]
    pub cron: String,
}

/// Document events of a collection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct DocumentTrigger {
    /// A collection the owning App declares in `spec.runtime.collections`;
    /// the operator refuses the Function (`Ready=False`, reason
    /// `CollectionNotFound`) while the App declares no such collection.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z][a-zA-Z0-9_]*$"))]
    pub collection: String,
    /// Events that invoke the function: one to three of `create`, `update`
    /// and `delete`.
    #[schemars(length(min = 1, max = 3))]
    pub events: Vec<DocumentEvent>,
}

/// A change to a document: `create`, `update` or `delete`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentEvent {
    /// A document was created.
    Create,
    /// A document was updated.
    Update,
    /// A document was deleted.
    Delete,
}

/// Network access of a function.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct FunctionNetwork {
    /// Allowed egress destinations; empty means no network at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub egress: Vec<EgressRule>,
}

/// One emulator test case of a function.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct FunctionTest {
    /// Name of the case, unique within the function.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// What the function receives.
    #[serde(default)]
    pub input: FunctionInput,
    /// What the function must produce.
    #[serde(default)]
    pub expect: FunctionExpect,
}

/// Input of a test case, passed on standard input.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[x_kube(validation = CelRule::new("!(has(self.json) && has(self.text))").message("set at most one of input.json or input.text"))]
pub struct FunctionInput {
    /// A JSON object, serialized onto standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::any_json")]
    pub json: Option<serde_json::Value>,
    /// Raw text for standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub text: Option<String>,
}

/// Expected result of a test case.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionExpect {
    /// Expected exit code; default 0.
    #[serde(default)]
    pub exit_code: i32,
    /// Text that standard output must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub output_contains: Option<String>,
}

/// Observed state of a Function.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The workload that runs the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// The last emulator result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<FunctionEmulatorResult>,
}

/// A workload owned by a Function.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct WorkloadRef {
    /// `Deployment` or `CronJob`.
    pub kind: String,
    /// Name of the workload.
    pub name: String,
}

/// The emulator result of a function for one revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionEmulatorResult {
    /// Revision of the owning App the cases ran on.
    pub revision: String,
    /// Whether every case passed.
    pub passed: bool,
    /// Cases passed.
    pub cases_passed: i32,
    /// Cases failed.
    pub cases_failed: i32,
}
