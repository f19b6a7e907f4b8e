//! Offline validation of Winky objects against the generated CRDs, as the
//! apiserver validates them on create: defaults applied, then the OpenAPI v3
//! structural schema (types, required, enum, bounds, lengths, patterns, item
//! counts, list-map uniqueness, unknown fields), then the CEL rules
//! (`x-kubernetes-validations`) with `self` bound to the value at their
//! schema node. Transition rules (`oldSelf`) do not apply to a new object and
//! are not run.
//!
//! The schemas are the manifests in `crds/manifests/`, embedded when this
//! crate is built (`build.rs`), so a regenerated CRD is picked up by the next
//! build.
//!
//! Violations read like the apiserver's: the field path, then what is wrong.
//!
//! ```text
//! spec.replicas: Invalid value: -3: spec.replicas in body should be greater than or equal to 0
//! spec.trigger: Invalid value: "object": set exactly one of trigger.http, trigger.schedule or trigger.document
//! ```

pub mod cel;

use std::fmt;
use std::sync::OnceLock;

use serde_json::{Map, Value};

mod manifests {
    include!(concat!(env!("OUT_DIR"), "/crd_manifests.rs"));
}

/// One thing the apiserver would refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where, as the apiserver writes it: `spec.rules[0].match`.
    pub field: String,
    /// What is wrong: `Invalid value: …`, `Required value`, …
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// The result of validating one object.
#[derive(Clone, Debug, Default)]
pub struct Validation {
    /// `App.winky.dev`, as the apiserver names the resource in its errors.
    pub resource: String,
    pub violations: Vec<Violation>,
    /// CEL rules that could not be evaluated offline (a function this
    /// evaluator does not know): the cluster will still judge them.
    pub unchecked: Vec<String>,
    /// The object with the schema's defaults filled in.
    pub defaulted: Value,
}

impl Validation {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// One served version of one custom resource.
#[derive(Clone, Debug)]
struct Crd {
    group: String,
    kind: String,
    /// Served versions and their `openAPIV3Schema`.
    versions: Vec<(String, Value)>,
    namespaced: bool,
}

/// The CRDs of `crds/manifests/`.
#[derive(Debug)]
pub struct Schemas {
    crds: Vec<Crd>,
}

/// The embedded CRDs, parsed once.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        Schemas::parse(manifests::MANIFESTS.iter().copied())
            .unwrap_or_else(|e| panic!("the embedded CRD manifests do not parse: {e}"))
    })
}

/// The embedded CRD manifests: file name and text.
pub fn manifest_files() -> &'static [(&'static str, &'static str)] {
    manifests::MANIFESTS
}

impl Schemas {
    /// CRDs from `(name, yaml)` manifests.
    pub fn parse<'a>(manifests: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut crds = Vec::new();
        for (name, text) in manifests {
            let documents: Vec<Value> =
                serde_saphyr::from_multiple(text).map_err(|e| format!("{name}: {e}"))?;
            for document in documents {
                if document["kind"] != "CustomResourceDefinition" {
                    continue;
                }
                let spec = &document["spec"];
                let versions = spec["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v["served"] != false)
                    .map(|v| {
                        (
                            v["name"].as_str().unwrap_or_default().to_string(),
                            v["schema"]["openAPIV3Schema"].clone(),
                        )
                    })
                    .collect();
                crds.push(Crd {
                    group: spec["group"].as_str().unwrap_or_default().to_string(),
                    kind: spec["names"]["kind"].as_str().unwrap_or_default().to_string(),
                    versions,
                    namespaced: spec["scope"] != "Cluster",
                });
            }
        }
        if crds.is_empty() {
            return Err("no CustomResourceDefinition found".into());
        }
        Ok(Self { crds })
    }

