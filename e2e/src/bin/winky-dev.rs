//! `winky-dev up`: the local development environment — a real control plane
//! with the Winky CRDs and the `winky-operator` binary — until interrupted.
//!
//! `make up` runs it in the background and `make down` stops it; every process
//! it starts stops with it. It writes into the directory given (default `.dev`):
//!   kubeconfig   admin kubeconfig (`KUBECONFIG=.dev/kubeconfig kubectl get winky -A`)
//!   kubectl      the kubectl built with the control plane, same version
//!   ready        written once everything runs; holds the apiserver URL
//!   run-*/       logs of etcd, kube-apiserver, kube-controller-manager, the operator
//!   git-url      a repository of the examples (`git clone` and `git push` it), which
//!                the GitSource `winky-system/examples` applies
//!   webhook-url  that GitSource's webhook URL; a push calls it, signed, like GitHub
//!   webhook-secret  the secret the deliveries are signed with
//!   github-url   a local GitHub for that repository (`local/examples`): the
//!                GitHub double of the e2e tests, which the GitSource's
//!                `spec.github` names; the operator reads pull requests,
//!                approvals and commands from it and writes statuses and comments
//!   github-token its token (the Secret `winky-system/examples-github` holds it too)
//!   github.log   every request the operator made to it, and any answer that
//!                breaks GitHub's schemas
//!   github-pulls.jsonl  the pull requests opened and merged through
//!                `winky-dev github`, opened and merged again by the next `up`
//!
//! The GitSource applies only what a person merged through a pull request, as
//! on GitHub; `winky-dev github` is how a person acts on the local GitHub:
//! open a pull request, merge it, comment on it (`/approve`). The default
//! PromotionPolicy is applied with the approvers alice and carol.
//!
//! `winky-dev hook DIR` is what the repository's `post-receive` hook runs: one
//! GitHub-shaped, signed `push` delivery per pushed branch.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use winky_e2e::git::GitServer;
use winky_e2e::github::GitHubDouble;
use winky_e2e::webhook::{Answer, PullRequestEvent, deliver, pull_request_payload};
use winky_e2e::{Component, ControlPlane, operator_binary};

/// The repository the dev GitSource applies.
const EXAMPLES: &str = "examples";
/// Where the dev GitSource lives.
const SOURCE_NAMESPACE: &str = "winky-system";
/// The owner of the repository on the local GitHub.
const OWNER: &str = "local";
/// Who may approve under the default PromotionPolicy here (its file lists nobody).
const APPROVERS: [&str; 2] = ["alice", "carol"];
/// The person who opened and merged the pull request that added the examples.
const FIRST_MERGER: &str = "dana";
/// The pull requests `winky-dev github` opened and merged, one JSON object a line.
const JOURNAL: &str = "github-pulls.jsonl";

const USAGE: &str = "\
usage: winky-dev up [DIR]
       winky-dev hook [DIR]                      (git's post-receive hook)
       winky-dev github pulls DIR
       winky-dev github open DIR --branch B --as LOGIN [--title T]
       winky-dev github merge DIR (--pr N | --branch B) --as LOGIN [--author LOGIN] [--title T]
       winky-dev github comment DIR PR --as LOGIN BODY
       winky-dev github comments DIR PR

`up` starts etcd, kube-apiserver, kube-controller-manager and winky-operator on
loopback ports, writes DIR/kubeconfig (DIR defaults to .dev) and runs until
interrupted. It also serves DIR/git-url, a repository of the examples that the
GitSource winky-system/examples applies, and DIR/github-url, a local GitHub for
it (local/examples) that the GitSource's spec.github names: only what a person
merged through a pull request is applied. `make up` and `make down` drive it.

`github` acts as a person (or an agent) on that local GitHub:
  pulls     lists the pull requests
  open      opens a pull request from branch B (pushed already) into main as
            LOGIN, and delivers the signed `pull_request` webhook
  merge     merges a pull request into main as LOGIN, as GitHub's merge button
            does: a merge commit, recorded as the pull request's merge, then
            pushed to main (the push webhook applies it). --branch B opens a
            pull request from B first when none is open, as --author (default
            LOGIN)
  comment   writes BODY (`/approve`, `/hold`, `/promote production`, ...) on
            pull request PR as LOGIN, and delivers the signed `issue_comment`
            webhook
  comments  prints the comments of pull request PR, the operator's replies too";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = || PathBuf::from(args.get(1).map_or(".dev", String::as_str));
    match args.first().map(String::as_str) {
        Some("up") => up(&dir()),
        Some("hook") => hook(&dir()),
        Some("github") => github(&args[1..]),
        other => {
            eprintln!("{USAGE}");
            bail!("unknown command {:?}", other.unwrap_or_default())
        }
    }
}

