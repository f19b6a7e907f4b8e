//! `winky-operator`: see `winky-operator --help`.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;
use winky_operator::cli::{Args, LogFormat};
use winky_operator::context::Settings;
use winky_operator::http::{self, Health};
use winky_operator::leader::LeaderConfig;
use winky_operator::run::{self, Options};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);

    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?
        }
        None => Config::infer()
            .await
            .context("no kubeconfig found and not running in a cluster")?,
    };
    let client = Client::try_from(config)?;

    let health = Arc::new(Health::default());
    let addr = args.metrics_addr;
    let server = http::serve(addr, health.clone());
    tokio::spawn(async move {
        if let Err(e) = server.await {
            error!(%addr, error = %e, "the metrics and health server stopped");
        }
    });
    info!(%addr, "serving /metrics, /healthz and /readyz");

    let identity = args.identity();
    let options = Options {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
        settings: Settings {
            vault_configured: args.vault_addr.is_some(),
        },
        leader: args
            .leader_elect
            .then(|| LeaderConfig::new(args.lease_namespace(), identity.clone())),
        identity,
        engine: args.engine.clone(),
        emulator_concurrency: args.emulator_concurrency.into(),
        git_cache_dir: args.git_cache_dir.clone(),
        webhook_addr: args.webhook_addr,
    };
    run::run(client, options, health, shutdown_signal()).await
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    info!("shutting down");
}
