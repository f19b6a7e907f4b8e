//! What every controller's context holds ([`Core`]), and what a controller
//! is to the [`crate::driver`]: a name and a core ([`ControllerContext`]).
//! Each controller adds what only it reads (its caches, its settings).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::Reporter;
use rand::Rng;

use crate::events::Recorder;
use crate::metrics::Metrics;

/// Settings that change what the operator can provide.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Whether a Vault address was given.
    pub vault_configured: bool,
    /// IngressClass of the Ingress of a public App that names none
    /// (`--ingress-class`); the cluster's default class when `None`.
    pub ingress_class: Option<String>,
}

/// What every controller's context holds: what the driver needs to write
/// status, publish Events, count and back off.
pub struct Core {
    /// API client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Retry delays of the controller's failing objects.
    pub backoffs: Backoffs,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("recorder", &self.recorder)
            .field("backoffs", &self.backoffs)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core whose Events name `identity` as the reporting instance.
    pub fn new(client: Client, identity: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            recorder: recorder(&client, identity),
            client,
            metrics,
            backoffs: Backoffs::default(),
        }
    }
}

/// The Event recorder of every controller: `reportingController`
/// `winky-operator`, `reportingInstance` this replica's identity.
pub fn recorder(client: &Client, identity: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "winky-operator".into(),
            instance: Some(identity.to_string()),
        },
    )
}

/// A controller's context, as the [`crate::driver`] sees it. Static: the
/// driver's functions are generic over it, so there is no dispatch.
pub trait ControllerContext: Send + Sync + 'static {
    /// Name of the controller in metrics and logs.
    const NAME: &'static str;

    /// What every controller's context holds.
    fn core(&self) -> &Core;
}

/// Consecutive failures per object, for exponential backoff with jitter.
#[derive(Debug, Default)]
pub struct Backoffs(Mutex<HashMap<String, u32>>);

impl Backoffs {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        backoff(*n, rand::rng().random_range(0.8..1.2))
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// Exponential backoff from 1 s, capped at 5 min, scaled by `jitter`.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let base = 2f64.powi(failures.saturating_sub(1).min(16) as i32).min(300.0);
    Duration::from_secs_f64(base * jitter)
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_five_minutes() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(5, 1.0), Duration::from_secs(16));
        assert_eq!(backoff(40, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(3, 1.1), Duration::from_secs_f64(4.4));
    }
}
