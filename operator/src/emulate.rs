//! Emulator runs for each new revision of an App, in the background.
//!
//! The App controller asks [`EmulatorRunner::ensure`] after every reconcile;
//! a run starts when the App's bundle — its spec (the revision) and the specs
//! of its Functions and Rules — differs from the last one run, and never
//! twice at once for the same App. The result goes to `status.emulator` of
//! the App and of each Function, applied with the field manager
//! [`EMULATOR_MANAGER`]: the App and Function controllers never send that
//! field, so one owner per field, and an Event says how it went.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use winky_crds::function::FunctionEmulatorResult;
use winky_crds::{App, Function, Rule};
use winky_emulator::{Bundle, CheckKind, EmulatorReport, Engine};

use crate::driver;
use crate::events;
use crate::events::Recorder;
use crate::index::{AppKey, ByApp, OfApp};
use crate::metrics::{Metrics, ReconcileResult};
use crate::shared::Caches;

/// Where an App's Functions and Rules are found: the shared caches and
/// their indexes by App.
#[derive(Clone, Debug)]
pub struct Bundles {
    functions: Store<Function>,
    functions_by_app: ByApp<Function>,
    rules: Store<Rule>,
    rules_by_app: ByApp<Rule>,
}

impl Bundles {
    /// From the shared caches.
    pub fn of(caches: &Caches) -> Self {
        Self {
            functions: caches.functions.store.clone(),
            functions_by_app: caches.functions_by_app.clone(),
            rules: caches.rules.store.clone(),
            rules_by_app: caches.rules_by_app.clone(),
        }
    }

    /// The App with its Functions and Rules.
    fn bundle(&self, app: &App) -> Bundle {
        Bundle {
            app: app.clone(),
            functions: of_app(&self.functions, &self.functions_by_app, app),
            rules: of_app(&self.rules, &self.rules_by_app, app),
        }
    }
}

/// The objects in `store` that belong to `app`, sorted by name (the index's order).
fn of_app<K>(store: &Store<K>, index: &ByApp<K>, app: &App) -> Vec<K>
where
    K: OfApp + Clone + Send + Sync + 'static,
{
    let Some(key) = AppKey::of(app) else {
        return Vec::new();
    };
    index
        .get(&key)
        .iter()
        .filter_map(|reference| store.get(reference))
        // The index follows the store a step behind: what the store holds decides.
        .filter(|object| object.app_key().as_ref() == Some(&key))
        .map(|object| (*object).clone())
        .collect()
}

/// The field manager that owns `status.emulator`.
pub const EMULATOR_MANAGER: &str = "winky-operator-emulator";

/// Runs the emulator for Apps; one per operator.
pub struct EmulatorRunner {
    /// API client, to write results.
    pub client: kube::Client,
    /// The container engine the checks run in.
    pub engine: Engine,
    /// Publishes a run's Event.
    pub recorder: Recorder,
    /// Counts runs.
    pub metrics: Arc<Metrics>,
    /// Where each App's Functions and Rules are.
    pub bundles: Bundles,
    /// Per App (`namespace/name`): the bundle hash last run or running.
    seen: Mutex<HashMap<String, String>>,
    /// One permit per run that may use the engine at once: a burst of new
    /// revisions must not start a container per App all together.
    slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for EmulatorRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorRunner")
            .field("engine", &self.engine.socket())
            .finish_non_exhaustive()
    }
}

impl EmulatorRunner {
    /// A runner of at most `concurrency` runs at once (at least one).
    pub fn new(
        client: kube::Client,
        engine: Engine,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        bundles: Bundles,
        concurrency: usize,
    ) -> Self {
        Self {
            client,
            engine,
            recorder,
            metrics,
            bundles,
            seen: Mutex::default(),
            slots: tokio::sync::Semaphore::new(concurrency.max(1)),
        }
    }

    /// Forgets a deleted App, so the memory of past runs does not grow with
    /// every App that ever existed.
    pub fn forget(&self, app: &App) {
        let key = driver::key(app);
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }

