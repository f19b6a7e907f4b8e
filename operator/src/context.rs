//! What every reconcile shares: the client, caches, the Event recorder and metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::events::Recorder;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use rand::Rng;
use winky_crds::PromotionPolicy;

use crate::metrics::Metrics;

/// Settings that change what the operator can provide.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Whether a Vault address was given.
    pub vault_configured: bool,
}

/// Reflector caches, so a reconcile never lists. Only what a reconcile reads
/// is cached; the other children are watched (by metadata) as triggers only.
#[derive(Clone, Debug)]
pub struct Stores {
    /// PromotionPolicies, to check that the one an App names exists.
    pub policies: Store<PromotionPolicy>,
    /// Metadata of the PodDisruptionBudgets the operator manages: the one
    /// child that can stop being desired, so the one that may need deleting.
    pub pod_disruption_budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
}

/// Shared state of the controllers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: Settings,
    /// Caches.
    pub stores: Stores,
    /// Resolves once the caches a reconcile reads have listed.
    pub listed: crate::listed::Listed,
    /// Retry delays of failing Apps.
    pub backoffs: Backoffs,
    /// Runs the emulator for new revisions, when an engine was given.
    pub emulator: Option<Arc<crate::emulate::EmulatorRunner>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
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
