use std::path::{Path, PathBuf};

use super::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn validate_yaml(yaml: &str) -> Validation {
    let object: Value = serde_saphyr::from_str(yaml).unwrap();
    schemas().validate(&object).expect("a winky.dev object")
}

/// The violations' lines, for assertions and failure messages.
fn lines(validation: &Validation) -> Vec<String> {
    validation.violations.iter().map(ToString::to_string).collect()
}

fn assert_refused(yaml: &str, field: &str, message: &str) {
    let validation = validate_yaml(yaml);
    let found = validation
        .violations
        .iter()
        .any(|v| v.field == field && v.message.contains(message));
    assert!(
        found,
        "expected `{field}: …{message}…` in {:#?}",
        lines(&validation)
    );
}

const FUNCTION: &str = "apiVersion: winky.dev/v1alpha1\nkind: Function\nmetadata: {name: f, namespace: ns}\n\
                        spec: {app: a, image: 'f:1', trigger: {http: {path: /f}}}\n";

#[test]
fn the_embedded_manifests_are_the_generated_ones() {
    let dir = workspace().join("crds/manifests");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = manifest_files().iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(embedded, on_disk);
    for (name, text) in manifest_files() {
        assert_eq!(
            *text,
            std::fs::read_to_string(dir.join(name)).unwrap(),
            "{name} is embedded as generated"
        );
    }
    assert_eq!(schemas().groups(), ["winky.dev"]);
}

#[test]
fn what_the_issue_found_accepted_is_refused_with_its_path() {
    // The file of issue #13, one object at a time.
    assert_refused(
        "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata: {name: bad}\nspec: {image: 'a:1', port: 8080, replicas: -3}\n",
        "spec.replicas",
        "Invalid value: -3: spec.replicas in body should be greater than or equal to 0",
    );
    let memory = FUNCTION.replace("trigger:", "memory: 10Gi, trigger:");
    assert_refused(
        &memory,
        "spec.memory",
        "Invalid value: \"string\": memory must be a quantity between 64Mi and 4Gi",
    );
    let two_triggers = FUNCTION.replace(
        "{http: {path: /f}}",
        "{http: {path: /f}, schedule: {cron: '@daily'}}",
    );
    assert_refused(
        &two_triggers,
        "spec.trigger",
        "Invalid value: \"object\": set exactly one of trigger.http, trigger.schedule or trigger.document",
    );
    let cron = FUNCTION.replace("{http: {path: /f}}", "{schedule: {cron: every day}}");
    assert_refused(
        &cron,
        "spec.trigger.schedule.cron",
        "Invalid value: \"every day\": spec.trigger.schedule.cron in body should match '^(@(yearly",
    );
    assert_refused(
        "apiVersion: winky.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\n\
         spec: {app: a, rules: [{match: notes, allow: {read: 'true'}}]}\n",
        "spec.rules[0].match",
        "Invalid value: \"notes\": spec.rules[0].match in body should match '^(/",
    );
    // The valid Function is accepted, so the refusals above are the fields'.
    assert!(
        validate_yaml(FUNCTION).passed(),
        "{:?}",
        lines(&validate_yaml(FUNCTION))
    );
}

#[test]
fn the_schema_keywords_the_crds_use_are_enforced() {
    let app = |spec: &str| {
        format!("apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata: {{name: a}}\nspec: {spec}\n")
    };
    assert_refused(&app("{port: 8080}"), "spec.image", "Required value");
    assert_refused(
        &app("{image: 'a:1', port: eighty}"),
        "spec.port",
        "Invalid value: \"string\": spec.port in body must be of type integer: \"string\"",
    );
    assert_refused(
        &app("{image: 'a:1', port: 70000}"),
        "spec.port",
        "should be less than or equal to 65535",
    );
    assert_refused(
        &app("{image: 'a:1', port: 1, replica: 2}"),
        "spec.replica",
        "field not declared in schema",
    );
    assert_refused(
        &app("{image: 'a:1', port: 1, runtime: {auth: {providers: [facebook]}}}"),
        "spec.runtime.auth.providers[0]",
        "Unsupported value: \"facebook\": supported values: \"email\", \"google\"",
    );
    assert_refused(
        &app("{image: 'a:1', port: 1, env: [{name: A, value: x}, {name: A, value: y}]}"),
        "spec.env[1]",
        "Duplicate value: {\"name\":\"A\"}",
    );
    assert_refused(
        &app("{image: 'a:1', port: 1, env: [{name: 1A}]}"),
        "spec.env[0].name",
        "should match '^[A-Za-z_][A-Za-z0-9_]*$'",
    );
    assert_refused(
        &app(&format!(
            "{{image: 'a:1', port: 1, args: [{}]}}",
            vec!["x"; 65].join(",")
        )),
        "spec.args",
        "Too many: 65: must have at most 64 items",
    );
    assert_refused(
        &app(&format!("{{image: 'a:1', port: 1, policy: {}}}", "p".repeat(254))),
        "spec.policy",
        "Too long: may not be more than 253 bytes",
    );
    assert_refused(
        &app("{image: '', port: 1}"),
        "spec.image",
        "should be at least 1 chars long",
    );
    assert!(is_dns1123_subdomain(&format!("{}.example", "a".repeat(70))));
    assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    assert!(!is_dns1123_subdomain("a..b"));
    assert_refused(
        &app("{image: 'a:1', port: 1, resources: {cpu: '0'}}"),
        "spec.resources.cpu",
        "cpu must be a positive quantity",
    );
    assert_refused(
        &app("{image: 'a:1', port: 1, egress: [{cidr: example.com}]}"),
        "spec.egress[0]",
        "cidr must be an IP range",
    );
    assert_refused(
        "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata: {name: Bad_Name}\nspec: {image: 'a:1', port: 1}\n",
        "metadata.name",
        "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain",
    );
    assert_refused(
        "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata: {}\nspec: {image: 'a:1', port: 1}\n",
        "metadata.name",
        "Required value",
    );
    assert_refused(
        "apiVersion: winky.dev/v1alpha1\nkind: Ap\nmetadata: {name: a}\nspec: {}\n",
        "kind",
        "no kind \"Ap\" in winky.dev",
    );
    assert_refused(
        "apiVersion: winky.dev/v1\nkind: App\nmetadata: {name: a}\nspec: {}\n",
        "apiVersion",
        "supported values: \"winky.dev/v1alpha1\"",
    );
    assert_refused(
        &FUNCTION.replace("trigger:", "timeoutSeconds: 2.5, trigger:"),
        "spec.timeoutSeconds",
        "must be of type integer",
    );
    assert_refused(
        &FUNCTION.replace("image: 'f:1'", "image: null"),
        "spec.image",
        "must be of type string: \"null\"",
    );
    // Free-form fields stay free: a test's JSON input holds anything.
    let input = FUNCTION.replace(
        "trigger:",
        "tests: [{name: t, input: {json: {any: [1, {deep: true}]}}}], trigger:",
    );
    assert!(
        validate_yaml(&input).passed(),
        "{:?}",
        lines(&validate_yaml(&input))
    );
}

