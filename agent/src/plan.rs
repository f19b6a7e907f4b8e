//! The plan: what the agent intends to build, as a typed structure that is
//! shown to the user before anything is generated.
//!
//! Planners produce it ([`crate::planner`]); [`Plan::validate`] is applied to
//! every plan whatever its source, so a provider cannot smuggle a name that
//! would not make a valid Kubernetes object or rule path.

use std::collections::BTreeSet;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use winky_crds::app::{AuthProvider, FieldType};

/// Everything the generated change will contain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    /// App name: a DNS label (`notes`, `shop`, `chat`).
    pub app: String,
    /// One sentence saying what the app does.
    pub summary: String,
    /// End-user sign-in methods.
    pub auth: Vec<AuthProvider>,
    /// User-facing screens.
    pub screens: Vec<Screen>,
    /// Document collections and who may access them.
    pub models: Vec<Model>,
    /// Object storage buckets.
    pub storage: Vec<BucketPlan>,
    /// HTTP endpoints the app exposes.
    pub apis: Vec<Api>,
    /// Backend functions.
    pub functions: Vec<FunctionPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Screen {
    /// Screen title.
    pub name: String,
    /// What the user does there.
    pub purpose: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Collection name: lowercase letters, digits and underscores (`notes`).
    pub collection: String,
    /// Document fields.
    pub fields: Vec<FieldPlan>,
    /// Who may read and write the documents.
    pub access: Access,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldPlan {
    /// Field name (camelCase).
    pub name: String,
    /// Field type.
    #[serde(rename = "type")]
    pub type_: FieldType,
    /// Whether every document must carry it.
    pub required: bool,
}

/// Access patterns the generator turns into Rules with tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// A signed-in user reads and writes only documents whose `owner` is them.
    Owner,
    /// The owner reads; only the backend writes (orders, receipts).
    OwnerReadOnly,
    /// Anyone reads; only users whose token says `admin` write (catalogues).
    PublicRead,
    /// Users listed in `members` read; the `owner` manages the document.
    Members,
    /// Users listed in `members` read; a member posts as `author` and only the
    /// author edits or deletes (messages in a room).
    MemberPosts,
}

