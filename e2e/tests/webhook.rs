//! The GitHub webhook receiver in the operator, against the real
//! kube-apiserver and a real `git daemon`: a signed push to the protected
//! branch is applied at once (the interval is 10 minutes); unsigned, forged,
//! replayed, oversized, malformed, off-branch and flooding deliveries change
//! nothing; pull-request comments are recorded. The deliveries are sent with
//! blocking I/O, so the operator runs on other worker threads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use winky_crds::{App, GitSource};
use winky_e2e::git::{GitServer, WorkTree};
use winky_e2e::gitops::app_yaml;
use winky_e2e::webhook::{deliver, delivery_id, example, post, push_payload, signature};
use winky_e2e::{ControlPlane, InProcessOperator, TestNamespace, apply_json, eventually};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &[u8] = b"the-webhook-secret-of-this-test";

struct Env {
    client: Client,
    ns: TestNamespace,
    operator: InProcessOperator,
    git: GitServer,
    work: WorkTree,
    url: String,
    _dir: tempfile::TempDir,
}

async fn env(prefix: &str) -> Env {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, prefix).await.unwrap();
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let operator =
        InProcessOperator::start_with(client.clone(), ns.name(), &format!("{prefix}-operator"), |o| {
            o.webhook_addr = Some(addr);
        });
    let dir = tempfile::tempdir().unwrap();
    let git = GitServer::start(dir.path()).unwrap();
    git.create("apps", &[("deploy/notes.yaml", &app_yaml("notes", "notes:1"))])
        .unwrap();
    let work = WorkTree::clone(&git.url("apps"), &dir.path().join("work")).unwrap();
    let _: Secret = apply_json(
        &client,
        ns.name(),
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "github-webhook"},
            "stringData": {"secret": String::from_utf8_lossy(SECRET)},
        }),
    )
    .await;
    let _: GitSource = apply_json(
        &client,
        ns.name(),
        serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "GitSource", "metadata": {"name": "apps"},
            "spec": {
                "url": git.url("apps"), "branch": "main", "path": "deploy",
                // Only the webhook can make a new commit arrive within the test.
                "interval": "10m",
                "webhook": {"secretRef": {"name": "github-webhook", "key": "secret"}},
            },
        }),
    )
    .await;
    let url = format!("http://{addr}/hooks/github/{}/apps", ns.name());
    let env = Env {
        client,
        ns,
        operator,
        git,
        work,
        url,
        _dir: dir,
    };
    let first = env.work.head().unwrap();
    applied(&env, &first).await;
    env
}

async fn applied(env: &Env, commit: &str) {
    let api: Api<GitSource> = Api::namespaced(env.client.clone(), env.ns.name());
    eventually(&format!("commit {commit} applied"), WAIT, || async {
        let source = api.get("apps").await.ok()?;
        (source.status?.last_applied_commit.as_deref() == Some(commit)).then_some(())
    })
    .await;
}

/// Every object of the test namespace that the operator may write, by resourceVersion.
async fn state(env: &Env) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let sources: Api<GitSource> = Api::namespaced(env.client.clone(), env.ns.name());
    for s in sources.list(&ListParams::default()).await.unwrap() {
        out.insert(
            format!("GitSource/{}", s.name_any()),
            s.resource_version().unwrap_or_default(),
        );
    }
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    for a in apps.list(&ListParams::default()).await.unwrap() {
        out.insert(
            format!("App/{}", a.name_any()),
            a.resource_version().unwrap_or_default(),
        );
    }
    out
}