fn up(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let _ = std::fs::remove_file(dir.join("ready"));
    // Serves the local GitHub while the rest starts and runs.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cp = ControlPlane::start(&dir, "run").context("starting the control plane")?;
    std::fs::copy(cp.kubeconfig(), dir.join("kubeconfig"))?;
    let kubectl = winky_e2e::kubernetes_bin_dir()?.join("kubectl");
    let _ = std::fs::remove_file(dir.join("kubectl"));
    std::os::unix::fs::symlink(&kubectl, dir.join("kubectl"))?;

    cp.kubectl(&["create", "namespace", "winky-system"])?;
    // The default PromotionPolicy, which the examples follow, with the local
    // GitHub's approvers (the file names none: each installation names its own).
    let policy = winky_e2e::workspace_root().join("policies/defaults/promotion-policy.yaml");
    cp.kubectl(&["apply", "-f", &policy.display().to_string()])?;
    let approvers = json!({"spec": {"approvers": {"logins": APPROVERS}}}).to_string();
    cp.kubectl(&[
        "patch",
        "promotionpolicy",
        "default",
        "--type=merge",
        "-p",
        &approvers,
    ])?;
    // A container engine for the emulator, with the examples' images; it stops with winky-dev.
    let engine = winky_e2e::engine::ContainerEngine::start(&dir.join("engine"))?;
    engine.load_example_images(&winky_e2e::workspace_binary("winky")?)?;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let webhook = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (git, github, restored) = examples_repository(&dir, &cp, webhook, &runtime)?;
    let mut operator = Component::spawn(
        "winky-operator",
        &operator_binary()?,
        &[
            format!("--kubeconfig={}", cp.kubeconfig().display()),
            format!("--metrics-addr={metrics}"),
            "--lease-namespace=winky-system".into(),
            "--identity=winky-dev".into(),
            format!("--engine={}", engine.socket().display()),
            format!("--webhook-addr={webhook}"),
            format!("--git-cache-dir={}", dir.join("git-cache").display()),
        ],
        cp.dir(),
        None,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    if operator.exited() {
        bail!("winky-operator exited at once:\n{}", operator.log_tail(20));
    }
    std::fs::write(
        dir.join("ready"),
        format!(
            "apiserver={}\nmetrics=http://{metrics}/metrics\ngithub={}\nlogs={}\n",
            cp.server(),
            github.url(),
            cp.dir().display()
        ),
    )?;
    println!(
        "control plane: {} (ready in {:.1}s)",
        cp.server(),
        cp.boot_time().as_secs_f64()
    );
    println!(
        "operator:      http://{metrics}/metrics, log {}",
        operator.log().display()
    );
    println!("kubeconfig:    {}", dir.join("kubeconfig").display());
    println!(
        "engine:        {} (podman, for the emulator)",
        engine.socket().display()
    );
    println!(
        "git:           {} (push a branch, merge it with `winky-dev github merge`; webhook {})",
        git.url(EXAMPLES),
        webhook_url(webhook)
    );
    println!(
        "github:        {} ({OWNER}/{EXAMPLES}, {restored} pull request(s); approvers {}; log {})",
        github.url(),
        APPROVERS.join(", "),
        dir.join("github.log").display()
    );

    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("github.log"))?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = check.tick() => {
                    drain(&github, &mut log);
                    if operator.exited() {
                        eprintln!("winky-operator exited:\n{}", operator.log_tail(20));
                        break;
                    }
                }
            }
        }
        Ok::<_, std::io::Error>(())
    })?;
    println!("stopping");
    let _ = std::fs::remove_file(dir.join("ready"));
    drop(operator);
    // What the double saw last goes to the log too: its schema problems are
    // reported there as they come, never as a panic on the way out.
    drain(&github, &mut log);
    drop(github);
    drop(git);
    drop(cp);
    drop(runtime);
    Ok(())
}

