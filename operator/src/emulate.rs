//! Emulator runs for each new revision of an App, in the background.
//!
//! The App controller asks [`EmulatorRunner::ensure`] after every reconcile;
//! a run starts when the App's [`digest`] — its spec (the revision), the
//! specs of its Functions and Rules and the ids of their images in the
//! engine — differs from the last one run, or when the annotation
//! [`REQUESTED_AT_ANNOTATION`] holds a value no run handled yet; only the
//! newest run of an App writes its result. The result goes to
//! `status.emulator` of the App (with the failed checks, the digest and the
//! handled request value in `status.lastHandledRequestedAt`) and of each
//! Function, applied with the field manager [`EMULATOR_MANAGER`]: the App
//! and Function controllers never send those fields, so one owner per
//! field, and an Event says how it went. What the status records is what a
//! restarted operator starts from: a digest or request already handled does
//! not run again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};
use winky_crds::app::EmulatorSummary;
use winky_crds::function::FunctionEmulatorResult;
use winky_crds::keys::REQUESTED_AT_ANNOTATION;
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

/// The field manager that owns `status.emulator` and
/// `status.lastHandledRequestedAt`.
pub const EMULATOR_MANAGER: &str = "winky-operator-emulator";

/// What the runner remembers of one App.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AppRuns {
    /// Ticket of the latest [`EmulatorRunner::ensure`]: only it decides
    /// whether to run, as it read the newest App.
    ensured: u64,
    /// The digest last run or running.
    digest: Option<String>,
    /// The request value last run or running.
    requested: Option<String>,
    /// Id of the newest run: only its result is written.
    run: u64,
}

impl AppRuns {
    /// What the App's status says was handled: a restarted operator does
    /// not run what its predecessor did.
    fn seeded(app: &App) -> Self {
        let status = app.status.as_ref();
        Self {
            digest: status
                .and_then(|s| s.emulator.as_ref())
                .and_then(|e| e.digest.clone()),
            requested: status.and_then(|s| s.last_handled_requested_at.clone()),
            ..Self::default()
        }
    }

    /// Starts run `run` when `digest` was not run yet, or `requested` is a
    /// request value not handled yet; returns whether it did.
    fn start(&mut self, digest: &str, requested: Option<&str>, run: u64) -> bool {
        let new_digest = self.digest.as_deref() != Some(digest);
        let new_request = requested.is_some() && self.requested.as_deref() != requested;
        if !new_digest && !new_request {
            return false;
        }
        self.digest = Some(digest.to_string());
        if requested.is_some() {
            self.requested = requested.map(str::to_string);
        }
        self.run = run;
        true
    }
}

