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
//!
//! `winky-dev hook DIR` is what the repository's `post-receive` hook runs: one
//! GitHub-shaped, signed `push` delivery per pushed branch.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use winky_e2e::git::GitServer;
use winky_e2e::{Component, ControlPlane, operator_binary};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".dev".into()));
    match command.as_str() {
        "up" => up(&dir),
        "hook" => hook(&dir),
        _ => {
            eprintln!(
                "usage: winky-dev up [DIR]\n       winky-dev hook [DIR]   (git's post-receive hook)\n\n\
                 Starts etcd, kube-apiserver, kube-controller-manager and winky-operator on loopback\n\
                 ports, writes DIR/kubeconfig (DIR defaults to .dev) and runs until interrupted.\n\
                 It also serves DIR/git-url, a repository of the examples that the GitSource\n\
                 winky-system/examples applies; pushing to it calls DIR/webhook-url, signed.\n\
                 `make up` and `make down` drive it."
            );
            bail!("unknown command {command:?}")
        }
    }
}

fn up(dir: &PathBuf) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let _ = std::fs::remove_file(dir.join("ready"));
    let cp = ControlPlane::start(&dir, "run").context("starting the control plane")?;
    std::fs::copy(cp.kubeconfig(), dir.join("kubeconfig"))?;
    let kubectl = winky_e2e::kubernetes_bin_dir()?.join("kubectl");
    let _ = std::fs::remove_file(dir.join("kubectl"));
    std::os::unix::fs::symlink(&kubectl, dir.join("kubectl"))?;

    cp.kubectl(&["create", "namespace", "winky-system"])?;
    // The default PromotionPolicy, which the examples follow.
    let policy = winky_e2e::workspace_root().join("policies/defaults/promotion-policy.yaml");
    cp.kubectl(&["apply", "-f", &policy.display().to_string()])?;
    // A container engine for the emulator, with the examples' images; it stops with winky-dev.
    let engine = winky_e2e::engine::ContainerEngine::start(&dir.join("engine"))?;
    engine.load_example_images(&winky_e2e::workspace_binary("winky")?)?;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let webhook = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let git = examples_repository(&dir, &cp, webhook)?;
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
            "apiserver={}\nmetrics=http://{metrics}/metrics\nlogs={}\n",
            cp.server(),
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
        "git:           {} (push to apply; webhook {})",
        git.url(EXAMPLES),
        webhook_url(webhook)
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = check.tick() => {
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
    drop(git);
    drop(cp);
    Ok(())
}

/// The repository the dev GitSource applies.
const EXAMPLES: &str = "examples";
/// Where the dev GitSource lives.
const SOURCE_NAMESPACE: &str = "winky-system";

fn webhook_url(addr: std::net::SocketAddr) -> String {
    format!("http://{addr}/hooks/github/{SOURCE_NAMESPACE}/{EXAMPLES}")
}

/// Serves a repository holding `examples/{notes,shop,chat}` under `deploy/`,
/// with a `post-receive` hook that delivers signed pushes to the operator's
/// webhook, and creates the GitSource (and its webhook Secret) that applies it.
fn examples_repository(dir: &Path, cp: &ControlPlane, webhook: std::net::SocketAddr) -> Result<GitServer> {
    let git = GitServer::start(&dir.join("git")).context("starting git daemon")?;
    let root = winky_e2e::workspace_root().join("examples");
    let mut files = Vec::new();
    for app in ["notes", "shop", "chat"] {
        collect(&root.join(app), &format!("deploy/{app}"), &mut files)?;
    }
    files.push((
        "README.md".into(),
        "The Winky examples, applied by the GitSource winky-system/examples.\n".into(),
    ));
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    // A repository from an earlier `make up` is kept, with what was pushed to it.
    let bare = match git.git_dir(EXAMPLES) {
        existing if existing.join("HEAD").is_file() => existing,
        _ => git.create(EXAMPLES, &borrowed)?,
    };
    let hook = bare.join("hooks/post-receive");
    let me = std::env::current_exe()?;
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n# Delivers a signed GitHub push event to the operator, as GitHub would.\nexec '{}' hook '{}'\n",
            me.display(),
            dir.display()
        ),
    )?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;

    let secret: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
    let secret_file = dir.join("webhook-secret");
    std::fs::write(&secret_file, &secret)?;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(dir.join("git-url"), format!("{}\n", git.url(EXAMPLES)))?;
    std::fs::write(dir.join("webhook-url"), format!("{}\n", webhook_url(webhook)))?;
    cp.kubectl(&[
        "create",
        "secret",
        "generic",
        "examples-webhook",
        "-n",
        SOURCE_NAMESPACE,
        &format!("--from-file=secret={}", secret_file.display()),
    ])?;
    let source = dir.join("gitsource.yaml");
    std::fs::write(
        &source,
        format!(
            "apiVersion: winky.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: {EXAMPLES}\n  namespace: {SOURCE_NAMESPACE}\n\
             spec:\n  url: {}\n  branch: main\n  path: deploy\n  interval: 5m\n  prune: true\n\
             \x20 webhook:\n    secretRef: {{name: examples-webhook, key: secret}}\n",
            git.url(EXAMPLES)
        ),
    )?;
    cp.kubectl(&["apply", "-f", &source.display().to_string()])?;
    Ok(git)
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

fn rand_byte() -> u8 {
    let mut byte = [0u8; 1];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut byte))
        .expect("/dev/urandom reads");
    byte[0]
}

/// `winky-dev hook DIR`: git's post-receive hook. What it prints, `git push` shows.
fn hook(dir: &Path) -> Result<()> {
    let read = |name: &str| -> Result<String> {
        Ok(std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("{}: is winky-dev up running?", dir.join(name).display()))?
            .trim()
            .to_string())
    };
    let (url, secret) = (read("webhook-url")?, read("webhook-secret")?);
    let mut stdin = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut stdin)?;
    for answer in winky_e2e::webhook::deliver_pushes(&url, secret.as_bytes(), "winky-dev/examples", &stdin)? {
        println!("winky webhook: {} {}", answer.status, answer.body.trim());
    }
    Ok(())
}