/// Moves what the local GitHub recorded into `github.log`: one line per
/// request, and every answer that broke GitHub's schemas (also on stderr,
/// which `make up` keeps in `up.log`). The double keeps nothing, however
/// long it runs.
fn drain(github: &GitHubDouble, log: &mut std::fs::File) {
    let at = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut lines = String::new();
    for exchange in github.take_exchanges() {
        lines.push_str(&format!(
            "{at} {} {} -> {} ({})\n",
            exchange.method, exchange.path, exchange.status, exchange.operation
        ));
    }
    for problem in github.take_problems() {
        eprintln!("github double: an answer breaks GitHub's schemas: {problem}");
        lines.push_str(&format!("{at} SCHEMA PROBLEM {problem}\n"));
    }
    if !lines.is_empty() {
        let _ = log.write_all(lines.as_bytes());
    }
}

fn webhook_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/hooks/github/{SOURCE_NAMESPACE}/{EXAMPLES}")
}

fn full_name() -> String {
    format!("{OWNER}/{EXAMPLES}")
}

/// Serves a repository of `examples/{notes,shop,chat}` under `deploy/` and the
/// local GitHub in front of it, with a `post-receive` hook that delivers
/// signed pushes to the operator's webhook, and creates the GitSource (its
/// webhook and token Secrets) that applies it. A new repository gets its
/// examples through a pull request `dana` opens and merges; a kept one gets
/// its pull requests back from the journal. Returns how many pull requests
/// the local GitHub has.
fn examples_repository(
    dir: &Path,
    cp: &ControlPlane,
    webhook: std::net::SocketAddr,
    runtime: &tokio::runtime::Runtime,
) -> Result<(GitServer, GitHubDouble, usize)> {
    let git = GitServer::start(&dir.join("git")).context("starting git daemon")?;
    let bare = git.git_dir(EXAMPLES);
    let journal = dir.join(JOURNAL);
    if bare.join("HEAD").is_file() && !journal.is_file() {
        // A repository from before the local GitHub: what it holds was pushed
        // straight to main, which the GitSource now refuses. Kept aside.
        let stamp = jiff::Timestamp::now().as_second();
        let aside = dir.join(format!("examples-before-github-{stamp}.git"));
        std::fs::rename(&bare, &aside)?;
        println!(
            "git:           the repository had no pull requests; kept as {}, a new one is made",
            aside.display()
        );
    }
    let kept = bare.join("HEAD").is_file();
    if !kept {
        let _ = std::fs::remove_file(&journal);
        // What an interrupted start may have left.
        let _ = std::fs::remove_dir_all(dir.join(format!("git/repos/{EXAMPLES}.seed")));
        git.create(
            EXAMPLES,
            &[(
                "README.md",
                "The Winky examples, applied by the GitSource winky-system/examples.\n",
            )],
        )?;
    }

    let token = format!("local_{}", random_hex(20));
    write_private(&dir.join("github-token"), &token)?;
    let github = runtime.block_on(GitHubDouble::start(OWNER, EXAMPLES, &token, &bare))?;
    std::fs::write(dir.join("github-url"), format!("{}\n", github.url()))?;
    std::fs::write(dir.join("git-url"), format!("{}\n", git.url(EXAMPLES)))?;
    let local = Local::read(dir)?;
    let pulls = if kept {
        replay(&local, &journal)?
    } else {
        add_examples(&local)?;
        1
    };

    // From here on, pushes are delivered to the operator.
    let hook = bare.join("hooks/post-receive");
    // A binary rebuilt while winky-dev runs is still found by its path.
    let me = std::env::current_exe()?;
    let me = PathBuf::from(me.to_string_lossy().trim_end_matches(" (deleted)"));
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n# Delivers a signed GitHub push event to the operator, as GitHub would.\nexec '{}' hook '{}'\n",
            me.display(),
            dir.display()
        ),
    )?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;

    let secret = random_hex(32);
    let secret_file = dir.join("webhook-secret");
    write_private(&secret_file, &secret)?;
    std::fs::write(dir.join("webhook-url"), format!("{}\n", webhook_url(webhook)))?;
    for (name, key, file) in [
        ("examples-webhook", "secret", &secret_file),
        ("examples-github", "token", &dir.join("github-token")),
    ] {
        cp.kubectl(&[
            "create",
            "secret",
            "generic",
            name,
            "-n",
            SOURCE_NAMESPACE,
            &format!("--from-file={key}={}", file.display()),
        ])?;
    }
    let source = dir.join("gitsource.yaml");
    std::fs::write(
        &source,
        format!(
            "apiVersion: winky.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: {EXAMPLES}\n  namespace: {SOURCE_NAMESPACE}\n\
             spec:\n  url: {}\n  branch: main\n  path: deploy\n  interval: 5m\n  prune: true\n\
             \x20 webhook:\n    secretRef: {{name: examples-webhook, key: secret}}\n\
             \x20 github:\n    apiUrl: {}\n    owner: {OWNER}\n    repo: {EXAMPLES}\n\
             \x20   tokenSecretRef: {{name: examples-github, key: token}}\n",
            git.url(EXAMPLES),
            github.url()
        ),
    )?;
    cp.kubectl(&["apply", "-f", &source.display().to_string()])?;
    Ok((git, github, pulls))
}