    /// The API groups these CRDs define.
    pub fn groups(&self) -> Vec<&str> {
        let mut groups: Vec<&str> = self.crds.iter().map(|c| c.group.as_str()).collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// Validates `object` when its group is one of these CRDs'; `None` for
    /// any other object (a Namespace, a Deployment: not ours to judge).
    pub fn validate(&self, object: &Value) -> Option<Validation> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if !self.crds.iter().any(|c| c.group == group) {
            return None;
        }
        let kind = object["kind"].as_str().unwrap_or_default();
        let mut validation = Validation {
            resource: format!("{kind}.{group}"),
            defaulted: object.clone(),
            ..Validation::default()
        };
        let Some(crd) = self.crds.iter().find(|c| c.group == group && c.kind == kind) else {
            let kinds: Vec<&str> = self
                .crds
                .iter()
                .filter(|c| c.group == group)
                .map(|c| c.kind.as_str())
                .collect();
            validation.violations.push(Violation {
                field: "kind".into(),
                message: format!(
                    "Unsupported value: {}: no kind {kind:?} in {group} (kinds: {})",
                    json_text(&object["kind"]),
                    kinds.join(", ")
                ),
            });
            return Some(validation);
        };
        let Some((_, schema)) = crd.versions.iter().find(|(v, _)| v == version) else {
            let versions: Vec<String> = crd.versions.iter().map(|(v, _)| format!("{group}/{v}")).collect();
            validation.violations.push(Violation {
                field: "apiVersion".into(),
                message: format!(
                    "Unsupported value: {api_version:?}: supported values: {}",
                    quoted(&versions)
                ),
            });
            return Some(validation);
        };
        let mut object = object.clone();
        if let Some(map) = object.as_object_mut() {
            // A status subresource: status is not written on create.
            map.remove("status");
        }
        apply_defaults(schema, &mut object);
        let mut walker = Walker::default();
        walker.metadata(&object, crd.namespaced);
        walker.root(schema, &object);
        validation.violations = walker.violations;
        validation.unchecked = walker.unchecked;
        validation.defaulted = object;
        Some(validation)
    }
}

