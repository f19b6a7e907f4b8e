//! Prometheus metrics of the operator, served on `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a reconcile count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `app`, later `function`, `rule`, …
    pub controller: &'static str,
    /// `success`, `invalid` or `error`.
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

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Every metric, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<ReconcileLabels, Counter>,
    durations: HistogramFamily,
    errors: Family<ErrorLabels, Counter>,
    watch_errors: Family<ControllerLabels, Counter>,
    triggers: Family<TriggerLabels, Counter>,
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
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        Self {
            registry: Mutex::new(registry),
            reconciles,
            durations,
            errors,
            watch_errors,
            triggers,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a finished reconcile.
    pub fn reconciled(&self, controller: &'static str, result: &'static str, took: Duration) {
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
        m.reconciled("app", "success", Duration::from_millis(3));
        m.reconciled("app", "success", Duration::from_millis(5));
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
}