/// The examples reach `main` the way everything does here: `dana` pushes the
/// branch `add-examples`, opens a pull request and merges it.
fn add_examples(local: &Local) -> Result<()> {
    let root = winky_e2e::workspace_root().join("examples");
    let mut files = Vec::new();
    for app in ["notes", "shop", "chat"] {
        collect(&root.join(app), &format!("deploy/{app}"), &mut files)?;
    }
    let work = local.dir.join(format!("github-work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let result = (|| {
        run_git(
            &local.dir,
            FIRST_MERGER,
            &["clone", "--quiet", &local.git_url()?, &path_arg(&work)],
        )?;
        run_git(
            &work,
            FIRST_MERGER,
            &["checkout", "--quiet", "-b", "add-examples"],
        )?;
        for (path, content) in &files {
            let file = work.join(path);
            std::fs::create_dir_all(file.parent().context("a file has a parent")?)?;
            std::fs::write(&file, content)?;
        }
        run_git(&work, FIRST_MERGER, &["add", "--all"])?;
        run_git(
            &work,
            FIRST_MERGER,
            &[
                "commit",
                "--quiet",
                "-m",
                "feat: the notes, shop and chat examples",
            ],
        )?;
        run_git(
            &work,
            FIRST_MERGER,
            &["push", "--quiet", "origin", "add-examples"],
        )
    })();
    let _ = std::fs::remove_dir_all(&work);
    result?;
    let number = open_pull(
        local,
        "add-examples",
        FIRST_MERGER,
        "The notes, shop and chat examples",
        false,
    )?;
    merge_pull(local, number, FIRST_MERGER)?;
    Ok(())
}

