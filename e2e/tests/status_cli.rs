//! `winky status <app>` against the real kube-apiserver, with the operator
//! running in-process: the operator computes the App's revision, creates its
//! Promotions and promotes them through a two-stage policy; the built `winky`
//! binary then reads the pipeline back, as JSON and as text. Its errors are
//! checked against the same apiserver (an App not found, an App without a
//! policy, a missing policy) and against a port nobody listens on.

use std::path::Path;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use winky_crds::promotion::Phase;
use winky_crds::{App, Promotion, PromotionPolicy};
use winky_e2e::{ControlPlane, InProcessOperator, eventually, workspace_binary};

const WAIT: Duration = Duration::from_secs(60);
const COMMIT: &str = "4f2a9c1be07d3f6a8b5c2e1d0f9a8b7c6d5e4f3a";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the built `winky` with `args`, seeing no kubeconfig but the one the
/// arguments name (no $KUBECONFIG, a HOME without ~/.kube).
async fn winky(home: &Path, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(workspace_binary("winky").unwrap())
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", home)
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `winky status app -n ns -o json`, parsed; panics with stderr unless it succeeds.
async fn status_json(home: &Path, kubeconfig: &str, ns: &str, app: &str) -> Value {
    let run = winky(
        home,
        &["status", app, "-n", ns, "--kubeconfig", kubeconfig, "-o", "json"],
    )
    .await;
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout))
}

/// The Promotion of `revision` into `stage`, once it is in `phase`.
async fn promotion_in(client: &Client, ns: &str, stage: &str, revision: &str, phase: Phase) -> Promotion {
    let api: Api<Promotion> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{stage} {revision} {phase:?}"), WAIT, || async {
        let list = api.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|p| {
            p.spec.stage == stage
                && p.spec.revision.id == revision
                && p.status.as_ref().is_some_and(|s| s.phase == phase)
        })
    })
    .await
}

