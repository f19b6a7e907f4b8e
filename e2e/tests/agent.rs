//! `winky propose` end to end, against real components: the real apiserver
//! judges the manifests (server-side dry run), a real `git daemon` receives
//! the push over the network, a GitHub API double answering with GitHub's own
//! example payloads receives the pull request, and an OpenAI-compatible
//! server plans when asked to.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use winky_agent::check;
use winky_agent::generate::{self, Options};
use winky_agent::planner::offline;
use winky_e2e::git::{GitServer, git};
use winky_e2e::github::{GitHubDouble, validate_exchanges};
use winky_e2e::openai::ChatCompletionsServer;
use winky_e2e::vault::OpenBao;
use winky_e2e::{ControlPlane, workspace_binary, workspace_root};

const PROMPTS: [&str; 3] = [
    "A notes app with email login, markdown editor, tags, and images",
    "E-commerce prototype: products, cart, checkout, admin panel",
    "Chat app with rooms, messages, and push notifications",
];

/// Secrets of real formats, put into prompts; none may come out anywhere.
const GITHUB_PAT: &str = "ghp_R2d9Xq7LmP4sT8vW1yZ3bN6cF0hJ5kA9eG2u";
const AWS_KEY: &str = "AKIAZ3QXR5T7UVW2Y4AB";
const DB_PASSWORD: &str = "Sup3r-S3cret-Pw";
const GITHUB_TOKEN: &str = "ghs_E2eDoubleTokenNotARealOne0123456789";

const TEMPLATE: &str =
    "## Why\n\n<!-- winky:summary -->\n\n## Checklist\n\n- [ ] A person read the rules and their tests\n";

