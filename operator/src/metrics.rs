//! Prometheus metrics of the operator, served on `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a reconcile ended: the `result` label of `winky_reconciles_total`,
/// one set for every controller (and the emulator's runs), so that a label
/// means the same wherever it appears. Errors a reconcile returns are not
/// here: they are counted by category in `winky_reconcile_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReconcileResult {
    /// The object was brought to its spec (or, for a GitSource, its commit
    /// applied).
    Success,
    /// The spec cannot be satisfied: reported in status, and nothing more
    /// happens until it or what it names changes.
    Invalid,
    /// The object is being deleted: its children go with it.
    Deleting,
    /// The spec says to do nothing (`spec.suspend`).
    Suspended,
    /// The work failed in a way that is retried, and the failure is reported
    /// in status (a GitSource's sync); counted in `winky_reconcile_errors_total` too.
    Error,
    /// An emulator run whose checks all passed.
    Passed,
    /// An emulator run with a failed check.
    Failed,
}

impl ReconcileResult {
    /// Every result, for documentation and tests.
    pub const ALL: [ReconcileResult; 7] = [
        ReconcileResult::Success,
        ReconcileResult::Invalid,
        ReconcileResult::Deleting,
        ReconcileResult::Suspended,
        ReconcileResult::Error,
        ReconcileResult::Passed,
        ReconcileResult::Failed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Success => "success",
            ReconcileResult::Invalid => "invalid",
            ReconcileResult::Deleting => "deleting",
            ReconcileResult::Suspended => "suspended",
            ReconcileResult::Error => "error",
            ReconcileResult::Passed => "passed",
            ReconcileResult::Failed => "failed",
        }
    }
}

/// Labels of a reconcile count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `app`, `function`, `rule`, `gitsource` or `emulator`.
    pub controller: &'static str,
    /// [`ReconcileResult::as_str`].
    pub result: &'static str,
}

/// Labels of a duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller.
    pub controller: &'static str,
}

/// Labels of an error count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller.
    pub controller: &'static str,
    /// [`crate::error::Error::category`].
    pub category: &'static str,
}

/// Labels of a trigger count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// The controller woken.
    pub controller: &'static str,
    /// The kind whose change woke it.
    pub source: &'static str,
}

/// Labels of a webhook delivery count. Both come from fixed sets, so a
/// sender cannot grow the series: see [`crate::webhook`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `ping`, `push`, `pull_request`, `issue_comment`, `pull_request_review`,
    /// `other` (a GitHub event the operator ignores) or `unknown` (missing or
    /// not a GitHub event).
    pub event: &'static str,
    /// `accepted`, `ignored`, `unsigned`, `bad_signature`, `replayed`,
    /// `too_large`, `malformed`, `not_found`, `rate_limited` or `unavailable`.
    pub result: &'static str,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Labels of a rollback: one series per App stage that was ever rolled back.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RollbackLabels {
    /// The App's namespace.
    pub namespace: String,
    /// The App.
    pub app: String,
    /// The stage rolled back.
    pub stage: String,
    /// `slo_breach` (the operator, on a breach while the stage was watched) or `command` (`/rollback`).
    pub cause: &'static str,
}

/// Labels of a per-GitSource gauge (there are few GitSources).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The GitSource's namespace.
    pub namespace: String,
    /// The GitSource's name.
    pub name: String,
}