/// Opens and merges again, on the local GitHub just started, the pull requests
/// of the journal (a branch deleted since cannot be opened again: said, and
/// left out). Rewrites the journal with the numbers they have now. Returns
/// how many were opened.
fn replay(local: &Local, journal: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(journal)?;
    let mut numbers: HashMap<u64, u64> = HashMap::new();
    let mut kept = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut entry: Value =
            serde_json::from_str(line).with_context(|| format!("{}: {line}", journal.display()))?;
        let old = entry["number"]
            .as_u64()
            .context("a journal entry names its pull request")?;
        let field = |key: &str| entry[key].as_str().unwrap_or_default().to_string();
        let outcome = match field("op").as_str() {
            "open" => local
                .call(
                    "POST",
                    "/pulls",
                    Some(&json!({"head": field("head"), "base": field("base"),
                                 "author": field("author"), "title": field("title")})),
                )
                .and_then(|answer| answer["number"].as_u64().context("the double answered no number"))
                .inspect(|&new| {
                    numbers.insert(old, new);
                }),
            "merge" => match numbers.get(&old) {
                Some(&new) => local
                    .call(
                        "POST",
                        &format!("/pulls/{new}/merge"),
                        Some(&json!({"by": field("by"), "commit": field("commit")})),
                    )
                    .map(|_| new),
                None => continue,
            },
            other => bail!("{}: unknown entry {other:?}", journal.display()),
        };
        match outcome {
            Ok(new) => {
                entry["number"] = json!(new);
                kept.push(entry.to_string());
            }
            Err(e) => println!("github:        pull request #{old} not restored: {e:#}"),
        }
    }
    let body: String = kept.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(journal, body)?;
    Ok(numbers.len())
}

/// Every file below `from`, as `(prefix/relative path, text)`.
fn collect(from: &Path, prefix: &str, out: &mut Vec<(String, String)>) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| from.display().to_string())? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            collect(&path, &format!("{prefix}/{name}"), out)?;
        } else {
            out.push((format!("{prefix}/{name}"), std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .expect("/dev/urandom reads");
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// `winky-dev hook DIR`: git's post-receive hook. What it prints, `git push` shows.
fn hook(dir: &Path) -> Result<()> {
    let local = Local::read(dir)?;
    let (url, secret) = local.webhook()?;
    let mut stdin = String::new();
    std::io::stdin().read_to_string(&mut stdin)?;
    for answer in winky_e2e::webhook::deliver_pushes(&url, secret.as_bytes(), &full_name(), &stdin)? {
        println!("winky webhook: {} {}", answer.status, answer.body.trim());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// winky-dev github: a person on the local GitHub

/// What `winky-dev up` wrote into DIR about the local GitHub.
#[derive(Debug)]
struct Local {
    dir: PathBuf,
    github_url: String,
    token: String,
}

impl Local {
    fn read(dir: &Path) -> Result<Self> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("{}: is winky-dev up running?", dir.display()))?;
        Ok(Self {
            github_url: read_file(&dir, "github-url")?,
            token: read_file(&dir, "github-token")?,
            dir,
        })
    }

    fn git_url(&self) -> Result<String> {
        read_file(&self.dir, "git-url")
    }

    fn webhook(&self) -> Result<(String, String)> {
        Ok((
            read_file(&self.dir, "webhook-url")?,
            read_file(&self.dir, "webhook-secret")?,
        ))
    }

    /// A request to the double's control API (`/_double/…`); the answer's
    /// JSON, or its message as the error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}/_double{path}", self.github_url);
        let body = body.map(Value::to_string).unwrap_or_default();
        let authorization = format!("Bearer {}", self.token);
        let answer = http(
            method,
            &url,
            &[("Authorization", &authorization)],
            body.as_bytes(),
        )
        .with_context(|| format!("{method} {url}: is winky-dev up running?"))?;
        let value: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        if !(200..300).contains(&answer.status) {
            bail!(
                "the local GitHub answered {}: {}",
                answer.status,
                value["message"].as_str().unwrap_or(answer.body.trim())
            );
        }
        Ok(value)
    }

    fn pulls(&self) -> Result<Vec<Value>> {
        match self.call("GET", "/pulls", None)? {
            Value::Array(pulls) => Ok(pulls),
            other => bail!("the local GitHub listed no pull requests: {other}"),
        }
    }

    fn pull(&self, number: u64) -> Result<Value> {
        self.pulls()?
            .into_iter()
            .find(|p| p["number"].as_u64() == Some(number))
            .with_context(|| format!("the local GitHub has no pull request #{number}"))
    }

    /// Delivers `event` to the operator, signed, as GitHub would.
    fn deliver(&self, event: &str, body: &[u8]) -> Result<Answer> {
        let (url, secret) = self.webhook()?;
        deliver(&url, secret.as_bytes(), event, body)
    }

    fn journal(&self, entry: &Value) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(JOURNAL))?;
        writeln!(file, "{entry}")?;
        Ok(())
    }
}

