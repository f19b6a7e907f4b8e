//! The SLO gate against the real Prometheus (Debian's `prometheus`): it
//! scrapes a workload that follows the metrics contract every second while a
//! bounded load loop drives it on loopback; the gate's PromQL runs over
//! Prometheus' HTTP API and its verdict is judged against the seed policy's
//! thresholds (availability >= 99.5 %, p95 <= 2 s, error rate <= 0.5 %).
//!
//! Every test waits on conditions — Prometheus ready, the workload scraped,
//! every request of the load visible in Prometheus — never on fixed sleeps.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use winky_crds::policy::SloGate;
use winky_crds::promotion::GateState;
use winky_e2e::prometheus::{LoadReport, LoadSpec, MetricsWorkload, Prometheus, drive_load};
use winky_e2e::{eventually, workspace_root};
use winky_promotion::slo::{self, Objective, Outcome, Reading, Verdict, Wait};

const NAMESPACE: &str = "notes-staging";
const APP: &str = "notes";
const STAGE: &str = "staging";
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);
/// Longer than any test runs, so the window holds all of a test's traffic.
const WINDOW: &str = "2m";

/// The seed policy's production gate, observing staging, over [`WINDOW`].
fn seed_gate() -> SloGate {
    SloGate {
        observe: Some(STAGE.into()),
        window: WINDOW.into(),
        availability: Some("99.5".into()),
        p95_latency: Some("2s".into()),
        error_rate: Some("0.5".into()),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target/e2e/slo")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A workload for `notes` in `staging` and a Prometheus that has scraped it.
struct Fixture {
    name: &'static str,
    workload: MetricsWorkload,
    prometheus: Prometheus,
}

impl Fixture {
    async fn new(name: &'static str) -> Self {
        let workload = MetricsWorkload::start(NAMESPACE, APP, STAGE).await.unwrap();
        Self::with(name, workload).await
    }

    async fn with(name: &'static str, workload: MetricsWorkload) -> Self {
        let dir = scratch(name);
        let started = Instant::now();
        let prometheus = Prometheus::start(&dir, &[workload.scrape_target()], SCRAPE_INTERVAL)
            .await
            .unwrap();
        let up = format!("up{{namespace=\"{NAMESPACE}\"}}");
        let p = &prometheus;
        eventually(
            "Prometheus to scrape the workload",
            Duration::from_secs(30),
            || {
                let up = up.clone();
                async move { (p.query(&up).await.value() == Some(1.0)).then_some(()) }
            },
        )
        .await;
        eprintln!(
            "[{name}] prometheus ready after {:?}, first scrape after {:?} (log: {})",
            prometheus.ready_after(),
            started.elapsed(),
            prometheus.log().display()
        );
        Self {
            name,
            workload,
            prometheus,
        }
    }

    /// Drives the load to its end, then waits until Prometheus has scraped
    /// every request it made.
    async fn load(&self, spec: LoadSpec) -> LoadReport {
        let report = drive_load(&self.workload.url(), spec).await.unwrap();
        assert_eq!(
            report.failed, 0,
            "[{}] every request is answered: {report:?}",
            self.name
        );
        assert_eq!(
            report.sent,
            self.workload.seen(),
            "the workload saw every request"
        );
        let done = Instant::now();
        let total = format!(
            "sum({}{})",
            slo::REQUESTS_METRIC,
            slo::selector(APP, NAMESPACE, STAGE)
        );
        let p = &self.prometheus;
        let sent = report.sent as f64;
        eventually(
            "Prometheus to scrape every request",
            Duration::from_secs(30),
            || {
                let total = total.clone();
                async move { (p.query(&total).await.value() == Some(sent)).then_some(()) }
            },
        )
        .await;
        eprintln!(
            "[{}] load {report:?}; all {} requests in Prometheus {:?} after the last answer",
            self.name,
            report.sent,
            done.elapsed()
        );
        report
    }

    fn queries(&self) -> slo::Queries {
        let window = slo::parse_duration(WINDOW).unwrap();
        slo::queries(APP, NAMESPACE, STAGE, window)
    }

    async fn verdict(&self) -> Verdict {
        let readings = self.prometheus.readings(&self.queries()).await;
        let verdict = slo::evaluate(&seed_gate(), &readings);
        eprintln!("[{}] {readings:?}\n[{}] {verdict:?}", self.name, self.name);
        verdict
    }
}

fn breached(verdict: &Verdict) -> Vec<Objective> {
    match &verdict.outcome {
        Outcome::Failed(breaches) => breaches.iter().map(|b| b.objective).collect(),
        other => panic!("expected the gate to fail, it is {other:?}: {}", verdict.evidence),
    }
}

/// `180ms` or `2.5s` in seconds.
fn seconds(reading: &str) -> f64 {
    match reading.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().unwrap() / 1000.0,
        None => reading.strip_suffix('s').unwrap().parse().unwrap(),
    }
}

fn number(reading: &str) -> f64 {
    reading.parse().unwrap()
}

const HEALTHY: LoadSpec = LoadSpec {
    requests: 300,
    duration: Duration::from_secs(5),
    concurrency: 4,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_traffic_passes_with_readings() {
    let f = Fixture::new("healthy").await;
    let report = f.load(HEALTHY).await;
    assert_eq!((report.ok, report.server_errors), (300, 0), "{report:?}");

    let verdict = f.verdict().await;
    assert_eq!(verdict.outcome, Outcome::Passed, "{}", verdict.evidence);
    assert_eq!(verdict.readings["availability"], "100.00");
    assert_eq!(verdict.readings["errorRate"], "0.00");
    let p95 = seconds(&verdict.readings["p95Latency"]);
    assert!(p95 > 0.0 && p95 <= 0.1, "a loopback request is fast: {p95} s");
    // `increase` extrapolates; it still has to be about what was sent.
    let requests = number(&verdict.readings["requests"]);
    assert!(
        (240.0..=360.0).contains(&requests),
        "{requests} requests measured, 300 sent"
    );
    assert!(
        verdict
            .evidence
            .starts_with("availability 100.00% >= 99.5%, p95 latency "),
        "{}",
        verdict.evidence
    );
    let result = verdict.gate_result("2026-01-01T00:00:00Z");
    assert_eq!(result.state, GateState::Passed);
    assert_eq!(result.readings, verdict.readings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_fail_on_availability_and_error_rate() {
    let f = Fixture::new("errors").await;
    f.workload.set_error_ratio(0.05);
    let report = f
        .load(LoadSpec {
            requests: 400,
            ..HEALTHY
        })
        .await;
    assert_eq!((report.ok, report.server_errors), (380, 20), "{report:?}");

    let verdict = f.verdict().await;
    assert_eq!(
        breached(&verdict),
        [Objective::Availability, Objective::ErrorRate],
        "{}",
        verdict.evidence
    );
    assert_eq!(verdict.state(), GateState::Failed);
    let availability = number(&verdict.readings["availability"]);
    let error_rate = number(&verdict.readings["errorRate"]);
    assert!(
        (94.0..=96.0).contains(&availability),
        "5 % errors: availability {availability}"
    );
    assert!(
        (4.0..=6.0).contains(&error_rate),
        "5 % errors: error rate {error_rate}"
    );
    assert!(seconds(&verdict.readings["p95Latency"]) <= 0.1);
    assert!(
        verdict.evidence.starts_with("breached: availability ") && verdict.evidence.contains("% < 99.5%"),
        "{}",
        verdict.evidence
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_latency_fails_on_p95() {
    let f = Fixture::new("latency").await;
    f.workload.set_latency(Duration::from_millis(2500));
    // 8 workers at 2.5 s a request: 24 requests take about 9 s.
    let report = f
        .load(LoadSpec {
            requests: 24,
            duration: Duration::from_secs(6),
            concurrency: 8,
        })
        .await;
    assert_eq!((report.ok, report.server_errors), (24, 0), "{report:?}");

    let verdict = f.verdict().await;
    assert_eq!(
        breached(&verdict),
        [Objective::P95Latency],
        "{}",
        verdict.evidence
    );
    let p95 = seconds(&verdict.readings["p95Latency"]);
    assert!(p95 > 2.5, "every request took 2.5 s or more, p95 reads {p95} s");
    assert_eq!(verdict.readings["availability"], "100.00");
    assert!(
        verdict.evidence.starts_with("breached: p95 latency "),
        "{}",
        verdict.evidence
    );
    assert!(verdict.evidence.contains(" > 2s;"), "{}", verdict.evidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traffic_waits_and_never_passes() {
    let f = Fixture::new("idle").await;
    // Scraped several times, with the series at zero: Prometheus has data
    // about the app, just no requests.
    let scrapes = format!("count_over_time(up{{namespace=\"{NAMESPACE}\"}}[1m])");
    let zero = format!(
        "sum({}{})",
        slo::REQUESTS_METRIC,
        slo::selector(APP, NAMESPACE, STAGE)
    );
    let p = &f.prometheus;
    eventually(
        "three scrapes of the idle workload",
        Duration::from_secs(30),
        || {
            let (scrapes, zero) = (scrapes.clone(), zero.clone());
            async move {
                let enough = p.query(&scrapes).await.value().is_some_and(|n| n >= 3.0);
                (enough && p.query(&zero).await.value() == Some(0.0)).then_some(())
            }
        },
    )
    .await;

    // What Prometheus really answers: NaN (0 requests / 0 requests).
    let queries = f.queries();
    let body = f.prometheus.query_body(&queries.availability).await.unwrap();
    assert!(body.contains("\"NaN\""), "{body}");
    let body = f.prometheus.query_body(&queries.p95_latency).await.unwrap();
    assert!(body.contains("\"NaN\""), "{body}");

    let verdict = f.verdict().await;
    assert_eq!(
        verdict.outcome,
        Outcome::Waiting(Wait::NoData(Objective::ALL.to_vec())),
        "{}",
        verdict.evidence
    );
    assert_eq!(verdict.state(), GateState::Waiting);
    assert_eq!(verdict.readings.get("requests").map(String::as_str), Some("0"));
    assert!(
        !verdict.readings.contains_key("availability"),
        "{:?}",
        verdict.readings
    );
    assert!(
        verdict.evidence.contains("no data is never a pass"),
        "{}",
        verdict.evidence
    );

    // An app Prometheus has never seen: empty answers, no data as well.
    let other = slo::queries("other", NAMESPACE, STAGE, slo::parse_duration(WINDOW).unwrap());
    assert_eq!(f.prometheus.query(&other.availability).await, Reading::NoData);
    let readings = f.prometheus.readings(&other).await;
    assert_eq!(
        slo::evaluate(&seed_gate(), &readings).outcome,
        Outcome::Waiting(Wait::NoData(Objective::ALL.to_vec()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_errors_fail_rather_than_wait() {
    // No 200 series at all: the availability numerator is an empty vector,
    // which `or vector(0)` turns into 0 % instead of no data.
    let workload = MetricsWorkload::start_uninitialised(NAMESPACE, APP, STAGE)
        .await
        .unwrap();
    workload.set_error_ratio(1.0);
    let f = Fixture::with("only-errors", workload).await;
    let report = f.load(HEALTHY).await;
    assert_eq!((report.ok, report.server_errors), (0, 300), "{report:?}");

    let verdict = f.verdict().await;
    assert_eq!(
        breached(&verdict),
        [Objective::Availability, Objective::ErrorRate],
        "{}",
        verdict.evidence
    );
    assert_eq!(verdict.readings["availability"], "0.00");
    assert_eq!(verdict.readings["errorRate"], "100.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_prometheus_waits_and_never_passes() {
    let mut f = Fixture::new("prometheus-down").await;
    f.load(HEALTHY).await;
    assert_eq!(
        f.verdict().await.outcome,
        Outcome::Passed,
        "healthy before the outage"
    );

    f.prometheus.stop();
    let verdict = f.verdict().await;
    let Outcome::Waiting(Wait::Unavailable(reason)) = &verdict.outcome else {
        panic!("with Prometheus down the gate waits: {verdict:?}");
    };
    assert!(reason.contains(f.prometheus.url()), "{reason}");
    assert_eq!(verdict.state(), GateState::Waiting);
    assert!(verdict.readings.is_empty(), "{:?}", verdict.readings);
    assert!(
        verdict
            .evidence
            .starts_with("waiting: Prometheus unavailable, never a pass: "),
        "{}",
        verdict.evidence
    );
}
