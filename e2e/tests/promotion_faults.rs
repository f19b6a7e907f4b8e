//! Promotions under faults, end to end: the real `winky-operator` binary
//! killed (SIGKILL) at random points while twenty Apps are promoted through
//! three stages on soak and approval gates. Each run ends with every stage
//! promoted once, every approval on record, and every command comment
//! answered once. (kube-apiserver restarted mid-promotion:
//! `apiserver_restart.rs`.)
//!
//! `WINKY_FAULT_SEED=<n>` replays the kill points of a failed run (the seed is
//! printed).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::Client;
use winky_crds::App;
use winky_crds::promotion::{Phase, Promotion};
use winky_e2e::git::GitServer;
use winky_e2e::github::{GitHubDouble, validate_exchanges};
use winky_e2e::{ControlPlane, OperatorProcess, apply_json, apply_policy, eventually, promotions};

const TOKEN: &str = "ghs_faults_token";
const APPS: usize = 20;

/// A small deterministic generator: the kill points of a run follow from its seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// A policy: preview → staging (soak 1s) → production (soak 1s and one
/// approval by alice), all automatic.
async fn policy(client: &Client, name: &str) {
    let spec = serde_json::json!({
        "approvers": {"logins": ["alice"]},
        "stages": [
            {"name": "preview", "autoPromote": true},
            {"name": "staging", "autoPromote": true, "gates": {"soak": "1s"}},
            {"name": "production", "autoPromote": true,
             "gates": {"soak": "1s", "approvals": {"count": 1}}},
        ],
    });
    apply_policy(client, name, spec).await;
}

fn phase(p: &Promotion) -> Phase {
    p.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn count(p: &Promotion, event: &str) -> usize {
    p.status
        .iter()
        .flat_map(|s| s.history.iter())
        .filter(|h| h.event == event)
        .count()
}

/// The GitHub side: one pull request per App (opened by dana), read
/// through a suspended GitSource that only names the repository.
struct GitHubSide {
    double: GitHubDouble,
    _git: GitServer,
}

async fn github_side(client: &Client, ns: &str, dir: &Path) -> GitHubSide {
    let git = GitServer::start(dir).unwrap();
    let bare = git.create("apps", &[("README.md", "apps\n")]).unwrap();
    for i in 0..APPS {
        let ok = Command::new("git")
            .args([
                "-C",
                &bare.display().to_string(),
                "branch",
                &format!("feat-{i}"),
                "HEAD",
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    let double = GitHubDouble::start("acme", "apps", TOKEN, &bare).await.unwrap();
    for i in 0..APPS {
        let number = double.open_pull(&format!("feat-{i}"), "main", "dana", &format!("feat: app {i}"));
        assert_eq!(number, i as u64 + 1);
    }
    let _: k8s_openapi::api::core::v1::Secret = apply_json(
        client,
        ns,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "github-token"},
                           "stringData": {"token": TOKEN}}),
    )
    .await;
    let _: winky_crds::GitSource = apply_json(
        client,
        ns,
        serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "GitSource", "metadata": {"name": "apps"},
            "spec": {
                "url": git.url("apps"), "branch": "main", "path": "deploy", "suspend": true,
                "github": {"owner": "acme", "repo": "apps", "apiUrl": double.url(),
                           "tokenSecretRef": {"name": "github-token", "key": "token"}},
            },
        }),
    )
    .await;
    GitHubSide { double, _git: git }
}

fn app(i: usize, ns: &str, policy: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "App",
        "metadata": {"name": format!("app-{i}"), "annotations": {
            "winky.dev/gitsource": format!("{ns}/apps"),
            "winky.dev/pull-request": (i + 1).to_string(),
            "winky.dev/git-commit": format!("{:040x}", i + 1),
        }},
        "spec": {"image": format!("app-{i}:1"), "port": 8080, "policy": policy},
    })
}