/// Fills in the schema's defaults, as the apiserver does before validating:
/// a missing property with a `default` gets it, then defaults apply inside
/// it, recursively.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    let missing = match map.get(name) {
                        None => true,
                        Some(Value::Null) => property["nullable"] != true,
                        Some(_) => false,
                    };
                    if missing && let Some(default) = property.get("default") {
                        map.insert(name.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        apply_defaults(property, child);
                    }
                }
            }
            if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (name, child) in map.iter_mut() {
                    if schema["properties"].get(name).is_none() {
                        apply_defaults(additional, child);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// `"a", "b"`
fn quoted(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as the apiserver prints it in `Invalid value: …`.
fn json_text(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A bound from the schema (`0.0`, `65535.0`) as the apiserver prints it.
fn bound_text(bound: f64) -> String {
    if bound.fract() == 0.0 && bound.abs() < 1e15 {
        format!("{}", bound as i64)
    } else {
        bound.to_string()
    }
}

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
    characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
    regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
    characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or \
    '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// At most 253 characters of dot-separated labels; the labels' own length
/// is not limited here (the apiserver's regex does not limit it either).
fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}

#[derive(Default)]
struct Walker {
    violations: Vec<Violation>,
    unchecked: Vec<String>,
}

impl Walker {
    fn invalid(&mut self, field: &str, message: String) {
        self.violations.push(Violation {
            field: field.to_string(),
            message,
        });
    }

    /// `metadata.name` and `metadata.namespace`, as the apiserver checks them.
    fn metadata(&mut self, object: &Value, namespaced: bool) {
        let metadata = &object["metadata"];
        if !metadata.is_object() {
            self.invalid(
                "metadata.name",
                "Required value: name or generateName is required".into(),
            );
            return;
        }
        match metadata.get("name") {
            Some(Value::String(name)) if !name.is_empty() => {
                if !is_dns1123_subdomain(name) {
                    self.invalid(
                        "metadata.name",
                        format!("Invalid value: {name:?}: {DNS1123_SUBDOMAIN}"),
                    );
                }
            }
            Some(other) if !other.is_null() && other.as_str() != Some("") => self.invalid(
                "metadata.name",
                format!("Invalid value: {}: must be a string", json_text(other)),
            ),
            _ => {
                if metadata["generateName"].as_str().unwrap_or_default().is_empty() {
                    self.invalid(
                        "metadata.name",
                        "Required value: name or generateName is required".into(),
                    );
                }
            }
        }
        match metadata.get("namespace") {
            Some(Value::String(namespace)) if !namespace.is_empty() => {
                if !namespaced {
                    self.invalid(
                        "metadata.namespace",
                        "Forbidden: not allowed on this type: the resource is cluster-scoped".into(),
                    );
                } else if !is_dns1123_label(namespace) {
                    self.invalid(
                        "metadata.namespace",
                        format!("Invalid value: {namespace:?}: {DNS1123_LABEL}"),
                    );
                }
            }
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => self.invalid(
                "metadata.namespace",
                format!("Invalid value: {}: must be a string", json_text(other)),
            ),
        }
    }

    /// The whole object: `apiVersion`, `kind` and `metadata` are the
    /// apiserver's, every other field is the schema's.
    fn root(&mut self, schema: &Value, object: &Value) {
        let Some(map) = object.as_object() else {
            self.invalid("<root>", "Invalid value: the object must be a map".into());
            return;
        };
        let mut body: Map<String, Value> = map.clone();
        for implicit in ["apiVersion", "kind", "metadata"] {
            body.remove(implicit);
        }
        let before = self.violations.len();
        self.object_fields(schema, &body, "");
        {
            // Root rules may read `self.metadata.name` and `generateName`.
            let mut visible = body;
            let metadata: Map<String, Value> = map
                .get("metadata")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k == "name" || *k == "generateName")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            visible.insert("metadata".into(), Value::Object(metadata));
            visible.insert("apiVersion".into(), map["apiVersion"].clone());
            visible.insert("kind".into(), map["kind"].clone());
            let inner_violations = self.violations.len() > before;
            self.rules(schema, &Value::Object(visible), "", inner_violations);
        }
    }

    fn node(&mut self, schema: &Value, value: &Value, path: &str) {
        let before = self.violations.len();
        // CEL runs on values of the right type, as the apiserver's does; a
        // wrong type already says what is wrong.
        if self.structure(schema, value, path) {
            let inner_violations = self.violations.len() > before;
            self.rules(schema, value, path, inner_violations);
        }
    }

    /// Checks the value's type and then everything below it; whether its
    /// type is right (and it is not null), so that its rules can run.
    fn structure(&mut self, schema: &Value, value: &Value, path: &str) -> bool {
        if value.is_null() {
            if schema["nullable"] != true {
                let expected = schema["type"].as_str().unwrap_or("a value");
                self.invalid(
                    path,
                    format!("Invalid value: \"null\": {path} in body must be of type {expected}: \"null\""),
                );
            }
            return false;
        }
        let int_or_string = schema["x-kubernetes-int-or-string"] == true;
        let expected = schema["type"].as_str();
        let type_ok = match expected {
            _ if int_or_string => value.is_string() || value.is_i64() || value.is_u64(),
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some(_) => true,
        };
        if !type_ok {
            let expected = if int_or_string {
                "integer or string"
            } else {
                expected.unwrap_or_default()
            };
            let actual = type_name(value);
            self.invalid(
                path,
                format!(
                    "Invalid value: \"{actual}\": {path} in body must be of type {expected}: \"{actual}\""
                ),
            );
            return false;
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            let supported: Vec<String> = allowed.iter().map(json_text).collect();
            self.invalid(
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    json_text(value),
                    supported.join(", ")
                ),
            );
        }
        match value {
            Value::String(text) => self.string(schema, text, path),
            Value::Number(number) => self.number(schema, number, path),
            Value::Array(items) => self.array(schema, items, path),
            Value::Object(map) => self.object_fields(schema, map, path),
            _ => {}
        }
        true
    }

    fn string(&mut self, schema: &Value, text: &str, path: &str) {
        let length = text.chars().count() as u64;
        if let Some(min) = schema["minLength"].as_u64()
            && length < min
        {
            self.invalid(
                path,
                format!("Invalid value: {text:?}: {path} in body should be at least {min} chars long"),
            );
        }
        if let Some(max) = schema["maxLength"].as_u64()
            && length > max
        {
            self.invalid(path, format!("Too long: may not be more than {max} bytes"));
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            match regex::Regex::new(pattern) {
                Ok(re) if !re.is_match(text) => self.invalid(
                    path,
                    format!("Invalid value: {text:?}: {path} in body should match '{pattern}'"),
                ),
                Ok(_) => {}
                Err(e) => self
                    .unchecked
                    .push(format!("{path}: pattern '{pattern}' not checked offline: {e}")),
            }
        }
        if schema["format"] == "date-time" && !is_date_time(text) {
            self.invalid(
                path,
                format!("Invalid value: {text:?}: {path} in body must be of type date-time: {text:?}"),
            );
        }
    }

    fn number(&mut self, schema: &Value, number: &serde_json::Number, path: &str) {
        let Some(value) = number.as_f64() else { return };
        let shown = number.to_string();
        if let Some(min) = schema["minimum"].as_f64() {
            let exclusive = schema["exclusiveMinimum"] == true;
            if value < min || (exclusive && value == min) {
                let relation = if exclusive {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                self.invalid(
                    path,
                    format!(
                        "Invalid value: {shown}: {path} in body should be {relation} {}",
                        bound_text(min)
                    ),
                );
            }
        }
        if let Some(max) = schema["maximum"].as_f64() {
            let exclusive = schema["exclusiveMaximum"] == true;
            if value > max || (exclusive && value == max) {
                let relation = if exclusive {
                    "less than"
                } else {
                    "less than or equal to"
                };
                self.invalid(
                    path,
                    format!(
                        "Invalid value: {shown}: {path} in body should be {relation} {}",
                        bound_text(max)
                    ),
                );
            }
        }
        let (low, high) = match schema["format"].as_str() {
            Some("int32") => (f64::from(i32::MIN), f64::from(i32::MAX)),
            _ => (f64::MIN, f64::MAX),
        };
        if value < low || value > high {
            self.invalid(
                path,
                format!("Invalid value: {shown}: {path} in body must be of type int32"),
            );
        }
    }

    fn array(&mut self, schema: &Value, items: &[Value], path: &str) {
        let count = items.len() as u64;
        if let Some(max) = schema["maxItems"].as_u64()
            && count > max
        {
            self.invalid(path, format!("Too many: {count}: must have at most {max} items"));
        }
        if let Some(min) = schema["minItems"].as_u64()
            && count < min
        {
            self.invalid(
                path,
                format!("Invalid value: {count}: {path} in body should have at least {min} items"),
            );
        }
        let item_schema = &schema["items"];
        for (index, item) in items.iter().enumerate() {
            self.node(item_schema, item, &format!("{path}[{index}]"));
        }
        match schema["x-kubernetes-list-type"].as_str() {
            Some("map") => {
                let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut seen: Vec<Vec<&Value>> = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let key: Vec<&Value> = keys.iter().map(|k| &item[*k]).collect();
                    if seen.contains(&key) {
                        let shown: Map<String, Value> = keys
                            .iter()
                            .zip(&key)
                            .map(|(k, v)| (k.to_string(), (*v).clone()))
                            .collect();
                        self.invalid(
                            &format!("{path}[{index}]"),
                            format!("Duplicate value: {}", json_text(&Value::Object(shown))),
                        );
                    } else {
                        seen.push(key);
                    }
                }
            }
            Some("set") => {
                for (index, item) in items.iter().enumerate() {
                    if items[..index].contains(item) {
                        self.invalid(
                            &format!("{path}[{index}]"),
                            format!("Duplicate value: {}", json_text(item)),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn object_fields(&mut self, schema: &Value, map: &Map<String, Value>, path: &str) {
        let field = |name: &str| {
            if path.is_empty() {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        for required in schema["required"].as_array().into_iter().flatten() {
            let Some(name) = required.as_str() else { continue };
            if !map.contains_key(name) {
                self.invalid(&field(name), "Required value".into());
            }
        }
        let properties = schema["properties"].as_object();
        let additional = schema.get("additionalProperties");
        let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
        for (name, value) in map {
            if let Some(property) = properties.and_then(|p| p.get(name)) {
                self.node(property, value, &field(name));
            } else if let Some(additional) = additional.filter(|a| a.is_object()) {
                self.node(additional, value, &format!("{path}[{name}]"));
            } else if !preserve && additional != Some(&Value::Bool(true)) {
                self.invalid(&field(name), "field not declared in schema".into());
            }
        }
    }

    /// The node's CEL rules, `self` bound to `value`. With `inner_violations`
    /// a rule that fails to evaluate is not reported: a violation below
    /// already says what is wrong with the value it reads.
    fn rules(&mut self, schema: &Value, value: &Value, path: &str, inner_violations: bool) {
        let Some(rules) = schema["x-kubernetes-validations"].as_array() else {
            return;
        };
        for rule in rules {
            let Some(source) = rule["rule"].as_str() else {
                continue;
            };
            if mentions_old_self(source) {
                // A transition rule: there is no old object on create.
                continue;
            }
            let at = if path.is_empty() { "<root>" } else { path };
            let program = match cel::compile(source) {
                Ok(program) => program,
                Err(e) => {
                    self.unchecked
                        .push(format!("{at}: rule `{source}` not checked offline: {e}"));
                    continue;
                }
            };
            let field = match rule["fieldPath"].as_str() {
                Some(extra) if !extra.is_empty() => {
                    format!("{path}{extra}").trim_start_matches('.').to_string()
                }
                _ => at.to_string(),
            };
            match cel::evaluate(&program, value) {
                Ok(true) => {}
                Ok(false) => {
                    let message = self.message(rule, value, source);
                    let reason = match rule["reason"].as_str() {
                        Some("FieldValueRequired") => "Required value".to_string(),
                        Some("FieldValueForbidden") => "Forbidden".to_string(),
                        Some("FieldValueDuplicate") => format!("Duplicate value: \"{}\"", type_name(value)),
                        _ => format!("Invalid value: \"{}\"", type_name(value)),
                    };
                    self.invalid(&field, format!("{reason}: {message}"));
                }
                Err(cel::EvalError::Unsupported(why)) => {
                    self.unchecked
                        .push(format!("{at}: rule `{source}` not checked offline: {why}"));
                }
                Err(cel::EvalError::Failed(_)) if inner_violations => {}
                Err(cel::EvalError::Failed(why)) => self.invalid(
                    &field,
                    format!(
                        "Invalid value: \"{}\": rule `{source}` failed to evaluate: {why}",
                        type_name(value)
                    ),
                ),
            }
        }
    }

    /// The rule's `messageExpression`, else its `message`, else the rule.
    fn message(&mut self, rule: &Value, value: &Value, source: &str) -> String {
        if let Some(expression) = rule["messageExpression"].as_str()
            && let Ok(program) = cel::compile(expression)
            && let Ok(text) = cel::evaluate_string(&program, value)
            && !text.trim().is_empty()
        {
            return text;
        }
        match rule["message"].as_str() {
            Some(message) if !message.is_empty() => message.to_string(),
            _ => format!("failed rule: {source}"),
        }
    }
}

fn mentions_old_self(source: &str) -> bool {
    source.match_indices("oldSelf").any(|(at, word)| {
        let before = source[..at].chars().next_back();
        let after = source[at + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// RFC 3339 date-time: `2026-01-02T03:04:05Z`, with optional fraction and offset.
fn is_date_time(text: &str) -> bool {
    let re = {
        static RE: OnceLock<regex::Regex> = OnceLock::new();
        RE.get_or_init(|| {
            regex::Regex::new(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
                .expect("a valid regex")
        })
    };
    re.is_match(text)
}

#[cfg(test)]
mod tests;