fn read_file(dir: &Path, name: &str) -> Result<String> {
    Ok(std::fs::read_to_string(dir.join(name))
        .with_context(|| format!("{}: is winky-dev up running?", dir.join(name).display()))?
        .trim()
        .to_string())
}

/// One HTTP/1.1 request on loopback, `Connection: close`.
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs on loopback")?;
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: winky-dev\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {text:?}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Ok(Answer { status, body })
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// Runs git in `dir` as the person `login`.
fn run_git(dir: &Path, login: &str, args: &[&str]) -> Result<String> {
    let email = format!("{login}@users.noreply.winky.invalid");
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", login)
        .env("GIT_AUTHOR_EMAIL", &email)
        .env("GIT_COMMITTER_NAME", login)
        .env("GIT_COMMITTER_EMAIL", &email)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .context("running git: install it with `apt-get install git`")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    // What the remote's hook said (git prints it as `remote: …`), then git's own output.
    let stderr = String::from_utf8_lossy(&output.stderr);
    let remote: String = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote: "))
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    Ok(format!("{remote}{}", String::from_utf8_lossy(&output.stdout)))
}

/// Opens a pull request from `branch` into main as `author`; with `notify`,
/// delivers the `pull_request` webhook as GitHub would. Returns its number.
fn open_pull(local: &Local, branch: &str, author: &str, title: &str, notify: bool) -> Result<u64> {
    let answer = local.call(
        "POST",
        "/pulls",
        Some(&json!({"head": branch, "base": "main", "author": author, "title": title})),
    )?;
    let number = answer["number"]
        .as_u64()
        .context("the local GitHub answered no number")?;
    local.journal(
        &json!({"op": "open", "number": number, "head": branch, "base": "main",
                          "author": author, "title": title}),
    )?;
    println!("opened pull request #{number}: {branch} → main by {author} ({title:?})");
    if notify {
        let pull = local.pull(number)?;
        let head_sha = pull["head_sha"].as_str().unwrap_or_default();
        let payload = pull_request_payload(
            &full_name(),
            &PullRequestEvent {
                action: "opened",
                number,
                author,
                head_ref: branch,
                head_sha,
                base_ref: "main",
            },
        );
        let answer = local.deliver("pull_request", &payload)?;
        println!("  pull_request webhook: {} {}", answer.status, answer.body.trim());
    }
    Ok(number)
}

