//! The real Prometheus on loopback, scraping workloads that follow the
//! metrics contract (`docs/metrics-contract.md`), and a bounded load loop to
//! drive them.
//!
//! ```text
//!   drive_load ──GET /──▶ MetricsWorkload ◀──GET /metrics (every 1 s)── prometheus
//!                          (error ratio,                                  ▲
//!                           added latency)          tests: /api/v1/query ─┘
//! ```
//!
//! `prometheus` is Debian's package (`make tools` installs it); it runs from a
//! generated `prometheus.yml` under the test's directory, its TSDB next to it
//! (removed when it exits), its log in `<dir>/prometheus.log`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use winky_promotion::slo::{self, Queries, Reading, Readings};

use crate::controlplane::free_port;
use crate::process::Component;

/// How long one query (or readiness probe) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The `prometheus` binary on the PATH (Debian's package puts it in /usr/bin).
pub fn prometheus_binary() -> Result<PathBuf> {
    crate::find_on_path("prometheus")
        .context("Prometheus is not installed: run `make tools` (it runs `apt-get install prometheus`)")
}

/// A workload to scrape and the namespace it runs in. Prometheus attaches
/// `namespace` as a target label, the way Kubernetes service discovery does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeTarget {
    pub address: SocketAddr,
    pub namespace: String,
}

