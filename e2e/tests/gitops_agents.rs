//! Agents held to their lane, end to end: a real `git daemon`, the real
//! kube-apiserver, the operator with its webhook receiver, and the GitHub
//! double (schema-checked). Only a commit a person merged through a pull
//! request is applied; an agent's push to main or an agent's merge is
//! refused with a condition, an Event and a failing `winky/sync`; an agent's
//! pull request from the wrong branch, or touching `policies/`, fails
//! `winky/policy` with one comment that is updated, not repeated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::ListParams;
use kube::{Api, Client};
use winky_crds::{App, GitSource, PromotionPolicy};
use winky_e2e::git::{GitServer, git};
use winky_e2e::github::{GitHubDouble, validate_exchanges};
use winky_e2e::webhook::{PullRequestEvent, deliver, pull_request_payload, push_payload};
use winky_e2e::{ControlPlane, InProcessOperator, TestNamespace, apply_json, eventually};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &[u8] = b"agents-webhook-secret";
const TOKEN: &str = "ghs_operator_token_of_this_test";
const AGENT: &str = "winky-agent[bot]";

struct Env {
    client: Client,
    ns: TestNamespace,
    _operator: InProcessOperator,
    _git: GitServer,
    github: GitHubDouble,
    work: PathBuf,
    hook: String,
    _dir: tempfile::TempDir,
}

fn app_yaml(image: &str) -> String {
    format!(
        "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata:\n  name: notes\nspec:\n  image: {image}\n  port: 8080\n"
    )
}

fn run(dir: &Path, args: &[&str]) -> String {
    git(dir, args).unwrap().trim().to_string()
}