/// Merges pull request `number` into its base as `by`, as GitHub's merge
/// button does: a merge commit, recorded on the local GitHub as the pull
/// request's merge before it is pushed to the base, so that the operator,
/// told of the push, finds who merged it. Returns the merge commit.
fn merge_pull(local: &Local, number: u64, by: &str) -> Result<String> {
    let pull = local.pull(number)?;
    if pull["state"] != "open" {
        bail!(
            "pull request #{number} is merged already (by {}, {})",
            pull["merged_by"].as_str().unwrap_or("?"),
            pull["merge_commit_sha"].as_str().unwrap_or("?")
        );
    }
    let (head, base) = (
        pull["head"].as_str().unwrap_or_default(),
        pull["base"].as_str().unwrap_or_default(),
    );
    let title = pull["title"].as_str().unwrap_or_default();
    let work = local.dir.join(format!("github-work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let result = (|| -> Result<(String, String)> {
        run_git(
            &local.dir,
            by,
            &["clone", "--quiet", &local.git_url()?, &path_arg(&work)],
        )?;
        run_git(
            &work,
            by,
            &["checkout", "--quiet", "-B", base, &format!("origin/{base}")],
        )?;
        let message = format!("Merge pull request #{number} from {head}\n\n{title}");
        run_git(
            &work,
            by,
            &[
                "merge",
                "--quiet",
                "--no-ff",
                "-m",
                &message,
                &format!("origin/{head}"),
            ],
        )?;
        let commit = run_git(&work, by, &["rev-parse", "HEAD"])?.trim().to_string();
        // The commit reaches the repository first under a ref that is no
        // branch (the hook ignores it), so that the merge can be recorded…
        let parked = format!("refs/winky-dev/merges/{number}");
        run_git(
            &work,
            by,
            &["push", "--quiet", "origin", &format!("HEAD:{parked}")],
        )?;
        local.call(
            "POST",
            &format!("/pulls/{number}/merge"),
            Some(&json!({"by": by, "commit": commit})),
        )?;
        local.journal(&json!({"op": "merge", "number": number, "by": by, "commit": commit}))?;
        // …before the base moves to it, which calls the operator's webhook.
        let said = run_git(&work, by, &["push", "origin", &format!("HEAD:{base}")])?;
        run_git(&work, by, &["push", "--quiet", "origin", &format!(":{parked}")])?;
        Ok((commit, said))
    })();
    let _ = std::fs::remove_dir_all(&work);
    let (commit, said) = result?;
    println!("merged pull request #{number} into {base} as {commit} by {by}");
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        println!("  {line}");
    }
    Ok(commit)
}

/// Writes `body` on pull request `number` as `login` and delivers the
/// `issue_comment` webhook, as GitHub would. Returns the comment's id.
fn comment(local: &Local, number: u64, login: &str, body: &str) -> Result<u64> {
    let pull = local.pull(number)?;
    let answer = local.call(
        "POST",
        &format!("/pulls/{number}/comments"),
        Some(&json!({"author": login, "body": body})),
    )?;
    let id = answer["id"].as_u64().context("the local GitHub answered no id")?;
    let slug = full_name();
    let mut payload = winky_e2e::webhook::example("issue_comment-created.json");
    payload["repository"]["name"] = json!(EXAMPLES);
    payload["repository"]["full_name"] = json!(slug);
    payload["repository"]["owner"]["login"] = json!(OWNER);
    payload["issue"]["number"] = json!(number);
    payload["issue"]["title"] = pull["title"].clone();
    payload["issue"]["user"]["login"] = pull["author"].clone();
    payload["issue"]["pull_request"] = json!({
        "url": format!("https://api.github.com/repos/{slug}/pulls/{number}"),
        "html_url": format!("https://github.com/{slug}/pull/{number}"),
        "diff_url": format!("https://github.com/{slug}/pull/{number}.diff"),
        "patch_url": format!("https://github.com/{slug}/pull/{number}.patch"),
    });
    payload["sender"]["login"] = json!(login);
    payload["comment"]["id"] = json!(id);
    payload["comment"]["body"] = json!(body);
    payload["comment"]["user"]["login"] = json!(login);
    let answer = local.deliver("issue_comment", &serde_json::to_vec(&payload)?)?;
    println!("comment {id} on pull request #{number} by {login}: {body}");
    println!(
        "  issue_comment webhook: {} {}",
        answer.status,
        answer.body.trim()
    );
    if answer.status != 202 {
        bail!("the operator's webhook did not take the comment");
    }
    Ok(id)
}

