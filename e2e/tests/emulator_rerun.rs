//! The emulator in the operator, run again on request, against a real
//! container engine (podman with runc, through its Docker API): a failed
//! run's status names the failed checks and why; an image loaded again under
//! the same name, with the annotation `winky.dev/requested-at`, runs the
//! checks again; each failure has an Event naming its own failed checks; a
//! request value is handled once, also by the next operator.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use winky_crds::app::EmulatorSummary;
use winky_crds::keys::REQUESTED_AT_ANNOTATION;
use winky_crds::{App, Function};
use winky_e2e::engine::ContainerEngine;
use winky_e2e::{ControlPlane, InProcessOperator, apply_json, eventually, workspace_binary, workspace_root};

/// A run takes about a second here; several waits in a row on a busy machine.
const WAIT: Duration = Duration::from_secs(90);
/// How long nothing may happen when nothing should.
const QUIET: Duration = Duration::from_secs(4);

fn scratch(name: &str) -> PathBuf {
    // Short: the engine's socket path must fit in a unix socket address.
    let dir = workspace_root()
        .join("target/e2e")
        .join(format!("emu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads the example program `program` (built by `hack/images.sh` into
/// `target/images`) into the engine as `image`, as a user would after a fix.
fn import(engine: &ContainerEngine, image: &str, program: &str) {
    let output = std::process::Command::new(workspace_binary("winky").unwrap())
        .current_dir(workspace_root())
        .args(["image", "import", "--engine"])
        .arg(engine.socket())
        .arg(image)
        .arg(Path::new("target/images").join(program))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "winky image import {image}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Function whose one case passes with the `probe` program (it echoes its
/// input) and fails with `checkout` (which refuses a cart without items).
fn function(ns: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"app": "rerun", "image": format!("localhost/{name}:latest"),
                 "trigger": {"http": {"path": format!("/{name}")}},
                 "tests": [{"name": "echoes", "input": {"json": {"hello": "world"}},
                            "expect": {"exitCode": 0, "outputContains": "hello"}}]},
    })
}

/// Emulator runs counted by the operator, passed or failed.
fn runs(operator: &InProcessOperator) -> f64 {
    operator.metric(r#"winky_reconciles_total{controller="emulator",result="passed"}"#)
        + operator.metric(r#"winky_reconciles_total{controller="emulator",result="failed"}"#)
}

/// The App's emulator result once `done` holds of it and of the handled request value.
async fn emulator_result(
    apps: &Api<App>,
    what: &str,
    done: impl Fn(&EmulatorSummary, Option<&str>) -> bool,
) -> EmulatorSummary {
    eventually(what, WAIT, || async {
        let status = apps.get("rerun").await.ok()?.status?;
        let emulator = status.emulator?;
        (emulator.revision == status.revision?.id
            && emulator.by_kind.get("function") == Some(&2)
            && done(&emulator, status.last_handled_requested_at.as_deref()))
        .then_some(emulator)
    })
    .await
}

/// Sets the request annotation to `value`.
async fn request(apps: &Api<App>, value: &str) {
    let patch = json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: value}}});
    apps.patch("rerun", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// The notes of the `EmulatorFailed` Events about the App, oldest first.
async fn failed_notes(client: &Client, ns: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut events: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("EmulatorFailed"))
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some("App") && r.name.as_deref() == Some("rerun"))
        })
        .collect();
    events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    events.into_iter().filter_map(|e| e.note).collect()
}

