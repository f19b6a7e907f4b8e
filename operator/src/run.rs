//! Running the operator: leader election, the shared watches, the
//! controllers (each module builds its own: [`app::controller`],
//! [`function::controller`], [`rule::controller`], [`gitsource::controller`],
//! [`promotion::controller`])
//! and shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Client;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::context::Settings;
use crate::http::Health;
use crate::leader::{self, LeaderConfig};
use crate::shared::Watches;
use crate::{app, function, gitsource, promotion, rule};

/// How long running reconciles get to finish at shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Time kept free between a lost leader's last act and the Lease's expiry:
/// for requests already sent when its controllers are aborted, and for clocks
/// that disagree a little.
const HANDOVER_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    /// Most concurrent reconciles (0: unlimited).
    pub concurrency: u16,
    /// What the operator can provide.
    pub settings: Settings,
    /// Leader election, or none when exactly one replica runs.
    pub leader: Option<LeaderConfig>,
    /// Name in Events (`reportingController`'s instance).
    pub identity: String,
    /// The container engine the emulator runs in, if any.
    pub engine: Option<std::path::PathBuf>,
    /// Most emulator runs at once (at least one).
    pub emulator_concurrency: usize,
    /// Where GitSources keep their bare cache repositories.
    pub git_cache_dir: std::path::PathBuf,
    /// Where the GitHub webhook receiver listens, if anywhere.
    pub webhook_addr: Option<std::net::SocketAddr>,
}

/// Runs the controllers until `shutdown` resolves (then returns `Ok`) or
/// leadership is lost (then returns the error, and the process should exit).
pub async fn run(
    client: Client,
    options: Options,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let version = client.apiserver_version().await?;
    info!(apiserver = %version.git_version, namespace = options.namespace.as_deref().unwrap_or("<all>"), "connected");
    // A follower is healthy and ready too: it only waits for the Lease.
    health.ready.store(true, Ordering::Relaxed);

    let mut shutdown = Box::pin(shutdown);
    let mut renewed = None;
    if let Some(config) = &options.leader {
        tokio::select! {
            acquired = leader::acquire(&client, config) => renewed = Some(acquired),
            _ = &mut shutdown => return Ok(()),
        }
        health.metrics.leader.set(1);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    };
    let metrics = &health.metrics;
    // Every subscription to the shared watches is made here, by the
    // constructors, before anything is listed: none misses the first list.
    let mut watches = Watches::new(&client, options.namespace.as_deref());
    let controllers = (
        app::controller(&client, &options, &mut watches, metrics, stop()),
        function::controller(&client, &options, &mut watches, metrics, stop()),
        rule::controller(&client, &options, &mut watches, metrics, stop()),
        gitsource::controller(&client, &options, &mut watches, metrics, stop()),
        promotion::controller(&client, &options, &mut watches, metrics, stop()),
    );
    let watched = watches.run(metrics.clone(), stop());
    let mut controller = tokio::spawn(async move {
        let (app, function, rule, gitsource, promotion) = controllers;
        futures::join!(watched, app, function, rule, gitsource, promotion);
    });

    let lost = async {
        match (&options.leader, renewed) {
            (Some(config), Some(renewed)) => leader::hold(&client, config, renewed).await,
            _ => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = &mut shutdown => Ok(()),
        lost = lost => Err(anyhow::Error::new(lost)),
        ended = &mut controller => Err(anyhow::anyhow!("the controllers stopped unexpectedly: {ended:?}")),
    };
    let _ = stop_tx.send(true);
    // A graceful shutdown lets running reconciles finish; a reconcile stuck
    // on an unanswered request must not hold the process, so it gets a
    // deadline after which the controller is aborted. A leader that lost its
    // Lease must have stopped before another replica can take it.
    let grace = shutdown_grace(options.leader.as_ref());
    if tokio::time::timeout(grace, &mut controller).await.is_err() {
        warn!(?grace, "the controllers did not stop in time; aborting them");
        controller.abort();
    }
    health.metrics.leader.set(0);
    if let (Some(config), Ok(())) = (&options.leader, &outcome) {
        leader::release(&client, config).await;
    }
    outcome
}

/// How long running reconciles get to finish at shutdown: [`SHUTDOWN_GRACE`],
/// and shorter, by [`HANDOVER_MARGIN`], than what a lost Lease leaves before
/// another replica can lead.
fn shutdown_grace(leader: Option<&LeaderConfig>) -> std::time::Duration {
    leader.map_or(SHUTDOWN_GRACE, |config| {
        SHUTDOWN_GRACE.min(
            config
                .lease_duration
                .saturating_sub(config.renew_deadline)
                .saturating_sub(HANDOVER_MARGIN),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{SHUTDOWN_GRACE, shutdown_grace};
    use crate::leader::LeaderConfig;
    use std::time::Duration;

    #[test]
    fn a_lost_leader_stops_before_the_lease_can_be_taken() {
        let defaults = LeaderConfig::new("ns", "a");
        let grace = shutdown_grace(Some(&defaults));
        assert_eq!(grace, Duration::from_secs(4));
        assert!(defaults.renew_deadline + grace < defaults.lease_duration);
        let tight = LeaderConfig {
            renew_deadline: Duration::from_secs(13),
            ..defaults
        };
        assert_eq!(shutdown_grace(Some(&tight)), Duration::from_secs(1));
        assert_eq!(shutdown_grace(None), SHUTDOWN_GRACE);
    }
}
