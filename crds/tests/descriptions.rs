//! What `kubectl explain` shows is the schema's descriptions: every bound,
//! allowed value and default the schema enforces is spelled out in the
//! description of its field, so a user learns them before the apiserver
//! refuses a value (issue 13).

use serde_json::Value;

/// Whether `needle` occurs in `text` as a token of its own: not inside a
/// longer word or number (`1` is not found in `10` or `v1`).
fn mentions(text: &str, needle: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// A number of the schema (`1.0` or `1`) as a person writes it.
fn number(value: &Value) -> String {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 => format!("{}", n as i64),
        _ => value.to_string(),
    }
}

/// What a description fails to say about the schema node `node` at `path`.
/// A node without a description (an array's items) is described by its
/// parent's.
fn unsaid(node: &Value, description: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for bound in ["minimum", "maximum"] {
        if let Some(value) = node.get(bound) {
            let n = number(value);
            if !mentions(description, &n) {
                missing.push(format!("{bound} {n}"));
            }
        }
    }
    for value in node.get("enum").and_then(Value::as_array).into_iter().flatten() {
        let value = value.as_str().map_or_else(|| value.to_string(), str::to_string);
        if !mentions(description, &value) {
            missing.push(format!("allowed value {value}"));
        }
    }
    if let Some(default) = node.get("default") {
        // An object's or a list's default only says that absent means empty:
        // their members' own defaults are checked where they are.
        let said = match default {
            Value::Object(_) | Value::Array(_) => None,
            Value::String(s) if s.is_empty() => Some("empty".to_string()),
            Value::String(s) => Some(s.clone()),
            Value::Number(_) => Some(number(default)),
            other => Some(other.to_string()),
        };
        if let Some(said) = said
            && !(description.to_lowercase().contains("default") && mentions(description, &said))
        {
            missing.push(format!("default {said}"));
        }
    }
    missing
}

fn walk(path: &str, node: &Value, inherited: &str, missing: &mut Vec<String>) {
    let description = node
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or(inherited);
    for what in unsaid(node, description) {
        missing.push(format!("{path}: {what} (description: {description:?})"));
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            walk(&format!("{path}.{name}"), property, "", missing);
        }
    }
    if let Some(items) = node.get("items") {
        walk(&format!("{path}[]"), items, description, missing);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(&format!("{path}{{}}"), values, description, missing);
    }
}

fn schema(kind: &str) -> Value {
    let crd = winky_crds::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD of kind {kind}"));
    serde_json::to_value(&crd.spec.versions[0].schema).unwrap()["openAPIV3Schema"].clone()
}

/// The description of the field at `path` (`spec.runtime.auth.providers`).
fn description(kind: &str, path: &str) -> String {
    let mut node = schema(kind);
    for part in path.split('.') {
        node = node["properties"][part].clone();
    }
    node["description"].as_str().unwrap_or_default().to_string()
}

#[test]
fn every_bound_allowed_value_and_default_is_in_its_description() {
    let mut missing = Vec::new();
    for crd in winky_crds::crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        walk(&crd.spec.names.kind, &schema["openAPIV3Schema"], "", &mut missing);
    }
    assert!(
        missing.is_empty(),
        "kubectl explain would not show these bounds, allowed values or defaults: {missing:#?}"
    );
}

#[test]
fn the_fields_a_new_user_asked_about_say_their_limits() {
    let providers = description("App", "spec.runtime.auth.providers");
    for provider in ["email", "google", "github", "phone", "anonymous"] {
        assert!(mentions(&providers, provider), "{providers}");
    }
    let replicas = description("App", "spec.replicas");
    assert!(
        mentions(&replicas, "100") && mentions(&replicas, "default 1"),
        "{replicas}"
    );
    let timeout = description("Function", "spec.timeoutSeconds");
    assert!(
        mentions(&timeout, "900") && mentions(&timeout, "default 30"),
        "{timeout}"
    );
    // An App's CPU and memory have defaults the operator applies, not the
    // schema: the descriptions say them all the same.
    let resources = description("App", "spec.resources");
    for default in [winky_crds::defaults::APP_CPU, winky_crds::defaults::APP_MEMORY] {
        assert!(mentions(&resources, default), "{resources}");
        let cpu_or_memory = if default == winky_crds::defaults::APP_CPU {
            "spec.resources.cpu"
        } else {
            "spec.resources.memory"
        };
        let field = description("App", cpu_or_memory);
        assert!(mentions(&field, default), "{field}");
    }
}

#[test]
fn mentions_finds_whole_tokens_only() {
    assert!(mentions("between 1 and 900", "1"));
    assert!(!mentions("at most 10", "1"));
    assert!(!mentions("v1alpha1", "1"));
    assert!(mentions("default `512Mi`.", "512Mi"));
}