fn scratch(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target/e2e/agent")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A bare repository on the git server with the PR template, and a clone of it over git://.
fn app_repository(server: &GitServer, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let bare = server
        .create(
            name,
            &[
                ("README.md", "# notes\n"),
                (".github/PULL_REQUEST_TEMPLATE.md", TEMPLATE),
            ],
        )
        .unwrap();
    let checkout = dir.join("checkout");
    git(
        dir,
        &[
            "clone",
            "--quiet",
            &server.url(name),
            &checkout.display().to_string(),
        ],
    )
    .unwrap();
    (bare, checkout)
}

/// A git server with the app repository, a checkout of it, the GitHub double
/// in front of it, and an audit log path.
struct Fixture {
    dir: PathBuf,
    server: GitServer,
    bare: PathBuf,
    checkout: PathBuf,
    github: GitHubDouble,
    audit: PathBuf,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let dir = scratch(name);
        let server = GitServer::start(&dir).unwrap();
        let (bare, checkout) = app_repository(&server, &dir, "notes");
        let github = GitHubDouble::start("acme", "notes", GITHUB_TOKEN, &bare)
            .await
            .unwrap();
        let audit = dir.join("audit.jsonl");
        Self {
            dir,
            server,
            bare,
            checkout,
            github,
            audit,
        }
    }

    fn env(&self) -> [(&str, &str); 3] {
        [
            ("WINKY_GITHUB_TOKEN", GITHUB_TOKEN),
            ("WINKY_GITHUB_API", self.github.url()),
            ("WINKY_AUDIT_LOG", self.audit.to_str().unwrap()),
        ]
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

async fn winky(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let started = Instant::now();
    let output = tokio::process::Command::new(workspace_binary("winky").unwrap())
        .current_dir(dir)
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("GITHUB_TOKEN")
        .env_remove("WINKY_GITHUB_TOKEN")
        .env("HOME", dir)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Every object of a repository, uncompressed, as text.
fn all_objects(git_dir: &Path) -> String {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_prompts_make_manifests_the_apiserver_accepts() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    for prompt in PROMPTS {
        let plan = offline::plan(prompt);
        let generated = generate::generate(&plan, &Options::default());
        let rules = check::rule_tests(&generated);
        assert!(rules.passed, "{prompt}: {}", rules.message);
        let dry_run = check::server_dry_run(&client, &generated).await;
        for check in &dry_run {
            assert!(check.passed, "{prompt}: {}: {}", check.name, check.message);
        }
        let kinds: Vec<&str> = dry_run
            .iter()
            .map(|c| c.name.split('/').next().unwrap())
            .collect();
        assert!(
            kinds.contains(&"dry-run App") && kinds.contains(&"dry-run Rule"),
            "{kinds:?}"
        );
        assert_eq!(
            dry_run.len(),
            3 + generated.functions.len(),
            "{prompt}: every object is checked"
        );
        println!("{prompt}: {} | {} objects accepted", rules.message, dry_run.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_pushes_one_commit_opens_a_draft_and_leaks_no_secret() {
    let cp = ControlPlane::shared();
    let f = Fixture::new("propose").await;
    let Fixture {
        dir,
        server,
        bare,
        checkout,
        github,
        audit,
    } = &f;
    let prompt = format!(
        "A notes app with email login, markdown editor, tags, and images. \
         Deploy with {AWS_KEY}, token {GITHUB_PAT}, database postgres://notes:{DB_PASSWORD}@db.internal:5432/notes"
    );
    let env = f.env();
    let kubeconfig = cp.kubeconfig().display().to_string();
    let run = winky(
        checkout,
        &[
            "propose",
            "--github-repo",
            "acme/notes",
            "--kubeconfig",
            &kubeconfig,
            &prompt,
        ],
        &env,
    )
    .await;
    println!("{}\n{}", run.stderr, run.stdout);
    assert_eq!(run.code, 0, "{}", run.stderr);
    println!("prompt → pull request: {:.2} s", run.elapsed.as_secs_f64());

    // Every step was visible, the dry run included.
    for step in [
        "[1/7] redact",
        "[2/7] plan",
        "[3/7] generate",
        "[4/7] check",
        "[5/7] preview",
        "[6/7] publish",
    ] {
        assert!(run.stderr.contains(step), "missing {step}");
    }
    assert!(run.stderr.contains("3 removed from the prompt"), "{}", run.stderr);
    assert!(run.stderr.contains("dry-run App/notes") && run.stderr.contains("accepted by the apiserver"));

    // The remote has the branch with exactly one conventional commit on main.
    let branch = winky(checkout, &["branch-name", &prompt], &[])
        .await
        .stdout
        .trim()
        .to_string();
    assert!(
        branch.starts_with("winky/feat-notes-app-email-login-markdown-"),
        "{branch}"
    );
    let bare_dir = bare.display().to_string();
    let refs = git(
        dir,
        &["--git-dir", &bare_dir, "for-each-ref", "--format=%(refname)"],
    )
    .unwrap();
    assert_eq!(
        refs.lines().collect::<Vec<_>>(),
        vec!["refs/heads/main", format!("refs/heads/{branch}").as_str()]
    );
    let range = format!("main..{branch}");
    let count = git(dir, &["--git-dir", &bare_dir, "rev-list", "--count", &range]).unwrap();
    assert_eq!(count.trim(), "1");
    let subject = git(
        dir,
        &["--git-dir", &bare_dir, "log", "-1", "--format=%s", &branch],
    )
    .unwrap();
    let subject = subject.trim();
    assert!(
        subject.starts_with("feat(notes): a notes app with email login"),
        "{subject}"
    );
    let files = git(dir, &["--git-dir", &bare_dir, "diff", "--name-only", &range]).unwrap();
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        vec![
            "deploy/notes/README.md",
            "deploy/notes/app.yaml",
            "deploy/notes/functions/thumbnails.yaml",
            "deploy/notes/rules.yaml"
        ]
    );
    // The user's checkout is where it was: on main, clean.
    assert_eq!(git(checkout, &["status", "--porcelain"]).unwrap(), "");
    assert_eq!(
        git(checkout, &["branch", "--show-current"]).unwrap().trim(),
        "main"
    );

    // The double received one draft pull request with the right head, base, title and body.
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1);
    let pull = &pulls[0];
    assert_eq!(pull["head"]["ref"], branch.as_str());
    assert_eq!(pull["base"]["ref"], "main");
    assert_eq!(pull["title"], subject);
    assert_eq!(pull["draft"], true);
    let body = pull["body"].as_str().unwrap();
    for part in [
        "## Why",
        "## Checklist",
        "## Plan",
        "rule tests (notes-data) | passed",
        "dry-run App/notes | passed",
    ] {
        assert!(body.contains(part), "{part} missing from\n{body}");
    }
    assert!(
        run.stdout
            .trim_end()
            .ends_with("https://github.com/acme/notes/pull/1"),
        "{}",
        run.stdout
    );
    let problems = validate_exchanges(&github.exchanges()).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        github
            .exchanges()
            .iter()
            .map(|e| (e.operation, e.status))
            .collect::<Vec<_>>(),
        vec![("repos/get", 200), ("pulls/create", 201)]
    );

    // The audit log has a record per action, with the PR, and no prompt.
    let records = audit_records(audit);
    let actions: Vec<&str> = records.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        vec![
            "redact",
            "plan",
            "generate",
            "check",
            "commit",
            "push",
            "pull-request"
        ]
    );
    let last = records.last().unwrap();
    assert_eq!(last["pullRequest"], 1);
    assert_eq!(last["branch"], branch.as_str());
    assert_eq!(last["repo"], server.url("notes"));
    assert!(
        records
            .iter()
            .all(|r| r["promptSha256"].as_str().unwrap().len() == 64 && r["actor"] == "winky-agent")
    );

    // No secret from the prompt, nor the token, in any file, commit, request or log.
    let mut haystacks = vec![
        ("remote objects", all_objects(bare)),
        ("checkout objects", all_objects(&checkout.join(".git"))),
        ("audit log", std::fs::read_to_string(audit).unwrap()),
        ("stdout", run.stdout.clone()),
        ("stderr", run.stderr.clone()),
    ];
    for exchange in github.exchanges() {
        haystacks.push(("request to GitHub", exchange.request_body.clone()));
        haystacks.push(("response from GitHub", exchange.response.to_string()));
    }
    for (what, text) in &haystacks {
        for secret in [GITHUB_PAT, AWS_KEY, DB_PASSWORD] {
            assert!(!text.contains(secret), "a prompt secret leaked into the {what}");
        }
        // The token travels in the Authorization header, which is not a haystack.
        assert!(
            !text.contains(GITHUB_TOKEN),
            "the GitHub token leaked into the {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_any_side_effect() {
    let f = Fixture::new("refusals").await;
    let Fixture {
        dir,
        bare,
        checkout,
        github,
        audit,
        ..
    } = &f;
    let env = f.env();
    let bare_dir = bare.display().to_string();
    let remote_refs = || {
        git(
            dir,
            &[
                "--git-dir",
                &bare_dir,
                "for-each-ref",
                "--format=%(refname) %(objectname)",
            ],
        )
        .unwrap()
    };
    let before = remote_refs();
    let base = ["propose", "--github-repo", "acme/notes", "--no-server-check"];

    // A branch outside the pattern, the default branch among them.
    for bad in [
        "main",
        "feature/notes",
        "winky/notes-1a2b3c",
        "winky/feat-notes-XYZ123",
    ] {
        let run = winky(
            checkout,
            &[&base[..], &["--branch", bad, "A notes app"]].concat(),
            &env,
        )
        .await;
        assert_eq!(run.code, 3, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("refused: refusing branch"), "{}", run.stderr);
    }

    // A dirty working tree.
    std::fs::write(checkout.join("scratch.txt"), "work in progress").unwrap();
    let run = winky(checkout, &[&base[..], &["A notes app"]].concat(), &env).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("uncommitted changes (scratch.txt)"),
        "{}",
        run.stderr
    );
    std::fs::remove_file(checkout.join("scratch.txt")).unwrap();
    assert_eq!(remote_refs(), before, "nothing was pushed");
    assert!(github.exchanges().is_empty(), "GitHub was not called");

    // The same proposal twice: the second would overwrite the branch, and winky never force-pushes.
    let first = winky(checkout, &[&base[..], &["A notes app with tags"]].concat(), &env).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let pushed = remote_refs();
    let second = winky(checkout, &[&base[..], &["A notes app with tags"]].concat(), &env).await;
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second.stderr.contains("already exists") && second.stderr.contains("never force-pushes"),
        "{}",
        second.stderr
    );
    assert_eq!(remote_refs(), pushed, "the branch was not touched");
    assert_eq!(github.pulls().len(), 1);
    // Another seed is another branch.
    let third = winky(
        checkout,
        &[&base[..], &["--seed", "1", "A notes app with tags"]].concat(),
        &env,
    )
    .await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert_eq!(github.pulls().len(), 2);

    let outcomes: Vec<(String, String)> = audit_records(audit)
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(action, _)| action == "refuse")
        .collect();
    assert_eq!(
        outcomes.len(),
        6,
        "four bad branches, a dirty tree and an existing branch: {outcomes:?}"
    );
    assert!(outcomes.iter().all(|(_, outcome)| outcome == "refused"));
    let problems = validate_exchanges(&github.exchanges()).unwrap();
    assert!(problems.is_empty(), "{problems:#?}");

    // No token: refused before the planner runs (it may be a paid provider).
    let before = audit_records(audit).len();
    let refs_before = remote_refs();
    let no_token = [("WINKY_AUDIT_LOG", audit.to_str().unwrap())];
    let run = winky(
        checkout,
        &[&base[..], &["--seed", "9", "A notes app with tags"]].concat(),
        &no_token,
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("no GitHub token"), "{}", run.stderr);
    assert!(!run.stderr.contains("[2/7] plan"), "{}", run.stderr);
    let actions: Vec<String> = audit_records(audit)[before..]
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, vec!["redact", "refuse"]);
    assert_eq!(remote_refs(), refs_before, "nothing was pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_planner_speaks_chat_completions_and_sees_only_the_redacted_prompt() {
    let dir = scratch("openai");
    let server = GitServer::start(&dir).unwrap();
    let (_bare, checkout) = app_repository(&server, &dir, "notes");
    // The "model" answers with a plan of its own: the offline plan plus a screen only it adds.
    let provider = ChatCompletionsServer::start("sk-e2e-provider-key", |prompt| {
        let mut plan = offline::plan(prompt);
        plan.screens.push(winky_agent::plan::Screen {
            name: "Model-made screen".into(),
            purpose: "proof".into(),
        });
        serde_json::to_string(&plan).unwrap()
    })
    .await
    .unwrap();
    let prompt =
        format!("Chat app with rooms, messages, and push notifications; our slack token is {GITHUB_PAT}");
    let audit = dir.join("audit.jsonl");
    let env = |key| {
        [
            ("WINKY_OPENAI_BASE_URL", provider.url()),
            ("WINKY_OPENAI_API_KEY", key),
            ("WINKY_AUDIT_LOG", audit.to_str().unwrap()),
        ]
    };
    let run = winky(
        &checkout,
        &["propose", "--dry-run", "--planner", "openai", &prompt],
        &env("sk-e2e-provider-key"),
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("openai planner") && run.stderr.contains("Model-made screen"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("skipped (--dry-run)"), "{}", run.stderr);
    assert!(
        run.stdout.contains("+++ b/deploy/chat/rules.yaml"),
        "{}",
        run.stdout
    );

    let requests = provider.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request["_authorization"], "Bearer sk-e2e-provider-key");
    assert_eq!(request["response_format"]["json_schema"]["strict"], true);
    assert_eq!(
        request["response_format"]["json_schema"]["schema"]["additionalProperties"],
        false
    );
    let sent = request.to_string();
    assert!(!sent.contains(GITHUB_PAT), "the provider saw a secret");
    assert!(sent.contains("[REDACTED:github-pat]"), "{sent}");
    assert!(!run.stderr.contains("sk-e2e-provider-key") && !run.stdout.contains("sk-e2e-provider-key"));

    // A wrong key is a clear error, and nothing else happens.

    let run = winky(
        &checkout,
        &["propose", "--dry-run", "--planner", "openai", "A notes app"],
        &env("sk-wrong"),
    )
    .await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("401") && run.stderr.contains("Incorrect API key"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("sk-wrong"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_can_come_from_vault() {
    let f = Fixture::new("vault").await;
    let bao = OpenBao::start(&f.dir).unwrap();
    bao.put("winky/github", &[("token", GITHUB_TOKEN)]).unwrap();
    let with_reference = |reference: &'static str| {
        let mut env = f.env().to_vec();
        env[0] = ("WINKY_GITHUB_TOKEN", reference);
        env.push(("VAULT_ADDR", bao.address()));
        env.push(("VAULT_TOKEN", bao.token()));
        env
    };
    let args = [
        "propose",
        "--github-repo",
        "acme/notes",
        "--no-server-check",
        "A notes app with tags",
    ];

    let run = winky(
        &f.checkout,
        &args,
        &with_reference("vault:secret/winky/github#token"),
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let exchanges = f.github.exchanges();
    assert!(!exchanges.is_empty());
    assert!(
        exchanges
            .iter()
            .all(|e| e.authorization.as_deref() == Some(&format!("Bearer {GITHUB_TOKEN}")))
    );
    assert_eq!(f.github.pulls().len(), 1);
    assert!(
        !run.stderr.contains(GITHUB_TOKEN)
            && !std::fs::read_to_string(&f.audit).unwrap().contains(GITHUB_TOKEN)
    );

    // A reference to nothing is a clear error naming the reference, and nothing happens.
    let refs = git(&f.dir, &["--git-dir", f.bare.to_str().unwrap(), "for-each-ref"]).unwrap();
    let run = winky(
        &f.checkout,
        &[&args[..4], &["--seed", "2", "A notes app with tags"]].concat(),
        &with_reference("vault:secret/winky/missing#token"),
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("reading vault:secret/winky/missing#token from Vault"),
        "{}",
        run.stderr
    );
    let run = winky(
        &f.checkout,
        &[&args[..4], &["--seed", "2", "A notes app with tags"]].concat(),
        &with_reference("vault:secret/winky/github#nope"),
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("has no key \"nope\""), "{}", run.stderr);
    assert_eq!(
        git(&f.dir, &["--git-dir", f.bare.to_str().unwrap(), "for-each-ref"]).unwrap(),
        refs
    );
    assert_eq!(f.github.pulls().len(), 1);
}