/// Pushes `branch` with `files` changed on top of main; returns its head.
fn push_branch(work: &Path, branch: &str, files: &[(&str, &str)]) -> String {
    run(work, &["checkout", "--quiet", "-B", branch, "origin/main"]);
    for (path, content) in files {
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    run(work, &["add", "--all"]);
    run(work, &["commit", "--quiet", "-m", &format!("feat: {branch}")]);
    run(
        work,
        &[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("HEAD:refs/heads/{branch}"),
        ],
    );
    run(work, &["rev-parse", "HEAD"])
}

/// Merges `branch` into main with a merge commit, as GitHub's merge button does; returns it.
fn merge_branch(work: &Path, branch: &str) -> String {
    run(work, &["fetch", "--quiet", "origin"]);
    run(work, &["checkout", "--quiet", "-B", "main", "origin/main"]);
    run(
        work,
        &[
            "merge",
            "--quiet",
            "--no-ff",
            "-m",
            &format!("Merge {branch}"),
            &format!("origin/{branch}"),
        ],
    );
    run(work, &["push", "--quiet", "origin", "HEAD:main"]);
    run(work, &["rev-parse", "HEAD"])
}

impl Env {
    async fn start(prefix: &str) -> Env {
        let cp = ControlPlane::shared();
        let client = cp.client().await.unwrap();
        let ns = cp.namespace(&client, prefix).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let git_server = GitServer::start(dir.path()).unwrap();
        let bare = git_server.create("apps", &[("README.md", "apps\n")]).unwrap();
        let github = GitHubDouble::start("acme", "apps", TOKEN, &bare).await.unwrap();
        let work = dir.path().join("work");
        run(
            dir.path(),
            &[
                "clone",
                "--quiet",
                &git_server.url("apps"),
                &work.display().to_string(),
            ],
        );
        // The agents of this test, in a policy of its own (cluster-scoped:
        // every policy's agents count).
        let _: PromotionPolicy = {
            let policy: PromotionPolicy = serde_json::from_value(serde_json::json!({
                "apiVersion": "winky.dev/v1alpha1", "kind": "PromotionPolicy",
                "metadata": {"name": format!("{}-agents", ns.name())},
                "spec": {
                    "agents": {"logins": [AGENT], "branchPattern": "^winky/(feat|fix)-[a-z0-9]+(-[a-z0-9]+){0,4}-[0-9a-f]{6,}$"},
                    "approvers": {"logins": ["alice"]},
                    "stages": [{"name": "preview", "gates": {"emulator": true}}],
                },
            }))
            .unwrap();
            Api::<PromotionPolicy>::all(client.clone())
                .patch(
                    &policy.metadata.name.clone().unwrap(),
                    &kube::api::PatchParams::apply("e2e").force(),
                    &kube::api::Patch::Apply(&policy),
                )
                .await
                .unwrap()
        };
        for (name, key, value) in [
            (
                "github-webhook",
                "secret",
                String::from_utf8_lossy(SECRET).to_string(),
            ),
            ("github-token", "token", TOKEN.to_string()),
        ] {
            let _: Secret = apply_json(
                &client,
                ns.name(),
                serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: value}}),
            )
            .await;
        }
        let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let operator =
            InProcessOperator::start_with(client.clone(), ns.name(), &format!("{prefix}-operator"), |o| {
                o.webhook_addr = Some(addr);
            });
        let _: GitSource = apply_json(
            &client,
            ns.name(),
            serde_json::json!({
                "apiVersion": "winky.dev/v1alpha1", "kind": "GitSource", "metadata": {"name": "apps"},
                "spec": {
                    "url": git_server.url("apps"), "branch": "main", "path": "deploy", "interval": "10m",
                    "allowEmpty": true,
                    "webhook": {"secretRef": {"name": "github-webhook", "key": "secret"}},
                    "github": {"owner": "acme", "repo": "apps", "apiUrl": github.url(),
                               "tokenSecretRef": {"name": "github-token", "key": "token"}},
                },
            }),
        )
        .await;
        let hook = format!("http://{addr}/hooks/github/{}/apps", ns.name());
        Env {
            client,
            ns,
            _operator: operator,
            _git: git_server,
            github,
            work,
            hook,
            _dir: dir,
        }
    }

    fn push_delivered(&self, before: &str, after: &str) {
        let answer = deliver(
            &self.hook,
            SECRET,
            "push",
            &push_payload("acme/apps", "main", before, after),
        )
        .unwrap();
        assert_eq!(answer.status, 202, "{answer:?}");
    }

    async fn source_where(&self, what: &str, check: impl Fn(&GitSource) -> bool) -> GitSource {
        let api: Api<GitSource> = Api::namespaced(self.client.clone(), self.ns.name());
        eventually(what, WAIT, || async {
            let source = api.get("apps").await.ok()?;
            check(&source).then_some(source)
        })
        .await
    }

    async fn stalled_with(&self, reason: &str) -> GitSource {
        self.source_where(&format!("Stalled {reason}"), |s| {
            s.status
                .iter()
                .flat_map(|s| s.conditions.iter())
                .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == reason)
        })
        .await
    }

    async fn applied(&self, commit: &str) -> GitSource {
        self.source_where(&format!("{commit} applied"), |s| {
            s.status.as_ref().and_then(|s| s.last_applied_commit.as_deref()) == Some(commit)
        })
        .await
    }

    /// A person's merge of an agent's pull request: the commit that gets applied.
    async fn merged_by(&self, branch: &str, files: &[(&str, &str)], merger: &str) -> (u64, String) {
        let before = run(&self.work, &["rev-parse", "origin/main"]);
        push_branch(&self.work, branch, files);
        let number = self
            .github
            .open_pull(branch, "main", AGENT, &format!("feat: {branch}"));
        let merge = merge_branch(&self.work, branch);
        self.github.merge_pull(number, merger, &merge);
        self.push_delivered(&before, &merge);
        (number, merge)
    }

    fn status_of(&self, sha: &str, context: &str) -> Option<(String, String)> {
        self.github
            .statuses()
            .into_iter()
            .rev()
            .find(|s| s.sha == sha && s.context == context)
            .map(|s| (s.state, s.description.unwrap_or_default()))
    }

    /// The commit status `context` of `sha` once set: the operator writes the
    /// GitSource's status first and GitHub's next.
    async fn status_set(&self, sha: &str, context: &str) -> (String, String) {
        eventually(&format!("{context} on {sha}"), WAIT, || async {
            self.status_of(sha, context)
        })
        .await
    }

    /// `login` writes `body` on pull request `number`, and GitHub tells the
    /// operator (a signed `issue_comment` delivery). Returns the comment's id.
    fn comment(&self, number: u64, login: &str, body: &str) -> u64 {
        let id = self.github.add_comment(number, login, body);
        self.comment_delivered(number, id, login, body, "created");
        id
    }

    /// `login` edits comment `id` to read `body`, and GitHub tells the operator.
    fn edit(&self, number: u64, id: u64, login: &str, body: &str) {
        self.github.edit_comment(id, body);
        self.comment_delivered(number, id, login, body, "edited");
    }

    fn comment_delivered(&self, number: u64, id: u64, login: &str, body: &str, action: &str) {
        let mut payload = winky_e2e::webhook::example("issue_comment-created.json");
        payload["action"] = serde_json::json!(action);
        payload["issue"]["number"] = serde_json::json!(number);
        payload["issue"]["pull_request"] = serde_json::json!({
            "url": format!("https://api.github.com/repos/acme/apps/pulls/{number}"),
            "html_url": format!("https://github.com/acme/apps/pull/{number}"),
            "diff_url": format!("https://github.com/acme/apps/pull/{number}.diff"),
            "patch_url": format!("https://github.com/acme/apps/pull/{number}.patch"),
        });
        payload["sender"]["login"] = serde_json::json!(login);
        payload["comment"]["id"] = serde_json::json!(id);
        payload["comment"]["body"] = serde_json::json!(body);
        let answer = deliver(
            &self.hook,
            SECRET,
            "issue_comment",
            &serde_json::to_vec(&payload).unwrap(),
        )
        .unwrap();
        assert_eq!(answer.status, 202, "{answer:?}");
    }

    /// The operator's reply to comment `id`, once posted.
    async fn reply_to(&self, number: u64, id: u64, says: &str) -> String {
        let marker = format!("<!-- winky:reply:{id} -->");
        eventually(
            &format!("a reply to comment {id} saying {says:?}"),
            WAIT,
            || async {
                self.github
                    .comments(number)
                    .into_iter()
                    .find(|c| c.body.contains(&marker) && c.body.contains(says))
                    .map(|c| c.body)
            },
        )
        .await
    }

    /// Replaces the stages (and approvers) of this test's policy.
    async fn set_policy(&self, spec: serde_json::Value) -> String {
        let policy = format!("{}-agents", self.ns.name());
        winky_e2e::apply_policy(&self.client, &policy, spec).await;
        policy
    }

    async fn warning(&self, reason: &str) -> String {
        let events: Api<Event> = Api::namespaced(self.client.clone(), self.ns.name());
        eventually(&format!("a {reason} Warning"), WAIT, || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
                .and_then(|e| e.message)
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_what_a_person_merged_is_applied() {
    let env = Env::start("agents-merge").await;
    // The first commit was pushed straight to main: not applied.
    let first = run(&env.work, &["rev-parse", "origin/main"]);
    let stalled = env.stalled_with("NotMerged").await;
    assert_eq!(
        stalled.status.unwrap().last_attempted_commit.as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        Some(env.status_set(&first, "winky/sync").await.0.as_str()),
        Some("failure")
    );

    // An agent's pull request, merged by a person: applied, winky/sync success.
    let (_, merge) = env
        .merged_by(
            "winky/feat-notes-app-a1b2c3d4",
            &[("deploy/notes.yaml", &app_yaml("notes:1"))],
            "alice",
        )
        .await;
    env.applied(&merge).await;
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:1");
    let (state, description) = env.status_set(&merge, "winky/sync").await;
    assert_eq!(state, "success", "{description}");
    assert!(description.contains("1 objects"), "{description}");

    // The agent pushes straight to main: refused, nothing of it applied.
    let before = merge.clone();
    run(&env.work, &["checkout", "--quiet", "-B", "main", "origin/main"]);
    std::fs::write(env.work.join("deploy/notes.yaml"), app_yaml("agent-pushed:9")).unwrap();
    run(&env.work, &["commit", "--quiet", "-am", "fix: straight to main"]);
    run(&env.work, &["push", "--quiet", "origin", "HEAD:main"]);
    let direct = run(&env.work, &["rev-parse", "HEAD"]);
    env.push_delivered(&before, &direct);
    let stalled = env.stalled_with("NotMerged").await;
    let status = stalled.status.unwrap();
    assert_eq!(status.last_attempted_commit.as_deref(), Some(direct.as_str()));
    assert_eq!(
        status.last_applied_commit.as_deref(),
        Some(merge.as_str()),
        "the merge stays applied"
    );
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:1");
    assert_eq!(
        Some(env.status_set(&direct, "winky/sync").await.0.as_str()),
        Some("failure")
    );
    let warning = env.warning("NotMerged").await;
    assert!(
        warning.contains("did not come from a merged pull request"),
        "{warning}"
    );

    // A person's fix on top, merged: applied again.
    let (_, fixed) = env
        .merged_by(
            "winky/fix-notes-image-b2c3d4e5",
            &[("deploy/notes.yaml", &app_yaml("notes:2"))],
            "alice",
        )
        .await;
    env.applied(&fixed).await;
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:2");

    let problems = validate_exchanges(&env.github.exchanges()).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agents_merge_is_refused() {
    let env = Env::start("agents-self-merge").await;
    env.stalled_with("NotMerged").await;
    let (number, merge) = env
        .merged_by(
            "winky/feat-notes-app-c3d4e5f6",
            &[("deploy/notes.yaml", &app_yaml("notes:1"))],
            AGENT,
        )
        .await;
    let stalled = env.stalled_with("MergedByAgent").await;
    assert_eq!(
        stalled.status.unwrap().last_attempted_commit.as_deref(),
        Some(merge.as_str())
    );
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    assert!(
        apps.get_opt("notes").await.unwrap().is_none(),
        "nothing of it applied"
    );
    let (state, description) = env.status_set(&merge, "winky/sync").await;
    assert_eq!(state, "failure");
    assert!(description.contains("MergedByAgent"), "{description}");
    let warning = env.warning("MergedByAgent").await;
    assert!(
        warning.contains(&format!("pull request #{number} was merged by the agent {AGENT}")),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agents_pull_request_is_held_to_its_branch_and_off_the_rules() {
    let env = Env::start("agents-pulls").await;
    // The operator has seen the GitSource once it judged its first commit.
    env.stalled_with("NotMerged").await;
    let deliver_pull = |action: &str, number: u64, head_ref: &str, head_sha: &str| {
        let body = pull_request_payload(
            "acme/apps",
            &PullRequestEvent {
                action,
                number,
                author: AGENT,
                head_ref,
                head_sha,
                base_ref: "main",
            },
        );
        let answer = deliver(&env.hook, SECRET, "pull_request", &body).unwrap();
        assert_eq!(answer.status, 202, "{answer:?}");
    };
    let policy_comments = |number: u64| {
        env.github
            .comments(number)
            .into_iter()
            .filter(|c| c.body.contains("<!-- winky:policy -->"))
            .collect::<Vec<_>>()
    };

    // From a branch outside the pattern.
    let head = push_branch(
        &env.work,
        "feature/sneaky",
        &[("deploy/notes.yaml", &app_yaml("notes:1"))],
    );
    let sneaky = env
        .github
        .open_pull("feature/sneaky", "main", AGENT, "feat: sneaky");
    deliver_pull("opened", sneaky, "feature/sneaky", &head);
    let (state, description) = eventually("winky/policy on the sneaky branch", WAIT, || async {
        env.status_of(&head, "winky/policy")
    })
    .await;
    assert_eq!(state, "failure");
    assert!(
        description.contains("does not match the agents' branch pattern"),
        "{description}"
    );
    let comments = eventually("the policy comment", WAIT, || async {
        let c = policy_comments(sneaky);
        (!c.is_empty()).then_some(c)
    })
    .await;
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("❌"), "{}", comments[0].body);

    // Touching policies/ from a good branch.
    let branch = "winky/feat-notes-policy-d4e5f6a7";
    let head = push_branch(
        &env.work,
        branch,
        &[(
            "policies/lax.yaml",
            "apiVersion: winky.dev/v1alpha1\nkind: PromotionPolicy\nmetadata:\n  name: lax\n",
        )],
    );
    let touching = env
        .github
        .open_pull(branch, "main", AGENT, "chore: relax the policy");
    deliver_pull("opened", touching, branch, &head);
    let (state, description) = eventually("winky/policy on policies/", WAIT, || async {
        env.status_of(&head, "winky/policy")
    })
    .await;
    assert_eq!(state, "failure");
    assert!(description.contains("policies/lax.yaml"), "{description}");

    // A clean push to that branch: the status passes and the comment is updated, not repeated.
    run(&env.work, &["rm", "--quiet", "-r", "policies"]);
    std::fs::create_dir_all(env.work.join("deploy")).unwrap();
    std::fs::write(env.work.join("deploy/notes.yaml"), app_yaml("notes:1")).unwrap();
    run(&env.work, &["add", "--all"]);
    run(&env.work, &["commit", "--quiet", "-m", "feat: notes instead"]);
    run(
        &env.work,
        &[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("HEAD:refs/heads/{branch}"),
        ],
    );
    let clean = run(&env.work, &["rev-parse", "HEAD"]);
    deliver_pull("synchronize", touching, branch, &clean);
    let (state, _) = eventually("winky/policy on the clean head", WAIT, || async {
        env.status_of(&clean, "winky/policy")
    })
    .await;
    assert_eq!(state, "success");
    let comments = policy_comments(touching);
    assert_eq!(comments.len(), 1, "updated, not repeated");
    assert!(comments[0].body.contains("✅"), "{}", comments[0].body);
    env.warning("AgentPolicyFailed").await;

    let problems = validate_exchanges(&env.github.exchanges()).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_pull_request_gets_a_plan_that_follows_its_pushes() {
    let env = Env::start("agents-plan").await;
    env.stalled_with("NotMerged").await;
    let old_app = app_yaml("old:1").replace("name: notes", "name: old");
    let (_, merge) = env
        .merged_by(
            "winky/feat-notes-old-e5f6a7b8",
            &[
                ("deploy/notes.yaml", &app_yaml("notes:1")),
                ("deploy/old.yaml", &old_app),
            ],
            "alice",
        )
        .await;
    env.applied(&merge).await;

    // A person's pull request: notes changed, shop added, old removed.
    run(
        &env.work,
        &["checkout", "--quiet", "-B", "feature/shop", "origin/main"],
    );
    std::fs::write(env.work.join("deploy/notes.yaml"), app_yaml("notes:2")).unwrap();
    std::fs::write(
        env.work.join("deploy/shop.yaml"),
        app_yaml("shop:1").replace("name: notes", "name: shop"),
    )
    .unwrap();
    run(&env.work, &["rm", "--quiet", "deploy/old.yaml"]);
    run(&env.work, &["add", "--all"]);
    run(&env.work, &["commit", "--quiet", "-m", "feat: shop"]);
    run(
        &env.work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/feature/shop"],
    );
    let head = run(&env.work, &["rev-parse", "HEAD"]);
    let number = env
        .github
        .open_pull("feature/shop", "main", "alice", "feat: shop");
    let deliver_pull = |action: &str, head_sha: &str| {
        let body = pull_request_payload(
            "acme/apps",
            &PullRequestEvent {
                action,
                number,
                author: "alice",
                head_ref: "feature/shop",
                head_sha,
                base_ref: "main",
            },
        );
        assert_eq!(
            deliver(&env.hook, SECRET, "pull_request", &body).unwrap().status,
            202
        );
    };
    let plans = || {
        env.github
            .comments(number)
            .into_iter()
            .filter(|c| c.body.contains("<!-- winky:plan -->"))
            .collect::<Vec<_>>()
    };
    deliver_pull("opened", &head);
    let plan = eventually("the plan comment", WAIT, || async { plans().pop() }).await;
    let ns = env.ns.name();
    assert!(
        plan.body
            .contains(&format!("### Winky plan for `{}`", &head[..12])),
        "{}",
        plan.body
    );
    assert!(
        plan.body
            .contains(&format!("| ➕ create | App {ns}/shop | `deploy/shop.yaml:1` |")),
        "{}",
        plan.body
    );
    assert!(
        plan.body.contains(&format!(
            "| ✏️ change | App {ns}/notes: `spec.image: \"notes:1\" → \"notes:2\"` |"
        )),
        "{}",
        plan.body
    );
    assert!(
        plan.body.contains(&format!("| ➖ prune | App {ns}/old | |")),
        "{}",
        plan.body
    );

    // A push that breaks it: the same comment now says it would be refused.
    std::fs::write(
        env.work.join("deploy/shop.yaml"),
        app_yaml("shop:1")
            .replace("name: notes", "name: shop")
            .replace("port: 8080", "port: 8080\n  replicas: -3"),
    )
    .unwrap();
    run(&env.work, &["commit", "--quiet", "-am", "fix: oops"]);
    run(
        &env.work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/feature/shop"],
    );
    let broken = run(&env.work, &["rev-parse", "HEAD"]);
    deliver_pull("synchronize", &broken);
    let refused = eventually("the plan to say refused", WAIT, || async {
        let all = plans();
        all.iter()
            .any(|c| c.body.contains("would be refused"))
            .then_some(all)
    })
    .await;
    assert_eq!(refused.len(), 1, "updated, not repeated");
    assert!(
        refused[0].body.contains("deploy/shop.yaml:1"),
        "{}",
        refused[0].body
    );
    assert!(refused[0].body.contains("replicas"), "{}", refused[0].body);

    // Nothing of the pull request was applied.
    let apps: Api<App> = Api::namespaced(env.client.clone(), env.ns.name());
    assert_eq!(apps.get("notes").await.unwrap().spec.image, "notes:1");
    assert!(apps.get_opt("shop").await.unwrap().is_none());
    assert!(apps.get_opt("old").await.unwrap().is_some());
    let problems = validate_exchanges(&env.github.exchanges()).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merged_revision_is_promoted_stage_by_stage_on_approvals_people_give() {
    use winky_crds::promotion::{Phase, Promotion};
    let env = Env::start("promote").await;
    env.stalled_with("NotMerged").await;
    let policy = format!("{}-agents", env.ns.name());
    // preview takes every revision; production needs one approval by an
    // approver. (Applied as the same field manager, so the first stages go.)
    Api::<PromotionPolicy>::all(env.client.clone())
        .patch(
            &policy,
            &kube::api::PatchParams::apply("e2e").force(),
            &kube::api::Patch::Apply(serde_json::json!({
                "apiVersion": "winky.dev/v1alpha1", "kind": "PromotionPolicy", "metadata": {"name": policy},
                "spec": {
                    "approvers": {"logins": ["alice", "bob"]},
                    "stages": [
                        {"name": "preview", "namespace": "{app.namespace}-preview", "autoPromote": true},
                        {"name": "production", "autoPromote": true, "gates": {"approvals": {"count": 1}}},
                    ],
                },
            })),
        )
        .await
        .unwrap();
    let app = app_yaml("notes:1").replace("  port: 8080\n", &format!("  port: 8080\n  policy: {policy}\n"));
    let (number, merge) = env
        .merged_by(
            "winky/feat-notes-app-f6a7b8c9",
            &[("deploy/notes.yaml", &app)],
            "alice",
        )
        .await;
    env.applied(&merge).await;

    let promotions: Api<Promotion> = Api::namespaced(env.client.clone(), env.ns.name());
    let phase_of = |stage: &'static str| {
        let promotions = promotions.clone();
        async move {
            promotions
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|p| p.spec.stage == stage)
                .and_then(|p| p.status.map(|s| s.phase))
        }
    };
    eventually("preview promoted", WAIT, || async {
        (phase_of("preview").await == Some(Phase::Promoted)).then_some(())
    })
    .await;
    let waiting = eventually("production awaiting approval", WAIT, || async {
        let p = promotions
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.spec.stage == "production")?;
        (p.status.as_ref()?.phase == Phase::AwaitingApproval).then_some(p)
    })
    .await;
    assert_eq!(
        waiting.spec.revision.pull_request,
        Some(number as i64),
        "the revision knows its pull request"
    );
    assert_eq!(waiting.spec.revision.git_commit.as_deref(), Some(merge.as_str()));

    // The agent that opened it, and someone the policy does not name, approve: neither counts.
    let nudge = |comment_author: &str| {
        let mut body = winky_e2e::webhook::example("issue_comment-created.json");
        body["issue"]["number"] = serde_json::json!(number);
        body["issue"]["pull_request"] = serde_json::json!({
            "url": format!("https://api.github.com/repos/acme/apps/pulls/{number}"),
            "html_url": format!("https://github.com/acme/apps/pull/{number}"),
            "diff_url": format!("https://github.com/acme/apps/pull/{number}.diff"),
            "patch_url": format!("https://github.com/acme/apps/pull/{number}.patch"),
        });
        body["sender"]["login"] = serde_json::json!(comment_author);
        let answer = deliver(
            &env.hook,
            SECRET,
            "issue_comment",
            &serde_json::to_vec(&body).unwrap(),
        )
        .unwrap();
        assert_eq!(answer.status, 202, "{answer:?}");
    };
    env.github.add_comment(number, AGENT, "/approve");
    nudge(AGENT);
    env.github.add_comment(number, "mallory", "/approve");
    nudge("mallory");
    let refused = eventually("both approvals on record, not counted", WAIT, || async {
        let p = promotions
            .get(&waiting.metadata.name.clone().unwrap())
            .await
            .ok()?;
        let approvals = p.status?.approvals;
        (approvals.len() == 2).then_some(approvals)
    })
    .await;
    assert!(
        refused.iter().all(|a| a.counted.as_deref() != Some("counted")),
        "{refused:?}"
    );
    assert_eq!(phase_of("production").await, Some(Phase::AwaitingApproval));

    // GitHub cannot be asked (the token's Secret is gone): a Warning Event
    // says so, and the gate keeps waiting.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), env.ns.name());
    secrets.delete("github-token", &Default::default()).await.unwrap();
    nudge("mallory");
    let unreadable = env.warning("ApprovalsUnreadable").await;
    assert!(unreadable.contains("github-token"), "{unreadable}");
    assert_eq!(phase_of("production").await, Some(Phase::AwaitingApproval));
    let _: Secret = apply_json(
        &env.client,
        env.ns.name(),
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "github-token"}, "stringData": {"token": TOKEN}}),
    )
    .await;

    // An approver approves: production is promoted, by the record.
    env.github.add_comment(number, "alice", "Looks good.\n/approve");
    let started = std::time::Instant::now();
    nudge("alice");
    eventually("production promoted", WAIT, || async {
        (phase_of("production").await == Some(Phase::Promoted)).then_some(())
    })
    .await;
    println!(
        "/approve delivered → production promoted: {:?}",
        started.elapsed()
    );
    let promoted = promotions
        .get(&waiting.metadata.name.clone().unwrap())
        .await
        .unwrap();
    let status = promoted.status.unwrap();
    let approvals: Vec<(&str, &str)> = status
        .approvals
        .iter()
        .map(|a| (a.login.as_str(), a.counted.as_deref().unwrap_or_default()))
        .collect();
    assert!(approvals.contains(&("alice", "counted")), "{approvals:?}");
    let events: Vec<&str> = status.history.iter().map(|h| h.event.as_str()).collect();
    assert!(
        events.contains(&"Created") && events.contains(&"Promoted"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chatops_commands_move_the_pipeline_only_for_those_who_may_give_them() {
    use winky_crds::promotion::{Phase, Promotion};
    let env = Env::start("chatops").await;
    env.stalled_with("NotMerged").await;
    // production waits for one approval and a /promote; only alice and bob approve.
    let policy = env
        .set_policy(serde_json::json!({
            "approvers": {"logins": ["alice", "bob"]},
            "stages": [
                {"name": "preview", "namespace": "{app.namespace}-preview", "autoPromote": true},
                {"name": "production", "gates": {"approvals": {"count": 1}}},
            ],
        }))
        .await;
    let app = app_yaml("notes:1").replace("  port: 8080\n", &format!("  port: 8080\n  policy: {policy}\n"));
    let (number, merge) = env
        .merged_by(
            "winky/feat-notes-app-a1b2c3d4",
            &[("deploy/notes.yaml", &app)],
            "alice",
        )
        .await;
    env.applied(&merge).await;
    let promotions: Api<Promotion> = Api::namespaced(env.client.clone(), env.ns.name());
    let production = || async {
        promotions
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.spec.stage == "production")
    };
    let waiting = eventually("production awaiting approval", WAIT, || async {
        let p = production().await?;
        (p.status.as_ref()?.phase == Phase::AwaitingApproval).then_some(p)
    })
    .await;
    let revision = waiting.spec.revision.id.clone();
    // Every transition sets winky/<stage> on the merged commit.
    let (state, description) = env.status_set(&merge, "winky/preview").await;
    assert_eq!(state, "success", "{description}");
    assert_eq!(env.status_set(&merge, "winky/production").await.0, "pending");

    // An approver holds it: answered, recorded, and held.
    let hold = env.comment(number, "bob", "/hold");
    let reply = env.reply_to(number, hold, "held 1 promotion(s)").await;
    assert!(reply.starts_with("@bob"), "{reply}");
    // Someone the policy does not name cannot release it; nor can the agent
    // that opened the pull request.
    let unhold = env.comment(number, "mallory", "/unhold");
    env.reply_to(number, unhold, "not done: not eligible under the policy")
        .await;
    let agent = env.comment(number, AGENT, "/promote production");
    env.reply_to(number, agent, "not done: you opened this pull request")
        .await;
    // alice approves: every gate holds, but it is held.
    let approve = env.comment(number, "alice", "/approve");
    env.reply_to(number, approve, "counted for production").await;
    let promote = env.comment(number, "bob", "/promote production");
    env.reply_to(number, promote, "is held; /unhold, then /promote production")
        .await;
    assert_eq!(
        production()
            .await
            .and_then(|p| p.status)
            .map(|s| (s.phase, s.held)),
        Some((Phase::AwaitingApproval, true))
    );
    // bob releases it and promotes it.
    let unhold = env.comment(number, "bob", "/unhold");
    env.reply_to(number, unhold, "released 1 promotion(s)").await;
    let started = std::time::Instant::now();
    let promote = env.comment(number, "bob", "/promote production\n/deploy");
    let reply = env
        .reply_to(number, promote, &format!("promoted {revision} into production"))
        .await;
    println!("/promote delivered → reply posted: {:?}", started.elapsed());
    assert!(reply.contains("line 2: unknown command"), "{reply}");
    let promoted = eventually("production promoted", WAIT, || async {
        let p = production().await?;
        (p.status.as_ref()?.phase == Phase::Promoted).then_some(p)
    })
    .await;
    assert_eq!(env.status_set(&merge, "winky/production").await.0, "success");
    // Nothing to roll back to: said, and nothing moves.
    let rollback = env.comment(number, "alice", "/rollback production");
    env.reply_to(
        number,
        rollback,
        "nothing to roll back to: production ran no revision before",
    )
    .await;

    // Every command, counted or not, is on record once, with its giver, in
    // the revision's Promotions.
    let history = eventually("the /rollback on record", WAIT, || async {
        let history: Vec<_> = promotions
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|p| p.status)
            .flat_map(|s| s.history)
            .collect();
        history
            .iter()
            .any(|h| h.event == "Command" && h.message.starts_with(&format!("comment {rollback}, line 1:")))
            .then_some(history)
    })
    .await;
    let commands: Vec<(&str, &str)> = history
        .iter()
        .filter(|h| h.event == "Command")
        .map(|h| (h.actor.as_str(), h.message.as_str()))
        .collect();
    // Eight comments, nine command lines (one of them no command).
    assert_eq!(commands.len(), 9, "{commands:#?}");
    assert!(
        commands
            .iter()
            .any(|(by, m)| *by == "mallory" && m.contains("/unhold — not done")),
        "{commands:#?}"
    );
    let promoted = promotions
        .get(&promoted.metadata.name.clone().unwrap())
        .await
        .unwrap();
    let history = promoted.status.unwrap().history;
    let promoted_by = history.iter().find(|h| h.event == "Promoted").unwrap();
    assert_eq!(promoted_by.actor, "bob");
    // One reply per command comment, however often the pipeline looked again.
    let replies = env
        .github
        .comments(number)
        .into_iter()
        .filter(|c| c.body.contains("<!-- winky:reply:"))
        .count();
    assert_eq!(replies, 8);
    let events: Api<Event> = Api::namespaced(env.client.clone(), env.ns.name());
    let recorded = events.list(&ListParams::default()).await.unwrap().items;
    assert!(
        recorded.iter().any(|e| e.reason.as_deref() == Some("Command")
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("mallory: comment"))),
        "every command is an Event too"
    );
    let problems = validate_exchanges(&env.github.exchanges()).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

impl Env {
    /// `login` submits a review of pull request `number` made on `commit`
    /// (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`), and GitHub tells the
    /// operator (a signed `pull_request_review` delivery, action
    /// `submitted`). Returns the review's id.
    fn review(&self, number: u64, login: &str, state: &str, commit: &str) -> u64 {
        let id = self.github.add_review(number, login, state, commit);
        self.review_delivered(number, id, "submitted");
        id
    }

    /// Review `id` is dismissed, and GitHub tells the operator (action `dismissed`).
    fn dismiss(&self, number: u64, id: u64) {
        self.github.dismiss_review(number, id);
        self.review_delivered(number, id, "dismissed");
    }

    fn review_delivered(&self, number: u64, id: u64, action: &str) {
        let review = self
            .github
            .reviews(number)
            .into_iter()
            .find(|r| r.id == id)
            .expect("the double has the review");
        let html = format!("https://github.com/acme/apps/pull/{number}#pullrequestreview-{id}");
        let api = format!("https://api.github.com/repos/acme/apps/pulls/{number}");
        let mut payload = winky_e2e::webhook::example("pull_request_review-submitted.json");
        payload["action"] = serde_json::json!(action);
        payload["pull_request"]["number"] = serde_json::json!(number);
        payload["pull_request"]["url"] = serde_json::json!(api);
        payload["pull_request"]["html_url"] =
            serde_json::json!(format!("https://github.com/acme/apps/pull/{number}"));
        payload["pull_request"]["user"]["login"] = serde_json::json!(AGENT);
        payload["review"]["id"] = serde_json::json!(id);
        payload["review"]["user"]["login"] = serde_json::json!(review.user);
        payload["review"]["state"] = serde_json::json!(review.state.to_lowercase());
        payload["review"]["commit_id"] = serde_json::json!(review.commit_id);
        payload["review"]["submitted_at"] = serde_json::json!(review.submitted_at);
        payload["review"]["html_url"] = serde_json::json!(html);
        payload["review"]["pull_request_url"] = serde_json::json!(api);
        payload["review"]["_links"] =
            serde_json::json!({"html": {"href": html}, "pull_request": {"href": api}});
        payload["sender"]["login"] = serde_json::json!(review.user);
        let answer = deliver(
            &self.hook,
            SECRET,
            "pull_request_review",
            &serde_json::to_vec(&payload).unwrap(),
        )
        .unwrap();
        assert_eq!(answer.status, 202, "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approving_reviews_count_on_the_head_commit_and_a_dismissed_one_is_withdrawn() {
    use winky_crds::promotion::{ApprovalSource, Phase, Promotion};
    let env = Env::start("reviews").await;
    env.stalled_with("NotMerged").await;
    // production needs two distinct approvers among alice, bob and carol.
    let policy = env
        .set_policy(serde_json::json!({
            "approvers": {"logins": ["alice", "bob", "carol"]},
            "stages": [
                {"name": "preview", "namespace": "{app.namespace}-preview", "autoPromote": true},
                {"name": "production", "autoPromote": true, "gates": {"approvals": {"count": 2}}},
            ],
        }))
        .await;
    let before = run(&env.work, &["rev-parse", "origin/main"]);
    let branch = "winky/feat-notes-app-c0ffee12";
    let app = app_yaml("notes:1").replace("  port: 8080\n", &format!("  port: 8080\n  policy: {policy}\n"));
    let (number, merge) = env
        .merged_by(branch, &[("deploy/notes.yaml", &app)], "alice")
        .await;
    // Reviews are made on the pull request's head; the revision is the merge.
    let head = run(&env.work, &["rev-parse", &format!("origin/{branch}")]);
    assert_ne!(head, merge, "a merge commit, not a fast-forward");
    env.applied(&merge).await;

    let promotions: Api<Promotion> = Api::namespaced(env.client.clone(), env.ns.name());
    let production = || async {
        promotions
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.spec.stage == "production")
    };
    let waiting = eventually("production awaiting approval", WAIT, || async {
        let p = production().await?;
        (p.status.as_ref()?.phase == Phase::AwaitingApproval).then_some(p)
    })
    .await;
    assert_eq!(waiting.spec.revision.git_commit.as_deref(), Some(merge.as_str()));
    // The verdicts on record for a login and source, oldest first, and the
    // approvals gate's count, once `check` holds for them.
    let verdicts_once = |what: &'static str, check: fn(&[(String, ApprovalSource, String)]) -> bool| {
        let production = &production;
        async move {
            eventually(what, WAIT, || async {
                let status = production().await?.status?;
                let verdicts: Vec<(String, ApprovalSource, String)> = status
                    .approvals
                    .iter()
                    .map(|a| (a.login.clone(), a.source, a.counted.clone().unwrap_or_default()))
                    .collect();
                let have = status.gates.iter().find(|g| g.name == "approvals")?.have;
                check(&verdicts).then_some((verdicts, have, status.phase))
            })
            .await
        }
    };
    let has = |verdicts: &[(String, ApprovalSource, String)], login: &str, source, counted: &str| {
        verdicts
            .iter()
            .any(|(l, s, c)| l == login && *s == source && c == counted)
    };

    // The agent that opened the pull request approves it by review (GitHub
    // itself refuses that; the operator does not rely on it), bob approves
    // a commit that is not the revision's, alice approves its head.
    env.review(number, AGENT, "APPROVED", &head);
    env.review(number, "bob", "APPROVED", &before);
    let alice_first = env.review(number, "alice", "APPROVED", &head);
    let (verdicts, have, phase) = verdicts_once("three reviews on record", |v| {
        v.iter().filter(|(_, s, _)| *s == ApprovalSource::Review).count() >= 3
    })
    .await;
    assert!(
        has(
            &verdicts,
            AGENT,
            ApprovalSource::Review,
            "not counted: you opened this pull request"
        ),
        "{verdicts:#?}"
    );
    assert!(
        has(
            &verdicts,
            "bob",
            ApprovalSource::Review,
            "not counted: given for an earlier revision"
        ),
        "{verdicts:#?}"
    );
    assert!(
        has(&verdicts, "alice", ApprovalSource::Review, "counted"),
        "{verdicts:#?}"
    );
    assert_eq!((have, phase), (Some(1), Phase::AwaitingApproval));

    // alice's review is dismissed: her approval is withdrawn, on record.
    env.dismiss(number, alice_first);
    let (verdicts, have, phase) = verdicts_once("alice's review withdrawn", |v| {
        v.iter().any(|(l, s, c)| {
            l == "alice" && *s == ApprovalSource::Review && c == "withdrawn: the review was dismissed"
        })
    })
    .await;
    assert_eq!((have, phase), (Some(0), Phase::AwaitingApproval), "{verdicts:#?}");

    // bob approves by comment: one of two, still waiting.
    let approve = env.comment(number, "bob", "/approve");
    env.reply_to(number, approve, "counted for production").await;
    let (verdicts, have, phase) = verdicts_once("bob's comment counted", |v| {
        v.iter()
            .any(|(l, s, c)| l == "bob" && *s == ApprovalSource::Comment && c == "counted")
    })
    .await;
    assert_eq!((have, phase), (Some(1), Phase::AwaitingApproval), "{verdicts:#?}");

    // alice approves again, by a new review: two of two, promoted.
    let started = std::time::Instant::now();
    env.review(number, "alice", "APPROVED", &head);
    eventually("production promoted", WAIT, || async {
        let p = production().await?;
        (p.status.as_ref()?.phase == Phase::Promoted).then_some(())
    })
    .await;
    println!(
        "approving review delivered → production promoted: {:?}",
        started.elapsed()
    );
    let status = production().await.unwrap().status.unwrap();
    let gate = status.gates.iter().find(|g| g.name == "approvals").unwrap();
    assert_eq!((gate.have, gate.need), (Some(2), Some(2)));
    let alice: Vec<&str> = status
        .approvals
        .iter()
        .filter(|a| a.login == "alice" && a.source == ApprovalSource::Review)
        .map(|a| a.counted.as_deref().unwrap_or_default())
        .collect();
    // Her first review: counted, then withdrawn; her second: counted.
    assert_eq!(
        alice,
        ["counted", "withdrawn: the review was dismissed", "counted"],
        "{:#?}",
        status.approvals
    );
    // The operator listed the reviews through the double, schema-checked.
    let exchanges = env.github.exchanges();
    assert!(
        exchanges
            .iter()
            .any(|e| e.operation == "pulls/list-reviews" && e.status == 200),
        "the reviews were read from GitHub"
    );
    let problems = validate_exchanges(&exchanges).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The adversarial cases of approvals, each refused with a record: another
/// agent approves; an old comment is edited into `/approve`; an approval
/// given for one revision is carried over to the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approvals_that_must_not_count_are_refused_on_record() {
    use winky_crds::promotion::{Phase, Promotion};
    let env = Env::start("adversary").await;
    env.stalled_with("NotMerged").await;
    let policy = env
        .set_policy(serde_json::json!({
            "agents": {"logins": [AGENT, "helper-agent"],
                       "branchPattern": "^winky/(feat|fix)-[a-z0-9]+(-[a-z0-9]+){0,4}-[0-9a-f]{6,}$"},
            "approvers": {"logins": ["alice", "bob", "helper-agent"]},
            "stages": [
                {"name": "preview", "autoPromote": true},
                {"name": "production", "autoPromote": true, "gates": {"approvals": {"count": 1}}},
            ],
        }))
        .await;
    let app = |image: &str| {
        app_yaml(image).replace("  port: 8080\n", &format!("  port: 8080\n  policy: {policy}\n"))
    };
    let (first, merge) = env
        .merged_by(
            "winky/feat-notes-app-0a1b2c3d",
            &[("deploy/notes.yaml", &app("notes:1"))],
            "alice",
        )
        .await;
    env.applied(&merge).await;
    let promotions: Api<Promotion> = Api::namespaced(env.client.clone(), env.ns.name());
    let waiting_for = |number: u64| {
        let promotions = promotions.clone();
        async move {
            eventually(
                &format!("production of #{number} awaiting approval"),
                WAIT,
                || async {
                    promotions
                        .list(&ListParams::default())
                        .await
                        .ok()?
                        .items
                        .into_iter()
                        .find(|p| {
                            p.spec.stage == "production"
                                && p.spec.revision.pull_request == Some(number as i64)
                                && p.status
                                    .as_ref()
                                    .is_some_and(|s| s.phase == Phase::AwaitingApproval)
                        })
                },
            )
            .await
        }
    };
    let production = waiting_for(first).await;
    let name = production.metadata.name.clone().unwrap();

    // Another agent (named an approver too, by mistake): never counts.
    let agent = env.comment(first, "helper-agent", "/approve");
    env.reply_to(first, agent, "not counted: agents never approve")
        .await;
    // An old comment edited into /approve: never an approval, never a command.
    let old = env.comment(first, "bob", "Looks reasonable.");
    env.edit(first, old, "bob", "/approve");
    env.reply_to(
        first,
        old,
        "not done: an edited comment is never read as a command",
    )
    .await;
    let refused = eventually("both refusals on record", WAIT, || async {
        let approvals = promotions.get(&name).await.ok()?.status?.approvals;
        (approvals.len() >= 2).then_some(approvals)
    })
    .await;
    let verdicts: Vec<(&str, &str)> = refused
        .iter()
        .map(|a| (a.login.as_str(), a.counted.as_deref().unwrap_or_default()))
        .collect();
    assert!(
        verdicts.contains(&("helper-agent", "not counted: agents never approve")),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("bob", "not counted: an edit never adds an approval")),
        "{verdicts:?}"
    );
    let status = promotions.get(&name).await.unwrap().status.unwrap();
    assert_eq!(status.phase, Phase::AwaitingApproval);

    // alice approves revision 1: promoted.
    env.comment(first, "alice", "/approve");
    eventually("revision 1 promoted", WAIT, || async {
        let phase = promotions.get(&name).await.ok()?.status?.phase;
        (phase == Phase::Promoted).then_some(())
    })
    .await;

    // Revision 2, from another pull request: alice's approval of revision 1
    // does not carry over; it waits for its own.
    let (second, merge) = env
        .merged_by(
            "winky/feat-notes-two-4e5f6a7b",
            &[("deploy/notes.yaml", &app("notes:2"))],
            "alice",
        )
        .await;
    env.applied(&merge).await;
    let next = waiting_for(second).await;
    assert_ne!(next.spec.revision.id, production.spec.revision.id);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let next = promotions
        .get(&next.metadata.name.clone().unwrap())
        .await
        .unwrap();
    let status = next.status.unwrap();
    assert_eq!(status.phase, Phase::AwaitingApproval);
    let gate = status.gates.iter().find(|g| g.name == "approvals").unwrap();
    assert_eq!((gate.have, gate.need), (Some(0), Some(1)), "{gate:?}");
    // Every command on record with who gave it.
    let history: Vec<(String, String)> = promotions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.status)
        .flat_map(|s| s.history)
        .filter(|h| h.event == "Command")
        .map(|h| (h.actor, h.message))
        .collect();
    for who in ["helper-agent", "bob", "alice"] {
        assert!(history.iter().any(|(by, _)| by == who), "{who}: {history:#?}");
    }
    let problems = validate_exchanges(&env.github.exchanges()).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}