/// A running Prometheus. Dropping it stops the server.
#[derive(Debug)]
pub struct Prometheus {
    url: String,
    ready_after: Duration,
    server: Component,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` every `scrape_interval`, on a free
    /// loopback port; returns once `/-/ready` answers 200. Config, TSDB and
    /// log live under `dir`.
    pub async fn start(dir: &Path, targets: &[ScrapeTarget], scrape_interval: Duration) -> Result<Self> {
        let binary = prometheus_binary()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, render_config(targets, scrape_interval))
            .with_context(|| format!("writing {}", config.display()))?;
        let data = dir.join("prometheus-data");
        let port = free_port()?;
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        let started = Instant::now();
        let mut server = Component::spawn("prometheus", &binary, &args, dir, Some(&data))?;
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        let deadline = started + Duration::from_secs(30);
        loop {
            if matches!(http_get(&http_client(), &ready).await, Ok((200, _))) {
                break;
            }
            if server.exited() {
                bail!(
                    "prometheus exited before it was ready (log: {}):\n{}",
                    server.log().display(),
                    server.log_tail(20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "prometheus was not ready within 30 s (log: {}):\n{}",
                    server.log().display(),
                    server.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            url,
            ready_after: started.elapsed(),
            server,
        })
    }

    /// Base URL of the HTTP API (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How long the server took from spawn to ready.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// Path of the server's log.
    pub fn log(&self) -> &Path {
        self.server.log()
    }

    /// Stops the server (queries then find nobody listening).
    pub fn stop(&mut self) {
        self.server.stop(Duration::from_secs(10));
    }

    /// One instant query, read the way the gate reads it.
    pub async fn query(&self, promql: &str) -> Reading {
        instant_query(&self.url, promql).await
    }

    /// The raw body of an instant query's answer.
    pub async fn query_body(&self, promql: &str) -> Result<String> {
        let (_, body) = http_get(&http_client(), &query_url(&self.url, promql)).await?;
        Ok(body)
    }

    /// Every query of the gate, one after another.
    pub async fn readings(&self, queries: &Queries) -> Readings {
        let mut readings = Readings::default();
        for (key, promql) in queries.iter() {
            let reading = self.query(promql).await;
            *readings.slot(key).expect("every query has a reading") = reading;
        }
        readings
    }
}

/// An instant query against the Prometheus at `base`: the parsed answer, or
/// [`Reading::Unavailable`] when nobody answers.
pub async fn instant_query(base: &str, promql: &str) -> Reading {
    match http_get(&http_client(), &query_url(base, promql)).await {
        Ok((status, body)) => match slo::parse_response(&body) {
            Reading::Unavailable(reason) if status != 200 => {
                Reading::Unavailable(format!("HTTP {status}: {reason}"))
            }
            reading => reading,
        },
        Err(e) => Reading::Unavailable(format!("Prometheus at {base} is unreachable: {e:#}")),
    }
}

fn query_url(base: &str, promql: &str) -> String {
    format!("{base}/api/v1/query?query={}", form_encode(promql))
}

/// `application/x-www-form-urlencoded` with `%20` for spaces: everything but
/// the unreserved characters percent-encoded.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `prometheus.yml`: one job, one static config per target with its
/// `namespace` label. Durations in milliseconds (Prometheus accepts `ms`).
fn render_config(targets: &[ScrapeTarget], interval: Duration) -> String {
    let interval = format!("{}ms", interval.as_millis().max(1));
    let mut out = format!(
        "# Generated by winky-e2e.\nglobal:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  evaluation_interval: {interval}\nscrape_configs:\n  - job_name: winky-workloads\n    static_configs:\n"
    );
    for target in targets {
        // JSON strings are YAML double-quoted scalars.
        let address = serde_json::to_string(&target.address.to_string()).expect("a string serializes");
        let namespace = serde_json::to_string(&target.namespace).expect("a string serializes");
        out.push_str(&format!(
            "      - targets: [{address}]\n        labels:\n          {}: {namespace}\n",
            slo::NAMESPACE_LABEL
        ));
    }
    out
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `url` (plain HTTP), giving up after [`REQUEST_TIMEOUT`]: status and body.
async fn http_get(client: &HttpClient, url: &str) -> Result<(u16, String)> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
    let fetch = async {
        let response = client.get(uri).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fetch)
        .await
        .map_err(|_| anyhow!("no answer within {REQUEST_TIMEOUT:?}"))?
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    app: String,
    stage: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    app: String,
    stage: String,
}

/// What a [`MetricsWorkload`] shares with its handlers.
#[derive(Debug)]
struct WorkloadState {
    app: String,
    stage: String,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    /// The error ratio, an `f64`'s bits.
    error_ratio: AtomicU64,
    /// Added latency, microseconds.
    latency_us: AtomicU64,
    /// Requests seen so far, numbering them for the error ratio.
    seen: AtomicU64,
}

/// An app backend following the metrics contract, in process on a free
/// loopback port: `GET /` answers a small JSON index (like the examples'
/// backend) and is measured; `GET /metrics` exposes
/// `winky_http_requests_total{app,stage,code}` and
/// `winky_http_request_duration_seconds{app,stage}`; `/healthz` and `/readyz`
/// answer and are not measured. Its error ratio and added latency can be
/// changed while it runs. Dropping it stops it.
#[derive(Debug)]
pub struct MetricsWorkload {
    address: SocketAddr,
    namespace: String,
    state: Arc<WorkloadState>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsWorkload {
    /// Starts the workload for `app` in `stage`, running in `namespace`, with
    /// its series for codes 200 and 500 initialised at zero as the contract
    /// asks.
    pub async fn start(namespace: &str, app: &str, stage: &str) -> Result<Self> {
        Self::start_with(namespace, app, stage, true).await
    }

    /// Like [`MetricsWorkload::start`], but with no series until the first
    /// request: an app that ignores the contract's advice to initialise them.
    pub async fn start_uninitialised(namespace: &str, app: &str, stage: &str) -> Result<Self> {
        Self::start_with(namespace, app, stage, false).await
    }

    async fn start_with(namespace: &str, app: &str, stage: &str, initialise: bool) -> Result<Self> {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Family<DurationLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(slo::RECOMMENDED_BUCKETS));
        // Registered without a prefix or unit: the names are the contract's.
        registry.register(
            slo::REQUESTS_METRIC.trim_end_matches("_total"),
            "Requests served, by status code",
            requests.clone(),
        );
        registry.register(
            slo::DURATION_METRIC,
            "Time taken to answer a request, in seconds",
            durations.clone(),
        );
        if initialise {
            for code in ["200", "500"] {
                let _ = requests.get_or_create(&RequestLabels {
                    app: app.into(),
                    stage: stage.into(),
                    code: code.into(),
                });
            }
            let _ = durations.get_or_create(&DurationLabels {
                app: app.into(),
                stage: stage.into(),
            });
        }
        let state = Arc::new(WorkloadState {
            app: app.into(),
            stage: stage.into(),
            registry,
            requests,
            durations,
            error_ratio: AtomicU64::new(0f64.to_bits()),
            latency_us: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let router = Router::new()
            .route("/", get(serve_index))
            .route("/metrics", get(serve_metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(|| async { "ok\n" }))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            address,
            namespace: namespace.into(),
            state,
            task,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// URL of the measured endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// What Prometheus should scrape.
    pub fn scrape_target(&self) -> ScrapeTarget {
        ScrapeTarget {
            address: self.address,
            namespace: self.namespace.clone(),
        }
    }

    /// Makes this share of the requests (0 to 1) answer 500, spread evenly:
    /// at 0.05 every 20th request fails.
    pub fn set_error_ratio(&self, ratio: f64) {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        self.state.error_ratio.store(ratio.to_bits(), Ordering::SeqCst);
    }

    /// Adds `latency` to every request.
    pub fn set_latency(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.state.latency_us.store(us, Ordering::SeqCst);
    }

    /// Requests the measured endpoint has seen.
    pub fn seen(&self) -> u64 {
        self.state.seen.load(Ordering::SeqCst)
    }
}

impl Drop for MetricsWorkload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_index(State(state): State<Arc<WorkloadState>>) -> impl IntoResponse {
    let started = Instant::now();
    let n = state.seen.fetch_add(1, Ordering::SeqCst);
    let latency = Duration::from_micros(state.latency_us.load(Ordering::SeqCst));
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let ratio = f64::from_bits(state.error_ratio.load(Ordering::SeqCst));
    // Request n fails when it carries the running count of failures over an
    // integer: exactly `ratio` of any run of requests, evenly spread.
    let fails = ((n + 1) as f64 * ratio).floor() > (n as f64 * ratio).floor();
    let (status, body) = if fails {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":\"injected\"}\n".to_string(),
        )
    } else {
        (
            StatusCode::OK,
            format!("{{\"app\":{:?},\"stage\":{:?}}}\n", state.app, state.stage),
        )
    };
    state
        .requests
        .get_or_create(&RequestLabels {
            app: state.app.clone(),
            stage: state.stage.clone(),
            code: status.as_u16().to_string(),
        })
        .inc();
    state
        .durations
        .get_or_create(&DurationLabels {
            app: state.app.clone(),
            stage: state.stage.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn serve_metrics(State(state): State<Arc<WorkloadState>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

/// A bounded load: at most `requests` requests, started evenly over
/// `duration` (none is started later), by `concurrency` workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSpec {
    pub requests: u64,
    pub duration: Duration,
    pub concurrency: usize,
}

/// What a load run saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 5xx.
    pub server_errors: u64,
    /// Answered otherwise, or not at all.
    pub failed: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

/// Drives `GET url` per `spec` on loopback and waits for every answer (each
/// request gives up after 30 s).
pub async fn drive_load(url: &str, spec: LoadSpec) -> Result<LoadReport> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("not a URL: {url}"))?;
    let client = http_client();
    let started = tokio::time::Instant::now();
    let end = started + spec.duration;
    let spacing = spec
        .duration
        .checked_div(spec.requests.max(1) as u32)
        .unwrap_or_default();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..spec.concurrency.max(1) {
        let (client, uri, next) = (client.clone(), uri.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut report = LoadReport::default();
            loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= spec.requests {
                    break;
                }
                let at = started + spacing * u32::try_from(k).unwrap_or(u32::MAX);
                if at > end {
                    break;
                }
                tokio::time::sleep_until(at).await;
                report.sent += 1;
                let answer = tokio::time::timeout(Duration::from_secs(30), async {
                    let response = client.get(uri.clone()).await?;
                    let status = response.status();
                    response.into_body().collect().await?;
                    Ok::<_, anyhow::Error>(status)
                })
                .await;
                match answer {
                    Ok(Ok(status)) if status.is_success() => report.ok += 1,
                    Ok(Ok(status)) if status.is_server_error() => report.server_errors += 1,
                    _ => report.failed += 1,
                }
            }
            report
        }));
    }
    let mut total = LoadReport::default();
    for worker in workers {
        let report = worker.await.context("a load worker panicked")?;
        total.sent += report.sent;
        total.ok += report.ok;
        total.server_errors += report.server_errors;
        total.failed += report.failed;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_labels_each_target_with_its_namespace() {
        let targets = [
            ScrapeTarget {
                address: "127.0.0.1:8080".parse().unwrap(),
                namespace: "notes-staging".into(),
            },
            ScrapeTarget {
                address: "127.0.0.1:8081".parse().unwrap(),
                namespace: "shop".into(),
            },
        ];
        let config = render_config(&targets, Duration::from_secs(1));
        assert!(
            config.contains("scrape_interval: 1000ms\n  scrape_timeout: 1000ms"),
            "{config}"
        );
        assert!(
            config.contains(
                "      - targets: [\"127.0.0.1:8080\"]\n        labels:\n          namespace: \"notes-staging\"\n"
            ),
            "{config}"
        );
        assert!(config.contains("[\"127.0.0.1:8081\"]\n        labels:\n          namespace: \"shop\"\n"));
    }

    #[test]
    fn queries_are_form_encoded() {
        assert_eq!(
            form_encode(r#"sum(rate(x{a="b c"}[1m]))"#),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m%5D%29%29"
        );
    }
}
