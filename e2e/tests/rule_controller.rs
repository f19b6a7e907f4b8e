//! The Rule controller against the real apiserver: compile and test results in
//! status, publication into the App's runtime ConfigMap next to the App
//! controller's key (one owner per field), unpublication on delete.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use winky_crds::{App, Rule};
use winky_e2e::{ControlPlane, InProcessOperator, TestNamespace, eventually};

const WAIT: Duration = Duration::from_secs(30);

async fn setup(prefix: &str) -> (Client, TestNamespace, InProcessOperator) {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, prefix).await.unwrap();
    let operator = InProcessOperator::start(client.clone(), ns.name(), prefix);
    (client, ns, operator)
}

fn app() -> App {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "App",
        "metadata": {"name": "notes"},
        "spec": {"image": "registry.example/notes:1", "port": 8080},
    }))
    .unwrap()
}

fn rule(name: &str, read: &str) -> Rule {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "Rule",
        "metadata": {"name": name},
        "spec": {
            "app": "notes",
            "rules": [{"match": "/notes/{noteId}", "allow": {"read": read}}],
            "tests": [
                {"name": "signed in reads", "request": {"auth": {"uid": "a"}, "method": "get", "path": "/notes/1"}, "expect": "allow"},
                {"name": "anonymous does not", "request": {"method": "get", "path": "/notes/1"}, "expect": "deny"},
            ],
        },
    }))
    .unwrap()
}

fn condition(rule: &Rule, type_: &str) -> Option<(String, String, String)> {
    rule.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn rules_json(cms: &Api<ConfigMap>) -> Option<serde_json::Value> {
    let cm = cms.get_opt("notes-runtime").await.ok()??;
    serde_json::from_str(cm.data?.get("rules.json")?).ok()
}

fn published_names(doc: &serde_json::Value) -> Vec<String> {
    doc["rules"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_tested_published_beside_the_app_config_and_unpublished_on_delete() {
    let (client, ns, operator) = setup("rules").await;
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    let rules: Api<Rule> = Api::namespaced(client.clone(), ns.name());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app()).await.unwrap();
    rules
        .create(&PostParams::default(), &rule("owners", "request.auth != null"))
        .await
        .unwrap();

    let published = eventually("the Rule to be published", WAIT, || async {
        let r = rules.get("owners").await.ok()?;
        let (status, reason, _) = condition(&r, "Ready")?;
        (status == "True").then_some((r, reason))
    })
    .await;
    assert_eq!(published.1, "Published");
    let status = published.0.status.unwrap();
    assert_eq!(
        (
            status.tests.as_ref().unwrap().passed,
            status.tests.as_ref().unwrap().failed
        ),
        (2, 0)
    );
    assert!(status.compiled_hash.is_some());
    let doc = eventually("rules.json", WAIT, || rules_json(&cms)).await;
    assert_eq!(published_names(&doc), ["owners"]);

    // One owner per field: each controller owns its own key.
    let cm = cms.get("notes-runtime").await.unwrap();
    let managers: Vec<(String, String)> = cm
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            let fields = serde_json::to_string(&m.fields_v1).unwrap_or_default();
            (m.manager.clone().unwrap_or_default(), fields)
        })
        .collect();
    let owner_of = |key: &str| {
        managers
            .iter()
            .filter(|(_, f)| f.contains(&format!("f:{key}")))
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(owner_of("rules.json"), ["winky-operator-rules"], "{managers:?}");
    assert_eq!(owner_of("runtime.json"), ["winky-operator"], "{managers:?}");

    // The App controller re-applies its ConfigMap: the rules stay.
    let patch = serde_json::json!({"spec": {"image": "registry.example/notes:2"}});
    apps.patch("notes", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the App's new runtime.json", WAIT, || async {
        let cm = cms.get("notes-runtime").await.ok()?;
        let runtime: serde_json::Value = serde_json::from_str(cm.data.as_ref()?.get("runtime.json")?).ok()?;
        let app = apps.get("notes").await.ok()?;
        (runtime["revision"] == app.status?.revision?.id.as_str()).then_some(())
    })
    .await;
    assert_eq!(
        published_names(&rules_json(&cms).await.unwrap()),
        ["owners"],
        "the App controller removed the rules"
    );

    // A Rule that does not compile is Degraded, with the position, and not published.
    rules
        .create(&PostParams::default(), &rule("broken", "request.auth != null &&"))
        .await
        .unwrap();
    let (_, reason, message) = eventually("the broken Rule to be Degraded", WAIT, || async {
        let r = rules.get("broken").await.ok()?;
        condition(&r, "Degraded").filter(|(s, _, _)| s == "True")
    })
    .await;
    assert_eq!(reason, "CompileError");
    assert!(
        message.contains("rules[0] (/notes/{noteId}) allow.read: line 1, column"),
        "{message}"
    );
    assert_eq!(published_names(&rules_json(&cms).await.unwrap()), ["owners"]);

    // Deleting a Rule unpublishes it before it goes.
    rules.delete("owners", &DeleteParams::default()).await.unwrap();
    eventually("the deleted Rule to be unpublished and gone", WAIT, || async {
        let doc = rules_json(&cms).await?;
        let gone = rules.get_opt("owners").await.ok()?.is_none();
        (published_names(&doc).is_empty() && gone).then_some(())
    })
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_waits_for_its_app_and_is_published_when_it_appears() {
    let (client, ns, operator) = setup("rules-wait").await;
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    let rules: Api<Rule> = Api::namespaced(client.clone(), ns.name());
    rules
        .create(&PostParams::default(), &rule("early", "request.auth != null"))
        .await
        .unwrap();
    let (_, reason, _) = eventually("the Rule to wait for its App", WAIT, || async {
        condition(&rules.get("early").await.ok()?, "Ready")
    })
    .await;
    assert_eq!(reason, "AppNotFound");
    apps.create(&PostParams::default(), &app()).await.unwrap();
    eventually("the Rule to be published once the App exists", WAIT, || async {
        let (status, reason, _) = condition(&rules.get("early").await.ok()?, "Ready")?;
        (status == "True" && reason == "Published").then_some(())
    })
    .await;
    operator.stop().await.unwrap();
}