impl Access {
    /// The fields a document needs for the rule to be decidable.
    pub fn required_fields(self) -> &'static [(&'static str, FieldType)] {
        match self {
            Self::Owner | Self::OwnerReadOnly => &[("owner", FieldType::String)],
            Self::PublicRead => &[],
            Self::Members => &[("owner", FieldType::String), ("members", FieldType::Array)],
            Self::MemberPosts => &[("author", FieldType::String), ("members", FieldType::Array)],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketPlan {
    /// Bucket name: a DNS label.
    pub name: String,
    /// Largest object accepted, as a Kubernetes quantity (`10Mi`).
    pub max_object_size: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// HTTP method.
    pub method: String,
    /// Path, starting with `/`.
    pub path: String,
    /// What it does.
    pub purpose: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionPlan {
    /// Function name: a DNS label.
    pub name: String,
    /// What it does.
    pub purpose: String,
    /// What runs it.
    pub trigger: TriggerPlan,
    /// Memory limit as a quantity (`256Mi`).
    pub memory: String,
    /// Seconds before a run is stopped.
    pub timeout_seconds: i32,
    /// Destinations it may reach (CIDR and port); empty means no network.
    pub egress: Vec<EgressPlan>,
}

/// Exactly one of the three is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerPlan {
    /// HTTP path (`/api/checkout`), for functions called over HTTP.
    pub http: Option<String>,
    /// Cron expression, for scheduled functions.
    pub schedule: Option<String>,
    /// Collection and events, for functions run on document changes.
    pub document: Option<DocumentTriggerPlan>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentTriggerPlan {
    pub collection: String,
    /// Any of `create`, `update`, `delete`.
    pub events: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressPlan {
    /// Destination range in CIDR notation.
    pub cidr: String,
    /// Destination TCP ports.
    pub ports: Vec<i32>,
    /// Why the function needs it; shown to reviewers.
    pub reason: String,
}

/// A plan that cannot be built, with every reason at once.
#[derive(Debug, thiserror::Error)]
#[error("the plan cannot be built:\n  - {}", .problems.join("\n  - "))]
pub struct InvalidPlan {
    pub problems: Vec<String>,
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_collection_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Plan {
    /// Checks what the types cannot: names, uniqueness, references between
    /// parts of the plan, and that every model carries the fields its access
    /// pattern reads.
    pub fn validate(&self) -> Result<(), InvalidPlan> {
        let mut problems = Vec::new();
        if !is_dns_label(&self.app) {
            problems.push(format!(
                "app name {:?} must be a lowercase DNS label of at most 40 characters",
                self.app
            ));
        }
        let mut seen = BTreeSet::new();
        for model in &self.models {
            if !is_collection_name(&model.collection) {
                problems.push(format!(
                    "collection {:?} must start with a lowercase letter and hold only letters, digits and _",
                    model.collection
                ));
            }
            if !seen.insert(model.collection.as_str()) {
                problems.push(format!("collection {:?} is planned twice", model.collection));
            }
            let mut fields = BTreeSet::new();
            for field in &model.fields {
                if !is_field_name(&field.name) {
                    problems.push(format!(
                        "field {}.{:?} is not a valid field name",
                        model.collection, field.name
                    ));
                }
                if !fields.insert(field.name.as_str()) {
                    problems.push(format!(
                        "field {}.{} is planned twice",
                        model.collection, field.name
                    ));
                }
            }
            for (name, _) in model.access.required_fields() {
                if !fields.contains(name) {
                    problems.push(format!(
                        "collection {} uses access {:?} and needs a field {name:?}",
                        model.collection, model.access
                    ));
                }
            }
        }
        let mut buckets = BTreeSet::new();
        for bucket in &self.storage {
            if !is_dns_label(&bucket.name) || !buckets.insert(bucket.name.as_str()) {
                problems.push(format!("bucket {:?} must be a unique DNS label", bucket.name));
            }
        }
        let mut functions = BTreeSet::new();
        for function in &self.functions {
            if !is_dns_label(&function.name) || !functions.insert(function.name.as_str()) {
                problems.push(format!("function {:?} must be a unique DNS label", function.name));
            }
            let trigger = &function.trigger;
            let set = [
                trigger.http.is_some(),
                trigger.schedule.is_some(),
                trigger.document.is_some(),
            ];
            if set.iter().filter(|s| **s).count() != 1 {
                problems.push(format!("function {} needs exactly one trigger", function.name));
            }
            if let Some(path) = &trigger.http
                && !path.starts_with('/')
            {
                problems.push(format!(
                    "function {} has HTTP path {path:?}, which must start with /",
                    function.name
                ));
            }
            if let Some(document) = &trigger.document {
                if !seen.contains(document.collection.as_str()) {
                    problems.push(format!(
                        "function {} listens to collection {:?}, which is not planned",
                        function.name, document.collection
                    ));
                }
                if document.events.is_empty()
                    || document
                        .events
                        .iter()
                        .any(|e| !matches!(e.as_str(), "create" | "update" | "delete"))
                {
                    problems.push(format!(
                        "function {} must listen to some of create, update, delete",
                        function.name
                    ));
                }
            }
            if !(1..=900).contains(&function.timeout_seconds) {
                problems.push(format!(
                    "function {} timeout must be 1–900 seconds",
                    function.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidPlan { problems })
        }
    }

    /// The JSON schema a structured-output provider is asked to follow.
    pub fn json_schema() -> serde_json::Value {
        let schema = schemars::schema_for!(Plan);
        let mut value = serde_json::to_value(schema).expect("a schema serializes");
        make_strict(&mut value);
        value
    }
}

/// `email`, `google`, … as the API spells them.
pub fn auth_names(providers: &[AuthProvider]) -> Vec<String> {
    providers
        .iter()
        .map(|p| {
            serde_json::to_value(p)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
        .collect()
}

/// Structured-output providers in strict mode want every property required
/// (optional ones are nullable instead) and no additional properties.
fn make_strict(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(properties)) = map.get("properties") {
                let names: Vec<serde_json::Value> = properties
                    .keys()
                    .map(|k| serde_json::Value::String(k.clone()))
                    .collect();
                map.insert("required".into(), serde_json::Value::Array(names));
                map.insert("additionalProperties".into(), serde_json::Value::Bool(false));
            }
            map.remove("format");
            // Documented enum variants come out as `oneOf`; strict mode takes `anyOf`.
            if let Some(variants) = map.remove("oneOf") {
                map.insert("anyOf".into(), variants);
            }
            for child in map.values_mut() {
                make_strict(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

impl fmt::Display for Plan {
    /// The plan as the user sees it in the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "app {}: {}", self.app, self.summary)?;
        if !self.auth.is_empty() {
            writeln!(f, "  sign-in    {}", auth_names(&self.auth).join(", "))?;
        }
        for screen in &self.screens {
            writeln!(f, "  screen     {} — {}", screen.name, screen.purpose)?;
        }
        for model in &self.models {
            let fields: Vec<String> = model
                .fields
                .iter()
                .map(|f| format!("{}:{}", f.name, format!("{:?}", f.type_).to_lowercase()))
                .collect();
            let access = serde_json::to_value(model.access).expect("an enum serializes");
            writeln!(
                f,
                "  model      {} ({}) access: {}",
                model.collection,
                fields.join(", "),
                access.as_str().unwrap_or_default()
            )?;
        }
        for bucket in &self.storage {
            writeln!(
                f,
                "  bucket     {} (objects up to {})",
                bucket.name, bucket.max_object_size
            )?;
        }
        for api in &self.apis {
            writeln!(f, "  api        {} {} — {}", api.method, api.path, api.purpose)?;
        }
        for function in &self.functions {
            let trigger = match (
                &function.trigger.http,
                &function.trigger.schedule,
                &function.trigger.document,
            ) {
                (Some(path), _, _) => format!("POST {path}"),
                (_, Some(cron), _) => format!("schedule {cron}"),
                (_, _, Some(doc)) => format!("on {} {}", doc.collection, doc.events.join("/")),
                _ => "no trigger".into(),
            };
            writeln!(
                f,
                "  function   {} ({trigger}) — {}",
                function.name, function.purpose
            )?;
        }
        Ok(())
    }
}