/// The value of the App's [`REQUESTED_AT_ANNOTATION`], if any.
pub fn requested_at(app: &App) -> Option<String> {
    app.annotations().get(REQUESTED_AT_ANNOTATION).cloned()
}

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
    /// Per App (`namespace/name`): what was run, is running or decides.
    runs: Mutex<HashMap<String, AppRuns>>,
    /// Tickets of `ensure` and ids of runs, never reused.
    counter: AtomicU64,
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
            runs: Mutex::default(),
            counter: AtomicU64::new(0),
            slots: tokio::sync::Semaphore::new(concurrency.max(1)),
        }
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<String, AppRuns>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Forgets a deleted App, so the memory of past runs does not grow with
    /// every App that ever existed.
    pub fn forget(&self, app: &App) {
        self.runs().remove(&driver::key(app));
    }

    /// Starts a run when the App's digest changed since the last run, or its
    /// request annotation holds a value not handled yet. The images' ids are
    /// asked of the engine in the background: the reconcile never waits.
    pub fn ensure(self: &Arc<Self>, app: &App) {
        if self.stopped() {
            return;
        }
        let bundle = self.bundles.bundle(app);
        let key = driver::key(app);
        let requested = requested_at(app);
        let ticket = self.next();
        self.runs()
            .entry(key.clone())
            .or_insert_with(|| AppRuns::seeded(app))
            .ensured = ticket;
        let runner = self.clone();
        tokio::spawn(async move {
            let images = runner.image_ids(&bundle).await;
            let digest = digest(&bundle, &images);
            let run = runner.next();
            let started = {
                let mut runs = runner.runs();
                match runs.get_mut(&key) {
                    // A later ensure read a newer App: it decides.
                    Some(entry) if entry.ensured == ticket => entry.start(&digest, requested.as_deref(), run),
                    _ => false,
                }
            };
            if started {
                runner.run(bundle, key, digest, requested, run).await;
            }
        });
    }

    /// The id in the engine of every image the bundle runs (the App's and
    /// its Functions'), by name; `None` for one the engine does not have or
    /// could not say.
    async fn image_ids(&self, bundle: &Bundle) -> BTreeMap<String, Option<String>> {
        let mut ids = BTreeMap::new();
        let names =
            std::iter::once(&bundle.app.spec.image).chain(bundle.functions.iter().map(|f| &f.spec.image));
        for name in names {
            if ids.contains_key(name) {
                continue;
            }
            let id = self
                .engine
                .image_id(name)
                .await
                .inspect_err(|e| debug!(image = %name, error = %e, "asking the engine for an image's id"))
                .ok()
                .flatten();
            ids.insert(name.clone(), id);
        }
        ids
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

    async fn run(&self, bundle: Bundle, key: String, digest: String, requested: Option<String>, run: u64) {
        let newest = || self.runs().get(&key).is_some_and(|r| r.run == run);
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        // The App changed again while this run waited: the newer run will do.
        if !newest() {
            info!(app = %key, "a newer run is waiting; this run is skipped");
            return;
        }
        let report = winky_emulator::run(&bundle, Some(&self.engine)).await;
        if self.stopped() {
            return;
        }
        // Runs of one App can overlap when it changes quickly; only the
        // newest run may write its result.
        if !newest() {
            info!(app = %report.app, "a newer run is under way; this result is dropped");
            return;
        }
        info!(app = %report.app, revision = %report.revision, passed = report.passed,
              checks = report.checks.len(), took_ms = report.duration_ms,
              requested = requested.as_deref().unwrap_or_default(), "emulator run");
        self.metrics.reconciled(
            "emulator",
            if report.passed {
                ReconcileResult::Passed
            } else {
                ReconcileResult::Failed
            },
            std::time::Duration::from_millis(report.duration_ms),
        );
        let mut summary = report.summary();
        summary.finished_at = Some(Timestamp::now().to_string());
        summary.digest = Some(digest);
        if let Err(e) = self.publish(&bundle, &report, &summary, requested).await {
            warn!(app = %report.app, error = %e, "writing the emulator result");
        }
    }

    async fn publish(
        &self,
        bundle: &Bundle,
        report: &EmulatorReport,
        summary: &EmulatorSummary,
        requested: Option<String>,
    ) -> Result<(), kube::Error> {
        let params = kube::api::PatchParams::apply(EMULATOR_MANAGER).force();
        let namespace = bundle.app.namespace().unwrap_or_default();
        let apps: kube::Api<App> = kube::Api::namespaced(self.client.clone(), &namespace);
        apps.patch_status(
            &bundle.name(),
            &params,
            &kube::api::Patch::Apply(&app_status_patch(summary, requested.as_deref())),
        )
        .await?;
        // The Event comes with the App's status, whatever becomes of the
        // Functions' (one may be gone by now): it must never lag behind.
        events::publish(
            &self.recorder,
            &bundle.app.object_ref(&()),
            vec![run_event(summary, report.duration_ms)],
        )
        .await;
        let functions: kube::Api<Function> = kube::Api::namespaced(self.client.clone(), &namespace);
        for function in &bundle.functions {
            // Stopped meanwhile (leadership lost): write nothing more.
            if self.stopped() {
                return Ok(());
            }
            let name = function.name_any();
            let patch = serde_json::json!({
                "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
                "status": {"emulator": function_result(report, &name)},
            });
            if let Err(e) = functions
                .patch_status(&name, &params, &kube::api::Patch::Apply(&patch))
                .await
            {
                warn!(function = %name, error = %e, "writing a Function's emulator result");
            }
        }
        Ok(())
    }
}

/// The apply of an App's status the emulator owns: the run's summary, and
/// the request value it handled. Without a request value the field is left
/// out, and so no longer owned: the annotation is gone.
pub fn app_status_patch(summary: &EmulatorSummary, requested: Option<&str>) -> serde_json::Value {
    let mut status = serde_json::json!({"emulator": summary});
    if let Some(requested) = requested {
        status["lastHandledRequestedAt"] = requested.into();
    }
    serde_json::json!({"apiVersion": "winky.dev/v1alpha1", "kind": "App", "status": status})
}

/// The result of the Function `name`'s test cases in `report`.
fn function_result(report: &EmulatorReport, name: &str) -> FunctionEmulatorResult {
    let prefix = format!("{name}/");
    let cases: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.kind == CheckKind::Function && c.name.starts_with(&prefix))
        .collect();
    let passed = cases.iter().filter(|c| c.passed).count() as i32;
    FunctionEmulatorResult {
        revision: report.revision.clone(),
        passed: passed == cases.len() as i32,
        cases_passed: passed,
        cases_failed: cases.len() as i32 - passed,
    }
}

/// Most characters of the first failed check's message in an Event's note.
const NOTE_MESSAGE: usize = 200;

