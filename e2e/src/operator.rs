//! Running the operator against the local control plane: in-process (one
//! instance per test namespace) or as the real `winky-operator` binary.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, bail};
use kube::Client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use winky_operator::http::Health;
use winky_operator::leader::LeaderConfig;
use winky_operator::run::{Options, run};

use crate::workspace_root;

/// An operator running in this process, watching one namespace.
#[derive(Debug)]
pub struct InProcessOperator {
    /// Its health and metrics.
    pub health: Arc<Health>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcessOperator {
    /// Starts an operator for `namespace`, electing a leader through a Lease there.
    pub fn start(client: Client, namespace: &str, identity: &str) -> Self {
        Self::start_with_engine(client, namespace, identity, None)
    }

    /// Like [`InProcessOperator::start`], with the emulator running in the
    /// container engine behind `engine` (a Docker API socket).
    pub fn start_with_engine(
        client: Client,
        namespace: &str,
        identity: &str,
        engine: Option<PathBuf>,
    ) -> Self {
        Self::start_with(client, namespace, identity, |options| options.engine = engine)
    }

    /// Like [`InProcessOperator::start`], with `configure` changing the options first.
    pub fn start_with(
        client: Client,
        namespace: &str,
        identity: &str,
        configure: impl FnOnce(&mut Options),
    ) -> Self {
        let health = Arc::new(Health::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let mut options = Options {
            namespace: Some(namespace.to_string()),
            concurrency: 4,
            settings: Default::default(),
            leader: Some(LeaderConfig::new(namespace, identity)),
            identity: identity.to_string(),
            engine: None,
            emulator_concurrency: 2,
            git_cache_dir: workspace_root().join(format!("target/e2e/git-cache/{namespace}-{identity}")),
            webhook_addr: None,
        };
        configure(&mut options);
        let task = tokio::spawn(run(client, options, health.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            health,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the operator and waits for it (its Lease is released).
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }

    /// Value of a counter or gauge sample in the metrics exposition, 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.health.metrics.encode(), sample)
    }
}

impl Drop for InProcessOperator {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The value of the sample whose name and labels are exactly `sample`.
pub fn metric_value(exposition: &str, sample: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Path of the `winky-operator` binary built next to the test binary.
pub fn operator_binary() -> Result<PathBuf> {
    workspace_binary("winky-operator")
}

/// Path of a binary of the workspace (`winky`, `winky-operator`) built next to
/// the test binary; `make test` builds them all first.
pub fn workspace_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe.parent().and_then(|d| d.parent()).map(PathBuf::from);
    let candidates = [
        profile_dir.map(|d| d.join(name)),
        Some(workspace_root().join("target/debug").join(name)),
    ];
    for path in candidates.into_iter().flatten() {
        if path.is_file() {
            return Ok(path);
        }
    }
    bail!("the {name} binary is not built: run `cargo build --workspace --bins` (make test does)")
}

/// The `winky-operator` binary for one namespace, without leader election
/// (one replica at a time), killed with SIGKILL when dropped: no graceful
/// shutdown, as when a node dies. Its output is appended to `log`;
/// `WINKY_FAULT_LOG` sets its `RUST_LOG` (default `warn,winky_operator=info`).
#[derive(Debug)]
pub struct OperatorProcess(std::process::Child);

impl OperatorProcess {
    /// Starts it against the control plane of `kubeconfig`.
    pub fn start(kubeconfig: &std::path::Path, namespace: &str, log: &std::path::Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        let child = std::process::Command::new(operator_binary().unwrap_or_else(|e| panic!("{e}")))
            .args([
                "--kubeconfig",
                &kubeconfig.display().to_string(),
                "--namespace",
                namespace,
                "--leader-elect=false",
                "--metrics-addr=127.0.0.1:0",
                "--concurrency=4",
            ])
            .env(
                "RUST_LOG",
                std::env::var("WINKY_FAULT_LOG").unwrap_or_else(|_| "warn,winky_operator=info".into()),
            )
            .stdout(std::process::Stdio::from(
                log.try_clone().expect("a log file handle"),
            ))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting winky-operator: {e}"));
        Self(child)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