/// `--name value` (or `--name=value`) options and the other arguments.
fn options(args: &[String]) -> Result<(HashMap<String, String>, Vec<String>)> {
    let mut named = HashMap::new();
    let mut positional = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--") {
            Some(option) => {
                let (name, value) = match option.split_once('=') {
                    Some((name, value)) => (name.to_string(), value.to_string()),
                    None => (
                        option.to_string(),
                        args.next()
                            .with_context(|| format!("--{option} needs a value"))?
                            .clone(),
                    ),
                };
                named.insert(name, value);
            }
            None => positional.push(arg.clone()),
        }
    }
    Ok((named, positional))
}

/// `winky-dev github …`
fn github(args: &[String]) -> Result<()> {
    let command = args.first().map(String::as_str).unwrap_or_default();
    let (named, positional) = options(args.get(1..).unwrap_or_default())?;
    let Some(dir) = positional.first() else {
        eprintln!("{USAGE}");
        bail!("winky-dev github {command}: which DIR? (`make up` uses .dev)");
    };
    let local = Local::read(Path::new(dir))?;
    let login = || named.get("as").cloned().context("--as LOGIN: who acts?");
    let pr = |at: usize| -> Result<u64> {
        positional
            .get(at)
            .and_then(|n| n.trim_start_matches('#').parse().ok())
            .context("which pull request? (its number)")
    };
    match command {
        "pulls" => {
            for pull in local.pulls()? {
                let state = match pull["merged_by"].as_str() {
                    Some(by) => format!(
                        "merged by {by} as {}",
                        &pull["merge_commit_sha"].as_str().unwrap_or_default()[..12]
                    ),
                    None => "open".into(),
                };
                println!(
                    "#{:<3} {:<40} {} → {}  by {}, {state}, {} comment(s)",
                    pull["number"],
                    pull["title"].as_str().unwrap_or_default(),
                    pull["head"].as_str().unwrap_or_default(),
                    pull["base"].as_str().unwrap_or_default(),
                    pull["author"].as_str().unwrap_or_default(),
                    pull["comments"],
                );
            }
        }
        "open" => {
            let branch = named.get("branch").context("--branch B: the branch to propose")?;
            let title = named.get("title").cloned().unwrap_or_else(|| branch.clone());
            open_pull(&local, branch, &login()?, &title, true)?;
        }
        "merge" => {
            let by = login()?;
            let number = match (named.get("pr"), named.get("branch")) {
                (Some(number), _) => number
                    .trim_start_matches('#')
                    .parse()
                    .context("--pr N: a number")?,
                (None, Some(branch)) => {
                    let open = local
                        .pulls()?
                        .into_iter()
                        .find(|p| p["head"] == branch.as_str() && p["state"] == "open");
                    match open.and_then(|p| p["number"].as_u64()) {
                        Some(number) => number,
                        None => {
                            let author = named.get("author").unwrap_or(&by);
                            let title = named.get("title").unwrap_or(branch);
                            open_pull(&local, branch, author, title, true)?
                        }
                    }
                }
                (None, None) => bail!("--pr N or --branch B: what to merge?"),
            };
            merge_pull(&local, number, &by)?;
        }
        "comment" => {
            let body = positional.get(2..).unwrap_or_default().join(" ");
            if body.trim().is_empty() {
                bail!("what does the comment say? (`/approve`, say)");
            }
            comment(&local, pr(1)?, &login()?, &body)?;
        }
        "comments" => {
            let number = pr(1)?;
            let comments = local.call("GET", &format!("/pulls/{number}/comments"), None)?;
            for c in comments.as_array().into_iter().flatten() {
                println!(
                    "── comment {} by {} at {}",
                    c["id"],
                    c["user"].as_str().unwrap_or_default(),
                    c["created_at"].as_str().unwrap_or_default()
                );
                for line in c["body"].as_str().unwrap_or_default().lines() {
                    println!("   {line}");
                }
            }
        }
        other => {
            eprintln!("{USAGE}");
            bail!("unknown command: winky-dev github {other}")
        }
    }
    Ok(())
}