async fn current_revision(apps: &Api<App>, not: Option<&str>) -> String {
    eventually("the App's revision", WAIT, || async {
        let app = apps.get("notes").await.ok()?;
        let id = app.status?.revision?.id;
        (Some(id.as_str()) != not).then_some(id)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_pipeline_the_operator_runs() {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").try_init();
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let test_ns = cp.namespace(&client, "status").await.unwrap();
    let ns = test_ns.name().to_string();
    let home = tempfile::tempdir().unwrap();
    let kubeconfig = cp.kubeconfig().display().to_string();
    let preview_ns = format!("{ns}-preview");
    let policy_name = format!("status-{ns}");

    // preview promotes at once; production waits for one approval that
    // nobody who may give it gives.
    let policies: Api<PromotionPolicy> = Api::all(client.clone());
    let policy: PromotionPolicy = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "PromotionPolicy",
        "metadata": {"name": policy_name},
        "spec": {
            "agents": {"logins": ["winky-agent[bot]"]},
            "approvers": {"logins": ["alice", "carol"]},
            "stages": [
                {"name": "preview", "namespace": "{app.namespace}-preview", "autoPromote": true},
                {"name": "production", "namespace": "{app.namespace}", "autoPromote": true,
                 "gates": {"approvals": {"count": 1}}},
            ],
        },
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();
    let operator = InProcessOperator::start(client.clone(), &ns, "status-operator");

    // Annotated as a GitSource would, without naming one: the operator reads
    // no approvals from GitHub, so the gate waits.
    let apps: Api<App> = Api::namespaced(client.clone(), &ns);
    let app: App = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": "notes", "annotations": {
            "winky.dev/git-commit": COMMIT,
            "winky.dev/pull-request": "7",
        }},
        "spec": {"image": "registry.example/notes:1", "port": 8080, "policy": policy_name},
    }))
    .unwrap();
    apps.create(&PostParams::default(), &app).await.unwrap();
    let r1 = current_revision(&apps, None).await;
    promotion_in(&client, &ns, "preview", &r1, Phase::Promoted).await;
    let waiting = promotion_in(&client, &ns, "production", &r1, Phase::AwaitingApproval).await;

    // An approval from the pull request's author, recorded as the operator
    // would record it: on record, never counted.
    let author_url = "https://github.com/acme/notes/pull/7#issuecomment-1001";
    Api::<Promotion>::namespaced(client.clone(), &ns)
        .patch_status(
            &waiting.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"approvals": [{
                "login": "bob", "source": "comment", "url": author_url,
                "at": "2025-05-01T10:06:00Z", "counted": "not counted: you opened this pull request",
            }]}})),
        )
        .await
        .unwrap();

    let json = status_json(home.path(), &kubeconfig, &ns, "notes").await;
    assert_eq!(json["app"], "notes");
    assert_eq!(json["namespace"], ns.as_str());
    assert_eq!(json["policy"], policy_name.as_str());
    assert_eq!(json["revision"]["id"], r1.as_str());
    assert_eq!(json["revision"]["commit"], COMMIT);
    assert_eq!(json["revision"]["pullRequest"], 7);
    let stages = json["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["preview", "production"], "in the policy's order");

    let preview = &stages[0];
    assert_eq!(preview["namespace"], preview_ns.as_str());
    assert_eq!(preview["running"]["revision"]["id"], r1.as_str());
    assert_eq!(preview["running"]["revision"]["commit"], COMMIT);
    assert_eq!(preview["running"]["phase"], "Promoted");
    assert_eq!(preview["waiting"], Value::Null);
    assert_eq!(preview["approvers"], Value::Null, "preview has no approvals gate");
    let events: Vec<&str> = preview["running"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.last(), Some(&"Promoted"), "{events:?}");

    let production = &stages[1];
    assert_eq!(production["namespace"], ns.as_str());
    assert_eq!(
        production["running"],
        Value::Null,
        "nothing was promoted into production"
    );
    let w = &production["waiting"];
    assert_eq!(w["name"], waiting.name_any().as_str());
    assert_eq!(w["revision"]["id"], r1.as_str());
    assert_eq!(w["revision"]["pullRequest"], 7);
    assert_eq!(w["phase"], "AwaitingApproval");
    assert_eq!(w["held"], false);
    assert_eq!(w["gates"][0]["name"], "approvals");
    assert_eq!(w["gates"][0]["state"], "Waiting");
    assert_eq!(w["gates"][0]["evidence"], "0 of 1 eligible approvals");
    assert_eq!(
        (w["approvals"]["have"].as_i64(), w["approvals"]["need"].as_i64()),
        (Some(0), Some(1))
    );
    let record = &w["approvals"]["records"][0];
    assert_eq!(record["login"], "bob");
    assert_eq!(record["counted"], false);
    assert_eq!(record["verdict"], "not counted: you opened this pull request");
    assert_eq!(record["url"], author_url);
    let approvers = &production["approvers"];
    assert_eq!(approvers["eligible"], "approver.login in policy.approvers");
    assert_eq!(approvers["defaultExpression"], true);
    assert_eq!(approvers["logins"], json!(["alice", "carol"]));
    assert_eq!(approvers["agents"], json!(["winky-agent[bot]"]));
    assert!(w["historyTotal"].as_u64().unwrap() >= 2, "{w}");

    let run = winky(
        home.path(),
        &["status", "notes", "-n", &ns, "--kubeconfig", &kubeconfig],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = run.stdout;
    println!("{text}");
    let short = &COMMIT[..8];
    for needle in [
        format!("App       notes (namespace {ns})"),
        format!("Policy    {policy_name}: preview → production"),
        format!("Revision  {r1}  commit {short}  PR #7"),
        format!("preview  (namespace {preview_ns}; no gates; auto-promote)"),
        format!("  running   {r1}  commit {short}  PR #7  since "),
        format!("production  (namespace {ns}; gates: approvals 1; auto-promote)"),
        "  running   nothing".to_string(),
        format!("  waiting   {r1}  commit {short}  PR #7  AwaitingApproval  not held"),
        "    approvals  Waiting  0 of 1 eligible approvals".to_string(),
        "    approvals 0 of 1".to_string(),
        "      bob  comment  2025-05-01 10:06:00Z  not counted: you opened this pull request".to_string(),
        "    may approve  approver.login in policy.approvers (the default)".to_string(),
        "policy approvers: alice, carol".to_string(),
        "never: the pull request's author, the agents winky-agent[bot], any GitHub App (*[bot])".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in:\n{text}");
    }
    assert!(
        text.find("preview  (").unwrap() < text.find("production  (").unwrap(),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour into a pipe");

    // A new revision: preview promotes it at once and opens production for
    // it, which supersedes r1 waiting there. Neither r1 Promotion is current.
    apps.patch(
        "notes",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"image": "registry.example/notes:2"}})),
    )
    .await
    .unwrap();
    let r2 = current_revision(&apps, Some(&r1)).await;
    promotion_in(&client, &ns, "production", &r1, Phase::Superseded).await;
    promotion_in(&client, &ns, "production", &r2, Phase::AwaitingApproval).await;
    promotion_in(&client, &ns, "preview", &r1, Phase::Retired).await;
    let json = status_json(home.path(), &kubeconfig, &ns, "notes").await;
    let stages = json["stages"].as_array().unwrap();
    assert_eq!(stages[0]["running"]["revision"]["id"], r2.as_str());
    assert_eq!(stages[1]["waiting"]["revision"]["id"], r2.as_str());
    assert_eq!(
        stages[1]["waiting"]["approvals"]["records"],
        json!([]),
        "r1's approvals stay with r1"
    );
    assert_eq!(stages[1]["running"], Value::Null);
    assert_eq!(stages[1]["rejected"], Value::Null);
    let run = winky(
        home.path(),
        &["status", "notes", "-n", &ns, "--kubeconfig", &kubeconfig],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stdout.contains(&r1),
        "retired and superseded r1 is not shown:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("  waiting   {r2}")),
        "{}",
        run.stdout
    );

    // An App that is not there: the namespace is named, and what it has.
    let run = winky(
        home.path(),
        &["status", "nope", "-n", &ns, "--kubeconfig", &kubeconfig],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!(
            "App \"nope\" not found in namespace \"{ns}\" on {}",
            cp.server()
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("Apps in {ns}: notes")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("kubectl get apps -A"), "{}", run.stderr);

    // An App without a policy: said, and not an error.
    let plain: App = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": "plain"},
        "spec": {"image": "registry.example/plain:1", "port": 8080},
    }))
    .unwrap();
    apps.create(&PostParams::default(), &plain).await.unwrap();
    let run = winky(
        home.path(),
        &["status", "plain", "-n", &ns, "--kubeconfig", &kubeconfig],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("follows no PromotionPolicy"),
        "{}",
        run.stdout
    );
    let json = status_json(home.path(), &kubeconfig, &ns, "plain").await;
    assert_eq!(
        (json["policy"].clone(), json["stages"].clone()),
        (Value::Null, json!([]))
    );

    // An App naming a policy that does not exist.
    let orphan: App = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": "orphan"},
        "spec": {"image": "registry.example/orphan:1", "port": 8080, "policy": format!("gone-{ns}")},
    }))
    .unwrap();
    apps.create(&PostParams::default(), &orphan).await.unwrap();
    let run = winky(
        home.path(),
        &["status", "orphan", "-n", &ns, "--kubeconfig", &kubeconfig],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains(&format!(
            "follows PromotionPolicy \"gone-{ns}\", which does not exist"
        )),
        "{}",
        run.stderr
    );

    operator.stop().await.unwrap();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&preview_ns, &DeleteParams::default()).await;
    let _ = policies.delete(&policy_name, &DeleteParams::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_server_it_cannot_reach() {
    let cp = ControlPlane::shared();
    let home = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nobody answers there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("https://127.0.0.1:{port}");
    let kubeconfig = std::fs::read_to_string(cp.kubeconfig())
        .unwrap()
        .replace(cp.server().trim_end_matches('/'), &dead);
    assert!(kubeconfig.contains(&dead), "the server was replaced");
    let path = home.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();

    let run = winky(
        home.path(),
        &[
            "status",
            "notes",
            "-n",
            "default",
            "--kubeconfig",
            path.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr
            .contains(&format!("cannot reach the Kubernetes API server at {dead}: ")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.to_lowercase().contains("connect"), "{}", run.stderr);

    // No kubeconfig at all: said so, with where one is looked for.
    let run = winky(home.path(), &["status", "notes"]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stderr.contains("cannot load the kubeconfig"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--kubeconfig"), "{}", run.stderr);
}