/// Every metric, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<ReconcileLabels, Counter>,
    durations: HistogramFamily,
    errors: Family<ErrorLabels, Counter>,
    watch_errors: Family<ControllerLabels, Counter>,
    triggers: Family<TriggerLabels, Counter>,
    webhook_deliveries: Family<WebhookLabels, Counter>,
    git_fetch_durations: Histogram,
    git_sync_durations: Histogram,
    git_last_applied: Family<SourceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    rollbacks: Family<RollbackLabels, Counter>,
    /// 1 while this replica holds the leader Lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("winky");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let durations: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 14)));
        let errors = Family::<ErrorLabels, Counter>::default();
        let leader = Gauge::default();
        let watch_errors = Family::<ControllerLabels, Counter>::default();
        let triggers = Family::<TriggerLabels, Counter>::default();
        let webhook_deliveries = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "watch_errors",
            "Failed lists and watches of a controller's inputs (retried with backoff; a 403 here is missing RBAC)",
            watch_errors.clone(),
        );
        registry.register(
            "triggers",
            "Reconciles requested by a change of another kind, by controller and that kind",
            triggers.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles by controller",
            durations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller and category",
            errors.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "GitHub webhook deliveries received, by event and what the operator did with them",
            webhook_deliveries.clone(),
        );
        let git_fetch_durations = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let git_sync_durations = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        let git_last_applied = Family::<SourceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "gitsource_fetch_duration_seconds",
            "Time to list the protected branch of a GitSource and, when its head moved, fetch and read it",
            git_fetch_durations.clone(),
        );
        registry.register(
            "gitsource_sync_duration_seconds",
            "Time to dry-run, apply and prune one commit's objects",
            git_sync_durations.clone(),
        );
        registry.register(
            "gitsource_last_applied_timestamp_seconds",
            "When a GitSource's commit was last applied completely (Unix time)",
            git_last_applied.clone(),
        );
        let rollbacks = Family::<RollbackLabels, Counter>::default();
        registry.register(
            "promotion_rollbacks",
            "Stages rolled back to their previous revision, by App, stage and cause",
            rollbacks.clone(),
        );
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        Self {
            registry: Mutex::new(registry),
            reconciles,
            durations,
            errors,
            watch_errors,
            triggers,
            webhook_deliveries,
            git_fetch_durations,
            git_sync_durations,
            git_last_applied,
            rollbacks,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a finished reconcile.
    pub fn reconciled(&self, controller: &'static str, result: ReconcileResult, took: Duration) {
        let result = result.as_str();
        self.reconciles
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        self.durations
            .get_or_create(&ControllerLabels { controller })
            .observe(took.as_secs_f64());
    }

    /// Counts an error.
    pub fn failed(&self, controller: &'static str, category: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, category })
            .inc();
    }

    /// Counts a failed list or watch.
    pub fn watch_failed(&self, controller: &'static str) {
        self.watch_errors
            .get_or_create(&ControllerLabels { controller })
            .inc();
    }

    /// Counts a change of `source` that woke `controller`.
    pub fn triggered(&self, controller: &'static str, source: &'static str) {
        self.triggers
            .get_or_create(&TriggerLabels { controller, source })
            .inc();
    }

    /// Counts a GitHub webhook delivery by event and result.
    pub fn webhook_delivery(&self, event: &'static str, result: &'static str) {
        self.webhook_deliveries
            .get_or_create(&WebhookLabels { event, result })
            .inc();
    }

    /// Observes one fetch of a GitSource.
    pub fn git_fetched(&self, took: Duration) {
        self.git_fetch_durations.observe(took.as_secs_f64());
    }

    /// Observes one dry-run, apply and prune of a commit.
    pub fn git_synced(&self, took: Duration) {
        self.git_sync_durations.observe(took.as_secs_f64());
    }

    /// Records that the GitSource `namespace/name` applied its commit at `at`.
    pub fn git_applied(&self, namespace: &str, name: &str, at: k8s_openapi::jiff::Timestamp) {
        let labels = SourceLabels {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        self.git_last_applied
            .get_or_create(&labels)
            .set(at.as_millisecond() as f64 / 1000.0);
    }

    /// Counts a rollback of `stage` of App `namespace/app`.
    pub fn rolled_back(&self, namespace: &str, app: &str, stage: &str, cause: &'static str) {
        let labels = RollbackLabels {
            namespace: namespace.to_string(),
            app: app.to_string(),
            stage: stage.to_string(),
            cause,
        };
        self.rollbacks.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_and_errors_by_label() {
        let m = Metrics::default();
        m.reconciled("app", ReconcileResult::Success, Duration::from_millis(3));
        m.reconciled("app", ReconcileResult::Success, Duration::from_millis(5));
        m.failed("app", "apply");
        let text = m.encode();
        assert!(
            text.contains(r#"winky_reconciles_total{controller="app",result="success"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"winky_reconcile_errors_total{controller="app",category="apply"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"winky_reconcile_duration_seconds_count{controller="app"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn reconcile_results_are_distinct_snake_case_labels_and_documented() {
        let labels: Vec<&str> = ReconcileResult::ALL.iter().map(|r| r.as_str()).collect();
        let distinct: std::collections::HashSet<&str> = labels.iter().copied().collect();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
        assert!(
            labels
                .iter()
                .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
            "{labels:?}"
        );
        // docs/operator.md's metrics table names every one of them.
        let docs = include_str!("../../docs/operator.md");
        let row = docs
            .lines()
            .find(|l| l.starts_with("| `winky_reconciles_total`"))
            .expect("a row for winky_reconciles_total");
        for label in labels {
            assert!(
                row.contains(&format!("`{label}`")),
                "{label} is missing from: {row}"
            );
        }
    }

    #[test]
    fn counts_webhook_deliveries_by_event_and_result() {
        let m = Metrics::default();
        m.webhook_delivery("push", "accepted");
        m.webhook_delivery("unknown", "unsigned");
        m.webhook_delivery("unknown", "unsigned");
        let text = m.encode();
        assert!(
            text.contains(r#"winky_webhook_deliveries_total{event="push",result="accepted"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"winky_webhook_deliveries_total{event="unknown",result="unsigned"} 2"#),
            "{text}"
        );
    }
}
