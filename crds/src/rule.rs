//! `Rule`: Firestore-style data-access rules of an App, written in CEL.

use std::collections::BTreeMap;

#[allow(unused_imports)] // used inside x_kube attributes
use kube::core::{ListMerge, Rule as CelRule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[allow(unused_imports)] // used inside x_kube attributes
use crate::app::{APP_NAME, APP_NAME_MESSAGE};
use crate::common::Condition;

/// Data-access rules of an App: each `match` path allows operations under CEL
/// conditions; anything not allowed is denied. Rule tests run on every change.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "winky.dev",
    version = "v1alpha1",
    kind = "Rule",
    namespaced,
    status = "RuleStatus",
    shortname = "wrule",
    category = "winky",
    doc = "Firestore-style data-access rules of an App, with CEL conditions and tests. Anything not allowed is denied.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(name = "Passed", type_ = "integer", json_path = ".status.tests.passed"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.tests.failed"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    /// Name of the App (same namespace) the rules protect.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = CelRule::new(APP_NAME).message(APP_NAME_MESSAGE))]
    pub app: String,
    /// Path matches and what they allow, unique by path.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["match".into()]))]
    #[schemars(length(min = 1, max = 128))]
    pub rules: Vec<MatchRule>,
    /// Cases that must hold: a request and the stored document, and whether it
    /// is allowed. Unique by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 256))]
    pub tests: Vec<RuleTest>,
}

/// One path pattern and the operations it allows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct MatchRule {
    /// Document path pattern: segments separated by `/`, `{name}` binds one
    /// segment to a variable usable in conditions, `{name=**}` binds the rest.
    #[serde(rename = "match")]
    #[schemars(
        length(min = 2, max = 512),
        regex(pattern = r"^(/([A-Za-z0-9_\-]+|\{[A-Za-z_][A-Za-z0-9_]*(=\*\*)?\}))+$")
    )]
    pub match_: String,
    /// CEL conditions per operation. An operation without a condition is denied.
    #[x_kube(validation = CelRule::new("has(self.read) || has(self.write) || has(self.get) || has(self.list) || has(self.create) || has(self.update) || has(self.delete)").message("allow needs at least one operation"))]
    pub allow: Allow,
}

/// CEL conditions per operation. `read` covers `get` and `list`; `write` covers
/// `create`, `update` and `delete`; a specific operation wins over its group.
/// Conditions see `request` (auth, method, path, resource), `resource` (the
/// stored document) and the path variables of the match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Allow {
    /// Condition for `get` and `list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub read: Option<String>,
    /// Condition for `create`, `update` and `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub write: Option<String>,
    /// Condition for reading one document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub get: Option<String>,
    /// Condition for queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub list: Option<String>,
    /// Condition for creating a document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub create: Option<String>,
    /// Condition for changing a document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub update: Option<String>,
    /// Condition for deleting a document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub delete: Option<String>,
}

/// A rule test case.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RuleTest {
    /// Name of the case.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// The request being decided.
    pub request: TestRequest,
    /// The stored document, when one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<TestDocument>,
    /// The decision the rules must reach: `allow` or `deny`.
    pub expect: Decision,
}

/// A request in a rule test.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TestRequest {
    /// The signed-in user; absent for an anonymous request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<TestAuth>,
    /// The operation: `get`, `list`, `create`, `update` or `delete`.
    pub method: Method,
    /// Concrete document path, for example `/notes/n1`.
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^/"))]
    pub path: String,
    /// The document as it would be after a create or update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<TestDocument>,
}

/// The identity of a request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TestAuth {
    /// User id.
    #[schemars(length(min = 1, max = 128))]
    pub uid: String,
    /// Token claims, such as `email` or `admin`, with their JSON types kept
    /// (`admin: true` is the bool `request.auth.token.admin == true` compares).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "claims")]
    pub token: BTreeMap<String, serde_json::Value>,
}

/// Token claims: an object whose values are any JSON.
fn claims(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// A document in a rule test.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TestDocument {
    /// The document's fields.
    #[serde(default)]
    #[schemars(schema_with = "crate::common::any_json")]
    pub data: serde_json::Value,
}

/// An operation on a document.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Read one document.
    #[default]
    Get,
    /// Query documents.
    List,
    /// Create a document.
    Create,
    /// Change a document.
    Update,
    /// Delete a document.
    Delete,
}

/// A decision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The request is allowed.
    Allow,
    /// The request is denied.
    #[default]
    Deny,
}

/// Observed state of a Rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Degraded` (compile errors name the rule, line and column).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Test results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<RuleTestSummary>,
    /// sha256 of the compiled rule set published to the App.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled_hash: Option<String>,
}

/// Results of a Rule's tests.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RuleTestSummary {
    /// Cases that reached the expected decision.
    pub passed: i32,
    /// Cases that did not.
    pub failed: i32,
    /// Per-case results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<RuleTestResult>,
}

/// The result of one rule test case.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct RuleTestResult {
    /// Name of the case.
    pub name: String,
    /// Whether the expected decision was reached.
    pub passed: bool,
    /// Why not, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