/// Writes `/approve` as alice on the pull request of every production
/// Promotion that has none yet; returns how many it wrote.
async fn approve_waiting(
    client: &Client,
    ns: &str,
    github: &GitHubDouble,
    approved: &std::sync::Mutex<BTreeSet<u64>>,
) -> usize {
    let mut wrote = 0;
    for p in promotions(client, ns).await {
        let Some(number) = p.spec.revision.pull_request.map(|n| n as u64) else {
            continue;
        };
        if p.spec.stage == "production"
            && p.metadata.creation_timestamp.is_some()
            && approved.lock().unwrap().insert(number)
        {
            github.add_comment(number, "alice", "/approve");
            wrote += 1;
        }
    }
    wrote
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_promotions_end_right_with_the_operator_killed_at_random_points() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "faults").await.unwrap();
    let ns = ns.name().to_string();
    let seed = std::env::var("WINKY_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("WINKY_FAULT_SEED={seed}");
    let mut rng = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let github = github_side(&client, &ns, dir.path()).await;
    let policy_name = format!("{ns}-faults");
    policy(&client, &policy_name).await;
    for i in 0..APPS {
        let _: App = apply_json(&client, &ns, app(i, &ns, &policy_name)).await;
    }

    // Twenty kills, each after 0.2–1.5 s of work: reconciles, status writes,
    // Promotion creations and replies are cut wherever they are.
    let log = cp.dir().join(format!("{ns}-operator.log"));
    let approved = std::sync::Mutex::new(BTreeSet::new());
    let started = Instant::now();
    for _ in 0..20 {
        let operator = OperatorProcess::start(cp.kubeconfig(), &ns, &log);
        let life = Duration::from_millis(200 + rng.below(1300));
        let until = Instant::now() + life;
        while Instant::now() < until {
            approve_waiting(&client, &ns, &github.double, &approved).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(operator);
    }
    // The last one lives: everything ends.
    let _operator = OperatorProcess::start(cp.kubeconfig(), &ns, &log);
    let all = eventually(
        "every App promoted into production",
        Duration::from_secs(120),
        || async {
            approve_waiting(&client, &ns, &github.double, &approved).await;
            let all = promotions(&client, &ns).await;
            let done = all
                .iter()
                .filter(|p| p.spec.stage == "production" && phase(p) == Phase::Promoted)
                .count();
            (done == APPS).then_some(all)
        },
    )
    .await;
    println!(
        "{APPS} Apps through 3 stages with 20 kills: {:?}",
        started.elapsed()
    );

    // Exactly one Promotion per App and stage, each promoted once, none
    // rejected or superseded, and the soak held across the kills.
    assert_eq!(
        all.len(),
        APPS * 3,
        "{:#?}",
        all.iter().map(|p| p.metadata.name.clone()).collect::<Vec<_>>()
    );
    for p in &all {
        let name = p.metadata.name.clone().unwrap_or_default();
        assert_eq!(phase(p), Phase::Promoted, "{name}: {:?}", p.status);
        assert_eq!(count(p, "Promoted"), 1, "{name} promoted twice: {:?}", p.status);
        assert_eq!(count(p, "Created"), 1, "{name}: {:?}", p.status);
    }
    // No approval lost: alice's, counted, on every production Promotion.
    for p in all.iter().filter(|p| p.spec.stage == "production") {
        let approvals = &p.status.as_ref().unwrap().approvals;
        assert!(
            approvals
                .iter()
                .any(|a| a.login == "alice" && a.counted.as_deref() == Some("counted")),
            "{:?}: {approvals:?}",
            p.metadata.name
        );
    }
    // Every /approve answered, exactly once, even when the operator was
    // killed between its record and its reply.
    let answers = |comments: &[winky_e2e::github::IssueComment], id: u64| {
        let marker = format!("<!-- winky:reply:{id} -->");
        comments.iter().filter(|c| c.body.contains(&marker)).count()
    };
    eventually("a reply to every /approve", Duration::from_secs(30), || async {
        (1..=APPS as u64)
            .all(|number| {
                let comments = github.double.comments(number);
                comments
                    .iter()
                    .filter(|c| c.user == "alice")
                    .all(|c| answers(&comments, c.id) >= 1)
            })
            .then_some(())
    })
    .await;
    for number in 1..=APPS as u64 {
        let comments = github.double.comments(number);
        for c in comments.iter().filter(|c| c.user == "alice") {
            let n = answers(&comments, c.id);
            assert_eq!(n, 1, "comment {} on #{number} answered {n} times", c.id);
        }
    }
    let problems = validate_exchanges(&github.double.exchanges()).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}