/// The Event of a run: `EmulatorPassed`, or `EmulatorFailed` naming every
/// failed check the status lists and why the first failed. The recorder
/// folds only Events with the same note, so a run that failed otherwise
/// than the last one is an Event of its own.
pub fn run_event(summary: &EmulatorSummary, duration_ms: u64) -> Event {
    if summary.passed {
        return Event {
            type_: EventType::Normal,
            reason: "EmulatorPassed".into(),
            note: Some(format!(
                "revision {}: {} checks passed in {duration_ms} ms",
                summary.revision, summary.checks
            )),
            action: "Emulate".into(),
            secondary: None,
        };
    }
    let mut names = summary
        .failed_checks
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if summary.failed_checks_omitted > 0 {
        names.push_str(&format!(" and {} more", summary.failed_checks_omitted));
    }
    let mut note = format!(
        "revision {}: {} of {} checks failed: {names}",
        summary.revision, summary.failed, summary.checks,
    );
    if let Some(first) = summary.failed_checks.first() {
        let message: String = first.message.split_whitespace().collect::<Vec<_>>().join(" ");
        let cut: String = message.chars().take(NOTE_MESSAGE).collect();
        let ellipsis = if cut.len() < message.len() { "…" } else { "" };
        note.push_str(&format!(" — {}: {cut}{ellipsis}", first.name));
    }
    Event {
        type_: EventType::Warning,
        reason: "EmulatorFailed".into(),
        note: Some(events::truncate(&note, 1000)),
        action: "Emulate".into(),
        secondary: None,
    }
}

