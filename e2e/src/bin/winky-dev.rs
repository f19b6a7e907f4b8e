//! `winky-dev up`: the local development environment — a real control plane
//! with the Winky CRDs and the `winky-operator` binary — until interrupted.
//!
//! `make up` runs it in the background and `make down` stops it; every process
//! it starts stops with it. It writes into the directory given (default `.dev`):
//!   kubeconfig   admin kubeconfig (`KUBECONFIG=.dev/kubeconfig kubectl get winky -A`)
//!   kubectl      the kubectl built with the control plane, same version
//!   ready        written once everything runs; holds the apiserver URL
//!   run-*/       logs of etcd, kube-apiserver, kube-controller-manager, the operator

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use winky_e2e::{Component, ControlPlane, operator_binary};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".dev".into()));
    match command.as_str() {
        "up" => up(&dir),
        _ => {
            eprintln!(
                "usage: winky-dev up [DIR]\n\n\
                 Starts etcd, kube-apiserver, kube-controller-manager and winky-operator on loopback\n\
                 ports, writes DIR/kubeconfig (DIR defaults to .dev) and runs until interrupted.\n\
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
    let mut operator = Component::spawn(
        "winky-operator",
        &operator_binary()?,
        &[
            format!("--kubeconfig={}", cp.kubeconfig().display()),
            format!("--metrics-addr={metrics}"),
            "--lease-namespace=winky-system".into(),
            "--identity=winky-dev".into(),
            format!("--engine={}", engine.socket().display()),
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
    drop(cp);
    Ok(())
}
