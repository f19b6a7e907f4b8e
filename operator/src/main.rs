//! `winky-operator`: see `winky-operator --help`.

use std::ffi::OsStr;
use std::io::IsTerminal as _;
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
            ingress_class: args.ingress_class.clone(),
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
    // Logs go to stdout (the fmt default): colour only when that is a
    // terminal, never into a file or a pipe, and never with NO_COLOR set.
    let ansi = colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Whether log lines may carry ANSI colour codes: only on a terminal, and not
/// when `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    info!("shutting down");
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None), "a file or a pipe gets no colour codes");
        assert!(!colour(true, Some(OsStr::new("1"))), "NO_COLOR turns them off");
        assert!(colour(true, Some(OsStr::new(""))), "an empty NO_COLOR is unset");
    }
}
