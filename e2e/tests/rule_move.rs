//! A Rule moved to another App (issue 13, a security bug): the App it left
//! stops publishing it at once — with other Rules of its own or none left —
//! and so does it when the Rule moved while the operator was not running.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use winky_crds::{App, Rule};
use winky_e2e::{ControlPlane, InProcessOperator, eventually};

/// Far less than "until another Rule of the old App changes", which is never here.
const WAIT: Duration = Duration::from_secs(20);

fn app(name: &str) -> App {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "App",
        "metadata": {"name": name},
        "spec": {"image": format!("registry.example/{name}:1"), "port": 8080},
    }))
    .unwrap()
}

fn rule(name: &str, app: &str) -> Rule {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "Rule",
        "metadata": {"name": name},
        "spec": {
            "app": app,
            // An allow-rule: what the old App must stop enforcing.
            "rules": [{"match": "/notes/{id}", "allow": {"read": "true"}}],
            "tests": [{"name": "anyone reads", "request": {"method": "get", "path": "/notes/1"}, "expect": "allow"}],
        },
    }))
    .unwrap()
}

/// The names of the Rules in the `rules.json` of App `app` (none without
/// one); `None` until the App has its runtime ConfigMap.
async fn published(cms: &Api<ConfigMap>, app: &str) -> Option<Vec<String>> {
    let cm = cms.get_opt(&format!("{app}-runtime")).await.ok()??;
    let Some(document) = cm.data?.remove("rules.json") else {
        return Some(Vec::new());
    };
    let doc: serde_json::Value = serde_json::from_str(&document).ok()?;
    let mut names: Vec<String> = doc["rules"]
        .as_array()?
        .iter()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    names.sort();
    Some(names)
}

/// Waits until the `rules.json` of every App in `expected` lists exactly its Rules.
async fn expect(cms: &Api<ConfigMap>, what: &str, expected: &[(&str, &[&str])]) {
    eventually(what, WAIT, || async {
        for (app, rules) in expected {
            if published(cms, app).await? != *rules {
                return None;
            }
        }
        Some(())
    })
    .await;
}

async fn move_rule(rules: &Api<Rule>, name: &str, to: &str) {
    let patch = serde_json::json!({"spec": {"app": to}});
    rules
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_rule_is_unpublished_from_the_app_it_left_at_once() {
    let cp = ControlPlane::shared();
    let client: Client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "rule-move").await.unwrap();
    let operator = InProcessOperator::start(client.clone(), ns.name(), "rule-move");
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    let rules: Api<Rule> = Api::namespaced(client.clone(), ns.name());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    for name in ["notes", "other", "solo"] {
        apps.create(&PostParams::default(), &app(name)).await.unwrap();
    }
    for (name, app) in [("owners", "notes"), ("movable", "notes"), ("lonely", "solo")] {
        rules
            .create(&PostParams::default(), &rule(name, app))
            .await
            .unwrap();
    }
    expect(
        &cms,
        "every Rule published to its App",
        &[
            ("notes", &["movable", "owners"]),
            ("other", &[]),
            ("solo", &["lonely"]),
        ],
    )
    .await;

    // The old App keeps another Rule, which does not change.
    move_rule(&rules, "movable", "other").await;
    expect(
        &cms,
        "movable published to other only",
        &[("notes", &["owners"]), ("other", &["movable"])],
    )
    .await;

    // The old App has no Rule left: nothing of its own would republish it.
    move_rule(&rules, "lonely", "other").await;
    expect(
        &cms,
        "lonely published to other only",
        &[("solo", &[]), ("other", &["lonely", "movable"])],
    )
    .await;

    // Moved while no operator runs: the next one finds where it is published.
    operator.stop().await.unwrap();
    move_rule(&rules, "lonely", "notes").await;
    let operator = InProcessOperator::start(client.clone(), ns.name(), "rule-move-again");
    expect(
        &cms,
        "lonely moved back to notes while the operator was stopped",
        &[
            ("other", &["movable"]),
            ("notes", &["lonely", "owners"]),
            ("solo", &[]),
        ],
    )
    .await;
    operator.stop().await.unwrap();
}