fn push_of(env: &Env, before: &str, after: &str) -> Vec<u8> {
    let _ = &env.git;
    push_payload("acme/apps", "main", before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_push_is_applied_at_once() {
    let env = env("hook-push").await;
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    let mut took = Vec::new();
    for round in 2..=6 {
        let before = env.work.head().unwrap();
        env.work
            .write("deploy/notes.yaml", &app_yaml("notes", &format!("notes:{round}")))
            .unwrap();
        let after = env.work.commit_and_push(&format!("feat: notes {round}")).unwrap();
        let started = Instant::now();
        let answer = deliver(&env.url, SECRET, "push", &push_of(&env, &before, &after)).unwrap();
        assert_eq!(answer.status, 202, "{answer:?}");
        applied(&env, &after).await;
        took.push(started.elapsed());
        assert_eq!(
            apps.get("notes").await.unwrap().spec.image,
            format!("notes:{round}")
        );
    }
    took.sort();
    println!(
        "push delivered → commit applied over {} pushes: p50 {:?}, max {:?}",
        took.len(),
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert_eq!(
        env.operator
            .metric("winky_webhook_deliveries_total{event=\"push\",result=\"accepted\"}"),
        5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_replayed_oversized_malformed_and_flooding_deliveries_change_nothing() {
    let env = env("hook-abuse").await;
    let head = env.work.head().unwrap();
    let body = push_of(&env, &head, &head);
    // The App controller writes the App's status on its own schedule: wait
    // until nothing moves for two seconds before taking the picture.
    let mut before = state(&env).await;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = state(&env).await;
        if now != before {
            before = now;
            quiet_since = Instant::now();
        }
    }

    let unsigned = post(
        &env.url,
        &[("X-GitHub-Event", "push"), ("X-GitHub-Delivery", &delivery_id())],
        &body,
    )
    .unwrap();
    assert_eq!(unsigned.status, 401, "{unsigned:?}");
    let forged = post(
        &env.url,
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", &delivery_id()),
            (
                "X-Hub-Signature-256",
                "sha256=0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(forged.status, 401, "{forged:?}");
    let foreign = deliver(&env.url, b"another secret", "push", &body).unwrap();
    assert_eq!(foreign.status, 401, "{foreign:?}");

    // A valid delivery once, then the same delivery again.
    let id = delivery_id();
    let sig = signature(SECRET, &body);
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", id.as_str()),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    assert_eq!(post(&env.url, &headers, &body).unwrap().status, 202);
    let replayed = post(&env.url, &headers, &body).unwrap();
    assert_eq!(replayed.status, 409, "{replayed:?}");

    let huge = vec![b' '; 2 << 20];
    let oversized = deliver(&env.url, SECRET, "push", &huge).unwrap();
    assert_eq!(oversized.status, 413, "{oversized:?}");
    let malformed = deliver(&env.url, SECRET, "push", b"{\"ref\": ").unwrap();
    assert_eq!(malformed.status, 400, "{malformed:?}");
    let other_branch = deliver(
        &env.url,
        SECRET,
        "push",
        &push_payload("acme/apps", "feature", &head, &head),
    )
    .unwrap();
    assert_eq!(other_branch.status, 200, "{other_branch:?}");
    assert!(other_branch.body.contains("ignored"), "{other_branch:?}");
    let unknown = deliver(&env.url.replace("/apps", "/nothing-here"), SECRET, "push", &body).unwrap();
    assert_eq!(unknown.status, 404, "{unknown:?}");

    // A flood: past the burst, 429.
    let mut statuses = BTreeMap::new();
    for _ in 0..60 {
        let answer = deliver(&env.url, b"flood", "push", &body).unwrap();
        *statuses.entry(answer.status).or_insert(0) += 1;
    }
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "{statuses:?}");

    // The valid delivery's sync of the applied commit had nothing to change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(state(&env).await, before, "no object changed");
    let m = |result: &str| {
        env.operator.metric(&format!(
            "winky_webhook_deliveries_total{{event=\"push\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(m("unsigned"), 1.0);
    assert_eq!(m("replayed"), 1.0);
    assert!(m("bad_signature") >= 2.0);
    assert!(m("rate_limited") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_request_comments_and_reviews_are_recorded() {
    let env = env("hook-chatops").await;
    let comment = serde_json::to_vec(&example("issue_comment-created.json")).unwrap();
    assert_eq!(
        deliver(&env.url, SECRET, "issue_comment", &comment)
            .unwrap()
            .status,
        202
    );
    let review = serde_json::to_vec(&example("pull_request_review-submitted.json")).unwrap();
    assert_eq!(
        deliver(&env.url, SECRET, "pull_request_review", &review)
            .unwrap()
            .status,
        202
    );
    let events: Api<Event> = Api::namespaced(env.client.clone(), env.ns.name());
    let notes = eventually("two WebhookReceived Events", WAIT, || async {
        let notes: Vec<String> = events
            .list(&ListParams::default().fields("involvedObject.name=apps"))
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("WebhookReceived"))
            .filter_map(|e| e.message)
            .collect();
        (notes.len() == 2).then_some(notes)
    })
    .await;
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("issue_comment created by Codertocat")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("pull_request_review submitted by Codertocat on #2")),
        "{notes:?}"
    );
}