/// What a run checks, as a hash: the operator's version, the App's
/// revision, the specs of its Functions and Rules, and the id in the engine
/// of every image (`images`, by name): an image loaded again under the same
/// name, with other content, is a new digest.
pub fn digest(bundle: &Bundle, images: &BTreeMap<String, Option<String>>) -> String {
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        // Length-prefixed, so that no two sequences of parts hash alike.
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    part(env!("CARGO_PKG_VERSION").as_bytes());
    part(winky_emulator::revision(&bundle.app).as_bytes());
    for function in &bundle.functions {
        part(function.name_any().as_bytes());
        part(&serde_json::to_vec(&function.spec).unwrap_or_default());
    }
    part(b"rules");
    for rule in &bundle.rules {
        part(rule.name_any().as_bytes());
        part(&serde_json::to_vec(&rule.spec).unwrap_or_default());
    }
    part(b"images");
    for (name, id) in images {
        part(name.as_bytes());
        part(id.as_deref().unwrap_or("-").as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use winky_crds::app::{AppStatus, FailedCheck};

    fn app(status: Option<serde_json::Value>) -> App {
        let mut app = serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App",
            "metadata": {"name": "shop", "namespace": "n",
                         "annotations": {REQUESTED_AT_ANNOTATION: "2026-01-01T00:00:00Z"}},
            "spec": {"image": "registry.local/shop:0.1.0", "port": 8080},
        });
        if let Some(status) = status {
            app["status"] = status;
        }
        serde_json::from_value(app).unwrap()
    }

    fn function(name: &str, expect: &str) -> Function {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": name, "namespace": "n"},
            "spec": {"app": "shop", "image": "localhost/fn:latest", "trigger": {"http": {"path": "/f"}},
                     "tests": [{"name": "echoes", "input": {"json": {}}, "expect": {"outputContains": expect}}]},
        }))
        .unwrap()
    }

    fn images(id: Option<&str>) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([
            (
                "registry.local/shop:0.1.0".to_string(),
                Some("sha256:app".to_string()),
            ),
            ("localhost/fn:latest".to_string(), id.map(str::to_string)),
        ])
    }

    #[test]
    fn the_digest_follows_the_specs_and_the_images_ids() {
        let bundle = |expect: &str| Bundle {
            app: app(None),
            functions: vec![function("fn", expect)],
            rules: Vec::new(),
        };
        let first = digest(&bundle("a"), &images(Some("sha256:1")));
        assert_eq!(first, digest(&bundle("a"), &images(Some("sha256:1"))));
        // The same tag loaded again with other content: another id.
        assert_ne!(first, digest(&bundle("a"), &images(Some("sha256:2"))));
        assert_ne!(first, digest(&bundle("a"), &images(None)));
        assert_ne!(first, digest(&bundle("b"), &images(Some("sha256:1"))));
        // Annotations and status are not part of it: only what is checked.
        let mut annotated = bundle("a");
        annotated.app = app(Some(serde_json::json!({"lastHandledRequestedAt": "x"})));
        assert_eq!(first, digest(&annotated, &images(Some("sha256:1"))));
    }

    #[test]
    fn a_run_starts_for_a_new_digest_or_a_request_value_not_handled_yet() {
        let mut runs = AppRuns::default();
        assert!(runs.start("d1", None, 1));
        assert!(!runs.start("d1", None, 2), "nothing changed");
        assert_eq!(runs.run, 1);
        assert!(runs.start("d1", Some("t1"), 3), "a new request value");
        assert!(!runs.start("d1", Some("t1"), 4), "a request value runs once");
        assert!(!runs.start("d1", None, 5), "the annotation went");
        assert!(
            !runs.start("d1", Some("t1"), 6),
            "and came back with the value handled"
        );
        assert!(runs.start("d1", Some("t2"), 7));
        assert!(runs.start("d2", Some("t2"), 8), "a new digest");
        assert_eq!(
            (runs.digest.as_deref(), runs.requested.as_deref(), runs.run),
            (Some("d2"), Some("t2"), 8)
        );
    }

    #[test]
    fn a_restarted_runner_starts_from_what_the_status_says_was_handled() {
        let handled = app(Some(serde_json::json!({
            "emulator": {"revision": "r-1", "passed": true, "checks": 1, "failed": 0, "digest": "d1"},
            "lastHandledRequestedAt": "2026-01-01T00:00:00Z",
        })));
        let mut runs = AppRuns::seeded(&handled);
        let requested = requested_at(&handled);
        assert_eq!(requested.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(
            !runs.start("d1", requested.as_deref(), 1),
            "handled before the restart"
        );
        assert!(runs.start("d1", Some("2026-01-02T00:00:00Z"), 2), "a new request");
        // Without a status, every App runs once.
        assert!(AppRuns::seeded(&app(None)).start("d1", None, 1));
    }

    fn failed(revision: &str, checks: &[(&str, &str)], omitted: i32) -> EmulatorSummary {
        EmulatorSummary {
            revision: revision.into(),
            passed: false,
            checks: 20,
            failed: checks.len() as i32 + omitted,
            failed_checks: checks
                .iter()
                .map(|(name, message)| FailedCheck {
                    name: name.to_string(),
                    kind: "function".into(),
                    message: message.to_string(),
                })
                .collect(),
            failed_checks_omitted: omitted,
            ..EmulatorSummary::default()
        }
    }

    #[test]
    fn each_failed_run_names_its_own_failed_checks() {
        let first = run_event(
            &failed(
                "r-1",
                &[(
                    "fn-a/echoes",
                    "exited with 0, but the output does not contain \"hello\"",
                )],
                0,
            ),
            5,
        );
        let second = run_event(
            &failed("r-1", &[("fn-b/echoes", "exited with 1, expected 0")], 0),
            5,
        );
        assert_eq!(
            (first.reason.as_str(), first.type_),
            ("EmulatorFailed", EventType::Warning)
        );
        let (first, second) = (first.note.unwrap(), second.note.unwrap());
        assert_eq!(
            first,
            "revision r-1: 1 of 20 checks failed: fn-a/echoes — fn-a/echoes: exited with 0, but the output does not contain \"hello\""
        );
        assert!(
            second.contains("fn-b/echoes") && second.contains("expected 0"),
            "{second}"
        );
        assert!(!second.contains("fn-a"), "{second}");

        let many: Vec<(String, String)> = (0..10)
            .map(|i| {
                (
                    format!("fn/case-{i}"),
                    format!("line one\nline {i}\n{}", "x".repeat(400)),
                )
            })
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, m)| (n.as_str(), m.as_str())).collect();
        let note = run_event(&failed("r-2", &many, 3), 5).note.unwrap();
        assert!(
            note.starts_with("revision r-2: 13 of 20 checks failed: fn/case-0, fn/case-1,"),
            "{note}"
        );
        assert!(
            note.contains("fn/case-9 and 3 more — fn/case-0: line one line 0 xxx"),
            "{note}"
        );
        assert!(note.ends_with("x…") && !note.contains('\n'), "{note}");

        let passed = EmulatorSummary {
            revision: "r-3".into(),
            passed: true,
            checks: 4,
            ..EmulatorSummary::default()
        };
        let event = run_event(&passed, 7);
        assert_eq!(event.reason, "EmulatorPassed");
        assert_eq!(event.note.unwrap(), "revision r-3: 4 checks passed in 7 ms");
    }

    #[test]
    fn the_status_patch_records_the_request_value_it_handled() {
        let summary = failed("r-1", &[("fn-a/echoes", "no")], 0);
        let patch = app_status_patch(&summary, Some("t1"));
        assert_eq!(patch["status"]["lastHandledRequestedAt"], "t1");
        assert_eq!(
            patch["status"]["emulator"]["failedChecks"][0]["name"],
            "fn-a/echoes"
        );
        assert_eq!(patch["status"]["emulator"]["failedChecks"][0]["message"], "no");
        let status: AppStatus = serde_json::from_value(patch["status"].clone()).unwrap();
        assert_eq!(status.emulator.as_ref(), Some(&summary));
        let patch = app_status_patch(&summary, None);
        assert!(patch["status"].get("lastHandledRequestedAt").is_none());
    }
}