/// Waits until the operator reconciled the App again after `touch`, then a
/// little more, and returns its emulator runs.
async fn after_a_reconcile(operator: &InProcessOperator, apps: &Api<App>, touch: &str) -> f64 {
    let sample = r#"winky_reconciles_total{controller="app",result="success"}"#;
    let before = operator.metric(sample);
    let patch = json!({"metadata": {"annotations": {"e2e/touch": touch}}});
    apps.patch("rerun", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("a reconcile of the touched App", WAIT, || async {
        (operator.metric(sample) > before).then_some(())
    })
    .await;
    tokio::time::sleep(QUIET).await;
    runs(operator)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reruns_the_emulator_once_and_the_status_and_events_say_which_checks_failed() {
    let dir = scratch("rerun");
    let engine = ContainerEngine::start(&dir.join("engine")).unwrap();
    engine
        .load_example_images(&workspace_binary("winky").unwrap())
        .unwrap();
    import(&engine, "localhost/rerun-a:latest", "checkout");
    import(&engine, "localhost/rerun-b:latest", "probe");

    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "emulate-rerun").await.unwrap();
    let operator = InProcessOperator::start_with_engine(
        client.clone(),
        ns.name(),
        "rerun-operator",
        Some(engine.socket().to_path_buf()),
    );
    let app = json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "App",
        "metadata": {"name": "rerun", "namespace": ns.name()},
        "spec": {"image": "registry.local/shop:0.1.0", "port": 8080,
                 "probes": {"readiness": "/readyz"}},
    });
    apply_json::<App>(&client, ns.name(), app).await;
    for name in ["rerun-a", "rerun-b"] {
        apply_json::<Function>(&client, ns.name(), function(ns.name(), name)).await;
    }
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());

    // 1. rerun-a's image fails its case: the status names the check and why.
    let first = emulator_result(&apps, "a failed run with both Functions", |e, _| !e.passed).await;
    assert_eq!(first.failed, 1, "{first:?}");
    assert_eq!(first.failed_checks.len(), 1, "{first:?}");
    let check = &first.failed_checks[0];
    assert_eq!(
        (check.name.as_str(), check.kind.as_str()),
        ("rerun-a/echoes", "function")
    );
    assert!(check.message.contains("exited with"), "{check:?}");
    assert_eq!(first.failed_checks_omitted, 0);
    assert!(first.finished_at.is_some() && first.digest.is_some(), "{first:?}");
    println!("failed check in status: {check:?}");
    eventually("an EmulatorFailed Event naming rerun-a/echoes", WAIT, || async {
        let notes = failed_notes(&client, ns.name()).await;
        notes.last().filter(|n| n.contains("rerun-a/echoes")).cloned()
    })
    .await;

    // 2. The fixed image, loaded under the same name, and a request: the
    // checks run again, and pass.
    import(&engine, "localhost/rerun-a:latest", "probe");
    request(&apps, "t1").await;
    let fixed = emulator_result(&apps, "a passing run for request t1", |e, handled| {
        e.passed && handled == Some("t1")
    })
    .await;
    assert!(fixed.failed_checks.is_empty() && fixed.failed == 0, "{fixed:?}");
    assert_ne!(fixed.digest, first.digest, "the image's id is part of the digest");

    // 3. Another failure: its Event names its own failed check, not the old one.
    import(&engine, "localhost/rerun-b:latest", "checkout");
    request(&apps, "t2").await;
    let second = emulator_result(&apps, "a failed run for request t2", |e, handled| {
        !e.passed && handled == Some("t2")
    })
    .await;
    let names: Vec<&str> = second.failed_checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["rerun-b/echoes"], "{second:?}");
    let note = eventually("an EmulatorFailed Event naming rerun-b/echoes", WAIT, || async {
        let notes = failed_notes(&client, ns.name()).await;
        notes.last().filter(|n| n.contains("rerun-b/echoes")).cloned()
    })
    .await;
    assert!(!note.contains("rerun-a"), "{note}");
    println!("the second failure's Event: {note}");

    // 4. The same request value again, and other changes to the App: no run.
    let before = runs(&operator);
    request(&apps, "t2").await;
    assert_eq!(after_a_reconcile(&operator, &apps, "1").await, before);
    let still = apps.get("rerun").await.unwrap().status.unwrap();
    assert_eq!(still.emulator.as_ref().unwrap().finished_at, second.finished_at);
    assert_eq!(still.last_handled_requested_at.as_deref(), Some("t2"));
    operator.stop().await.unwrap();

    // 5. Nor in the next operator: the status says what was handled.
    let operator = InProcessOperator::start_with_engine(
        client.clone(),
        ns.name(),
        "rerun-operator-2",
        Some(engine.socket().to_path_buf()),
    );
    assert_eq!(after_a_reconcile(&operator, &apps, "2").await, 0.0);
    let status = apps.get("rerun").await.unwrap().status.unwrap();
    assert_eq!(status.emulator.unwrap().finished_at, second.finished_at);

    // 6. An image loaded again is a new digest: the next reconcile runs the
    // checks, without a request.
    import(&engine, "localhost/rerun-b:latest", "probe");
    let patch = json!({"metadata": {"annotations": {"e2e/touch": "3"}}});
    apps.patch("rerun", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let passed = emulator_result(&apps, "a passing run for the image loaded again", |e, _| e.passed).await;
    assert_eq!(runs(&operator), 1.0, "{passed:?}");
    operator.stop().await.unwrap();
}