    /// Starts a run when the App's bundle changed since the last one.
    pub fn ensure(self: &Arc<Self>, app: &App) {
        let bundle = self.bundles.bundle(app);
        let hash = bundle_hash(&bundle);
        let key = driver::key(app);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.get(&key) == Some(&hash) {
                return;
            }
            seen.insert(key.clone(), hash.clone());
        }
        let runner = self.clone();
        tokio::spawn(async move { runner.run(bundle, key, hash).await });
    }

    /// Called when the App controller stops: waiting runs never start, and
    /// running ones finish (so their containers are removed) but write no
    /// result — an operator that stopped may no longer lead.
    pub fn stop(&self) {
        self.slots.close();
    }

    /// Whether [`EmulatorRunner::stop`] was called: its closed slots say so.
    fn stopped(&self) -> bool {
        self.slots.is_closed()
    }

    async fn run(&self, bundle: Bundle, key: String, hash: String) {
        let newest = || self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(&key) == Some(&hash);
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        // The App changed again while this run waited: the newer run will do.
        if !newest() {
            info!(app = %key, "a newer bundle is waiting; this run is skipped");
            return;
        }
        let report = winky_emulator::run(&bundle, Some(&self.engine)).await;
        if self.stopped() {
            return;
        }
        // Runs of one App can overlap when it changes quickly; only the run of
        // the newest bundle may write its result.
        if !newest() {
            info!(app = %report.app, "a newer bundle is being emulated; this result is dropped");
            return;
        }
        info!(app = %report.app, revision = %report.revision, passed = report.passed,
              checks = report.checks.len(), took_ms = report.duration_ms, "emulator run");
        self.metrics.reconciled(
            "emulator",
            if report.passed {
                ReconcileResult::Passed
            } else {
                ReconcileResult::Failed
            },
            std::time::Duration::from_millis(report.duration_ms),
        );
        if let Err(e) = self.publish(&bundle, &report).await {
            warn!(app = %report.app, error = %e, "writing the emulator result");
        }
    }

    async fn publish(&self, bundle: &Bundle, report: &EmulatorReport) -> Result<(), kube::Error> {
        let params = kube::api::PatchParams::apply(EMULATOR_MANAGER).force();
        let namespace = bundle.app.namespace().unwrap_or_default();
        let apps: kube::Api<App> = kube::Api::namespaced(self.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App",
            "status": {"emulator": report.summary()},
        });
        apps.patch_status(&bundle.name(), &params, &kube::api::Patch::Apply(&patch))
            .await?;
        let functions: kube::Api<Function> = kube::Api::namespaced(self.client.clone(), &namespace);
        for function in &bundle.functions {
            // Stopped meanwhile (leadership lost): write nothing more.
            if self.stopped() {
                return Ok(());
            }
            let name = function.name_any();
            let prefix = format!("{name}/");
            let cases: Vec<_> = report
                .checks
                .iter()
                .filter(|c| c.kind == CheckKind::Function && c.name.starts_with(&prefix))
                .collect();
            let passed = cases.iter().filter(|c| c.passed).count() as i32;
            let result = FunctionEmulatorResult {
                revision: report.revision.clone(),
                passed: passed == cases.len() as i32,
                cases_passed: passed,
                cases_failed: cases.len() as i32 - passed,
            };
            let patch = serde_json::json!({
                "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
                "status": {"emulator": result},
            });
            functions
                .patch_status(&name, &params, &kube::api::Patch::Apply(&patch))
                .await?;
        }
        if self.stopped() {
            return Ok(());
        }
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect();
        let event = if report.passed {
            Event {
                type_: EventType::Normal,
                reason: "EmulatorPassed".into(),
                note: Some(format!(
                    "revision {}: {} checks passed in {} ms",
                    report.revision,
                    report.checks.len(),
                    report.duration_ms
                )),
                action: "Emulate".into(),
                secondary: None,
            }
        } else {
            let note = events::truncate(
                &format!(
                    "revision {}: {} of {} checks failed: {}",
                    report.revision,
                    failed.len(),
                    report.checks.len(),
                    failed.join(", ")
                ),
                1000,
            );
            Event {
                type_: EventType::Warning,
                reason: "EmulatorFailed".into(),
                note: Some(note),
                action: "Emulate".into(),
                secondary: None,
            }
        };
        events::publish(&self.recorder, &bundle.app.object_ref(&()), vec![event]).await;
        Ok(())
    }
}

/// A hash of everything the emulator checks: the App's revision and the
/// specs of its Functions and Rules.
pub fn bundle_hash(bundle: &Bundle) -> String {
    let mut hash = Sha256::new();
    hash.update(winky_emulator::revision(&bundle.app));
    for function in &bundle.functions {
        hash.update(function.name_any());
        hash.update(serde_json::to_vec(&function.spec).unwrap_or_default());
    }
    for rule in &bundle.rules {
        hash.update(rule.name_any());
        hash.update(serde_json::to_vec(&rule.spec).unwrap_or_default());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
