//! `docs/runtime.md` lists exactly what the builders set: every environment
//! variable of an App and of a Function of each trigger (and of a Function
//! test case in the emulator), every file of the runtime ConfigMap and every
//! field of `runtime.json`. Built with the operator's and the emulator's own
//! builders, so a variable added to a builder without its line in the docs
//! (or a line left behind when one goes) fails here.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::PodTemplateSpec;
use winky_crds::{App, Function};
use winky_operator::app::{build, validate};
use winky_operator::function::build::{self as function_build, HTTP_PORT, Workload};
use winky_operator::naming::runtime_config_map;
use winky_operator::rule::publish::RULES_KEY;

const DOC: &str = include_str!("../../docs/runtime.md");

const APP: &str = r#"
apiVersion: winky.dev/v1alpha1
kind: App
metadata: {name: notes, namespace: notes, uid: 00000000-0000-0000-0000-000000000001}
spec:
  image: registry.example/notes:1
  port: 3000
  runtime:
    auth: {providers: [email]}
    collections: [{name: notes}]
"#;

fn app() -> App {
    serde_saphyr::from_str(APP).unwrap()
}

fn function(trigger: &str) -> Function {
    serde_saphyr::from_str(&format!(
        "apiVersion: winky.dev/v1alpha1\nkind: Function\n\
         metadata: {{name: resize, namespace: notes, uid: 00000000-0000-0000-0000-000000000002}}\n\
         spec:\n  app: notes\n  image: registry.example/resize:1\n  trigger: {trigger}\n\
         \x20 tests: [{{name: one, input: {{json: {{a: 1}}}}}}]\n"
    ))
    .unwrap()
}

/// The environment of the (only) container of `template`.
fn env(template: &PodTemplateSpec) -> BTreeMap<String, String> {
    let pod = template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn function_env(trigger: &str) -> BTreeMap<String, String> {
    let children = function_build::children(&function(trigger), &app(), "r-0123456789");
    match &children.workload {
        Workload::Http { deployment, .. } | Workload::Document { deployment } => {
            env(&deployment.spec.as_ref().unwrap().template)
        }
        Workload::Schedule { cron_job } => {
            let job = cron_job.spec.job_template.spec.as_ref().unwrap();
            env(&job.template)
        }
    }
}

/// The lines of every Markdown table in the section under `heading`, as
/// cells (header first, the `|---|` line left out).
fn tables(heading: &str) -> Vec<Vec<Vec<String>>> {
    let section = DOC
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("docs/runtime.md has no section `## {heading}`"));
    let mut tables = Vec::new();
    let mut current: Vec<Vec<String>> = Vec::new();
    for line in section.lines().chain([""]) {
        let line = line.trim();
        if let Some(row) = line.strip_prefix('|') {
            let cells: Vec<String> = row
                .trim_end_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            if !cells.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
                current.push(cells);
            }
        } else if !current.is_empty() {
            tables.push(std::mem::take(&mut current));
        }
    }
    tables
}

/// `` `NAME` `` → `NAME`.
fn code(cell: &str) -> String {
    cell.trim_matches('`').to_string()
}

fn first_column(table: &[Vec<String>]) -> BTreeSet<String> {
    table[1..].iter().map(|row| code(&row[0])).collect()
}

#[test]
fn the_documented_environment_is_what_the_builders_set() {
    let plan_app = app();
    let plan = validate::validate(
        &plan_app,
        &validate::Inputs {
            policy_exists: None,
            vault_configured: false,
        },
    )
    .unwrap();
    let app_env = env(&build::children(&plan, &Default::default())
        .deployment
        .spec
        .unwrap()
        .template);
    let emulated = winky_emulator::functions::run_spec(
        &function("{http: {path: /resize}}"),
        &function("{http: {path: /resize}}").spec.tests[0],
    );
    let built: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        ("App", app_env.keys().cloned().collect()),
        (
            "`http` Function",
            function_env("{http: {path: /resize}}").into_keys().collect(),
        ),
        (
            "`schedule` Function",
            function_env("{schedule: {cron: '*/5 * * * *'}}")
                .into_keys()
                .collect(),
        ),
        (
            "`document` Function",
            function_env("{document: {collection: notes, events: [create]}}")
                .into_keys()
                .collect(),
        ),
        (
            "Function test in the emulator",
            emulated.env.iter().map(|(name, _)| name.clone()).collect(),
        ),
    ]);

    let tables = tables("Environment");
    assert_eq!(tables.len(), 1, "one table in ## Environment");
    let table = &tables[0];
    let header = &table[0];
    for (column, set) in &built {
        let index = header
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("docs/runtime.md's environment table has no column {column:?}"));
        let documented: BTreeSet<String> = table[1..]
            .iter()
            .filter(|row| !row[index].is_empty())
            .map(|row| code(&row[0]))
            .collect();
        assert_eq!(
            &documented, set,
            "docs/runtime.md, column {column:?}: documented (left) and set by the builders (right) differ"
        );
    }
    let every: BTreeSet<String> = built.values().flatten().cloned().collect();
    assert_eq!(
        first_column(table),
        every,
        "every documented variable is set somewhere"
    );

    // The values the docs spell out.
    assert!(DOC.contains(&format!("`{}`", app_env["WINKY_RUNTIME_CONFIG"])));
    assert!(DOC.contains(&format!("`{HTTP_PORT}` for an `http` Function")));
    assert_eq!(app_env["PORT"], "3000");
}

#[test]
fn the_documented_runtime_config_map_is_what_the_builders_write() {
    let app = app();
    let plan = validate::validate(
        &app,
        &validate::Inputs {
            policy_exists: None,
            vault_configured: false,
        },
    )
    .unwrap();
    let config_map = build::children(&plan, &Default::default()).config_map;
    let data = config_map.data.unwrap();
    let mut files: BTreeSet<String> = data.keys().cloned().collect();
    files.insert(RULES_KEY.to_string()); // the Rule controller's key of the same ConfigMap

    let tables = tables("The runtime ConfigMap");
    assert_eq!(tables.len(), 2, "files, then the fields of runtime.json");
    assert_eq!(first_column(&tables[0]), files, "the ConfigMap's files");

    let runtime: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&data[build::RUNTIME_KEY]).unwrap();
    let fields: BTreeSet<String> = runtime.keys().cloned().collect();
    assert_eq!(first_column(&tables[1]), fields, "the fields of runtime.json");

    assert!(DOC.contains(&format!("`{}`", build::RUNTIME_DIR)));
    assert!(DOC.contains(&format!("`{}`", runtime_config_map("<app>"))));
}