#[test]
fn defaults_are_applied_before_the_rules_run() {
    let validation = validate_yaml(FUNCTION);
    assert_eq!(validation.defaulted["spec"]["memory"], "512Mi");
    assert_eq!(validation.defaulted["spec"]["timeoutSeconds"], 30);
    assert_eq!(validation.defaulted["spec"]["network"], serde_json::json!({}));
    // Status is the controller's; it is neither kept nor judged.
    let with_status = format!("{FUNCTION}status: {{bogus: 1}}\n");
    let validation = validate_yaml(&with_status);
    assert!(validation.passed(), "{:?}", lines(&validation));
    assert!(validation.defaulted.get("status").is_none());
}

#[test]
fn transition_rules_do_not_apply_to_a_new_object() {
    let promotion = "apiVersion: winky.dev/v1alpha1\nkind: Promotion\nmetadata: {name: p}\n\
                     spec: {app: notes, stage: preview, revision: {id: r-aaaaaaaaaa}}\n";
    let validation = validate_yaml(promotion);
    assert!(validation.passed(), "{:?}", lines(&validation));
    assert!(validation.unchecked.is_empty(), "{:?}", validation.unchecked);
    assert!(mentions_old_self("self == oldSelf"));
    assert!(!mentions_old_self("self.oldSelfish == 1"));
}

#[test]
fn what_the_apiserver_refuses_in_the_e2e_cases_is_refused_offline() {
    // The same files and messages as e2e/tests/validation.rs, which sends
    // them to a real apiserver.
    let cases = [
        (
            "app-env-and-secret.yaml",
            "a name cannot be both in env and in secrets",
        ),
        (
            "app-secret-two-sources.yaml",
            "set exactly one of vault or secretKeyRef",
        ),
        ("app-bad-cidr.yaml", "cidr must be an IP range"),
        (
            "function-too-much-memory.yaml",
            "memory must be a quantity between 64Mi and 4Gi",
        ),
        (
            "function-two-triggers.yaml",
            "set exactly one of trigger.http, trigger.schedule or trigger.document",
        ),
        ("policy-unanchored-branch.yaml", "branchPattern must be anchored"),
        ("policy-duplicate-stage.yaml", "Duplicate value"),
        ("gitsource-agent-branch.yaml", "never an agent's winky/ branch"),
    ];
    let dir = workspace().join("e2e/tests/invalid");
    // Every file there is refused, those added since too.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let validation = validate_yaml(&std::fs::read_to_string(&path).unwrap());
        assert!(!validation.passed(), "{} is accepted offline", path.display());
    }
    for (file, message) in cases {
        let yaml = std::fs::read_to_string(dir.join(file)).unwrap();
        let validation = validate_yaml(&yaml);
        assert!(
            validation.violations.iter().any(|v| v.message.contains(message)),
            "{file}: expected {message:?} in {:#?}",
            lines(&validation)
        );
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_example_and_default_policy_passes_with_every_rule_checked() {
    let mut files = Vec::new();
    for dir in ["examples", "policies/defaults"] {
        yaml_files(&workspace().join(dir), &mut files);
    }
    let mut validated = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for document in documents {
            let Some(validation) = schemas().validate(&document) else {
                continue;
            };
            validated += 1;
            assert!(
                validation.passed(),
                "{}: {} {:#?}",
                file.display(),
                validation.resource,
                lines(&validation)
            );
            // A rule the offline evaluator cannot run would make this check
            // weaker than the apiserver's: teach it the function instead.
            assert!(
                validation.unchecked.is_empty(),
                "{}: {:#?}",
                file.display(),
                validation.unchecked
            );
        }
    }
    assert!(validated >= 10, "only {validated} objects validated");
}
