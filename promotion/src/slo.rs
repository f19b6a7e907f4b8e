//! The SLO gate: the metrics contract an App follows, the PromQL that reads
//! it from Prometheus, the parsing of Prometheus' answers and the verdict on
//! the readings against a [`SloGate`]'s thresholds.
//!
//! Pure: no HTTP client and no clock. The caller runs the [`queries`] against
//! Prometheus' `/api/v1/query`, feeds each answer to [`parse_response`] (or
//! records [`Reading::Unavailable`] when Prometheus cannot be reached) and
//! hands the [`Readings`] to [`evaluate`].
//!
//! No data is never a pass: an empty answer, `NaN` (no requests in the
//! window), an error answer or an unreachable Prometheus all make the gate
//! wait. See `docs/metrics-contract.md` for the contract itself.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use serde_json::Value;
use winky_crds::policy::SloGate;
use winky_crds::promotion::{GateResult, GateState};

/// Name of the gate in a Promotion's `status.gates`.
pub const GATE_NAME: &str = "slo";

/// Counter of the requests an App served to its callers, by status code:
/// `winky_http_requests_total{app, stage, code}`.
pub const REQUESTS_METRIC: &str = "winky_http_requests_total";
/// Histogram of the time an App took to answer (seconds), the same requests:
/// `winky_http_request_duration_seconds{app, stage}` (`_bucket{le}`, `_sum`,
/// `_count`).
pub const DURATION_METRIC: &str = "winky_http_request_duration_seconds";
/// The App's name (`$WINKY_APP` in the App's containers). Exposed by the App.
pub const APP_LABEL: &str = "app";
/// The stage's name (`$WINKY_STAGE`). Exposed by the App.
pub const STAGE_LABEL: &str = "stage";
/// The HTTP status code, three digits (`200`, `503`). Exposed by the App on
/// the counter only.
pub const CODE_LABEL: &str = "code";
/// The Kubernetes namespace the stage runs in. Attached by Prometheus from
/// the scrape target (Kubernetes service discovery), never exposed by the App.
pub const NAMESPACE_LABEL: &str = "namespace";
/// Codes that count as errors (an anchored PromQL regular expression): 5xx.
pub const ERROR_CODES: &str = "5..";
/// The latency quantile the gate reads.
pub const LATENCY_QUANTILE: f64 = 0.95;
/// Bucket upper bounds (seconds) an App should use: Prometheus' defaults plus
/// `2`, so the seed policy's `p95Latency: 2s` is a bucket boundary and is
/// decided without interpolation error.
pub const RECOMMENDED_BUCKETS: [f64; 12] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0];

/// Longest evidence string a `GateResult` holds.
pub const MAX_EVIDENCE: usize = 1024;

/// Readings are compared with this much slack, so that a reading equal to its
/// threshold up to floating-point noise counts as meeting it.
const EPSILON: f64 = 1e-9;

/// The PromQL of one gate evaluation: instant queries, each answering one
/// number (or nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queries {
    /// Percentage of requests that were not 5xx over the window.
    pub availability: String,
    /// 95th-percentile request duration in seconds over the window.
    pub p95_latency: String,
    /// Percentage of requests that were 5xx over the window.
    pub error_rate: String,
    /// Requests served over the window (evidence only, never judged).
    pub requests: String,
}

impl Queries {
    /// The queries with the reading key each one fills.
    pub fn iter(&self) -> [(&'static str, &str); 4] {
        [
            (Objective::Availability.key(), &self.availability),
            (Objective::P95Latency.key(), &self.p95_latency),
            (Objective::ErrorRate.key(), &self.error_rate),
            (REQUESTS_KEY, &self.requests),
        ]
    }
}

/// Reading key of the request count.
pub const REQUESTS_KEY: &str = "requests";

/// The label matchers selecting one App in one stage:
/// `{namespace="…",app="…",stage="…"}`. Values are quoted and escaped, so no
/// name can change the query's shape.
pub fn selector(app: &str, namespace: &str, stage: &str) -> String {
    format!("{{{}}}", matchers(app, namespace, stage))
}

fn matchers(app: &str, namespace: &str, stage: &str) -> String {
    format!(
        "{NAMESPACE_LABEL}={},{APP_LABEL}={},{STAGE_LABEL}={}",
        quote(namespace),
        quote(app),
        quote(stage)
    )
}

/// The queries for `app` in `stage`, running in `namespace`, over `window`
/// (rounded to whole milliseconds, at least 1 ms; it should span several
/// scrape intervals, or `rate` has too few samples and there is no data).
///
/// Availability and error rate are ratios of summed rates (all pods, all
/// instances); a missing numerator series counts as zero (`or vector(0)`), so
/// all-errors reads as 0 % availability, not as no data. With no requests the
/// ratio is `0/0 = NaN` or an empty vector: no data.
pub fn queries(app: &str, namespace: &str, stage: &str, window: Duration) -> Queries {
    let m = matchers(app, namespace, stage);
    let w = promql_duration(window);
    let all = format!("sum(rate({REQUESTS_METRIC}{{{m}}}[{w}]))");
    let ratio = |op: &str| {
        format!(
            "100 * (sum(rate({REQUESTS_METRIC}{{{m},{CODE_LABEL}{op}\"{ERROR_CODES}\"}}[{w}])) or vector(0)) / {all}"
        )
    };
    Queries {
        availability: ratio("!~"),
        p95_latency: format!(
            "histogram_quantile({LATENCY_QUANTILE}, sum by (le) (rate({DURATION_METRIC}_bucket{{{m}}}[{w}])))"
        ),
        error_rate: ratio("=~"),
        requests: format!("sum(increase({REQUESTS_METRIC}{{{m}}}[{w}]))"),
    }
}

/// A PromQL string literal holding `value`: double quotes and backslashes
/// escaped, control characters written as escapes.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `window` as a PromQL duration in its largest exact unit (`10m`, `90s`,
/// `1500ms`).
fn promql_duration(window: Duration) -> String {
    let ms = window.as_millis().max(1);
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// One measured value.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Reading {
    /// A number (`+Inf` included: it is a measurement).
    Value(f64),
    /// Prometheus answered, with nothing to judge: an empty vector (no such
    /// series in the window) or `NaN` (no requests in the window).
    #[default]
    NoData,
    /// Prometheus could not be reached, or answered with an error.
    Unavailable(String),
}

impl Reading {
    /// The number, unless there is none (`NaN` is none).
    pub fn value(&self) -> Option<f64> {
        match self {
            Reading::Value(v) if !v.is_nan() => Some(*v),
            _ => None,
        }
    }
}

/// Reads the body of an instant query's answer (`/api/v1/query`): a vector of
/// at most one sample, or a scalar. Anything else is [`Reading::Unavailable`]
/// with the reason.
pub fn parse_response(body: &str) -> Reading {
    let json: Value = match serde_json::from_str(body) {
        Ok(json) => json,
        Err(e) => return Reading::Unavailable(format!("not a Prometheus answer ({e}): {}", clip(body, 200))),
    };
    match json["status"].as_str() {
        Some("success") => {}
        Some("error") => {
            return Reading::Unavailable(format!(
                "Prometheus answered {}: {}",
                json["errorType"].as_str().unwrap_or("an error"),
                json["error"].as_str().unwrap_or("(no message)")
            ));
        }
        _ => return Reading::Unavailable(format!("not a Prometheus answer: {}", clip(body, 200))),
    }
    let data = &json["data"];
    let result = &data["result"];
    let sample = match data["resultType"].as_str() {
        Some("vector") => match result.as_array().map(Vec::as_slice) {
            Some([]) => return Reading::NoData,
            Some([series]) => &series["value"],
            Some(many) => {
                return Reading::Unavailable(format!(
                    "expected at most one series, Prometheus answered {}",
                    many.len()
                ));
            }
            None => return Reading::Unavailable("a vector answer without a result list".into()),
        },
        Some("scalar") => result,
        other => {
            return Reading::Unavailable(format!(
                "expected a vector or a scalar, Prometheus answered {}",
                other.unwrap_or("no result type")
            ));
        }
    };
    // A sample is `[<unix time>, "<value>"]`; the value is a string so that
    // `NaN` and `±Inf` survive JSON.
    match sample[1].as_str().map(str::parse::<f64>) {
        Some(Ok(v)) if v.is_nan() => Reading::NoData,
        Some(Ok(v)) => Reading::Value(v),
        _ => Reading::Unavailable(format!("a sample without a value: {sample}")),
    }
}

fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// What the queries answered, one reading per query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Readings {
    /// Percent of non-5xx requests.
    pub availability: Reading,
    /// Seconds.
    pub p95_latency: Reading,
    /// Percent of 5xx requests.
    pub error_rate: Reading,
    /// Requests in the window.
    pub requests: Reading,
}

impl Readings {
    /// Every reading [`Reading::Unavailable`] for `reason` (Prometheus down).
    pub fn unavailable(reason: impl Into<String>) -> Self {
        let reading = Reading::Unavailable(reason.into());
        Self {
            availability: reading.clone(),
            p95_latency: reading.clone(),
            error_rate: reading.clone(),
            requests: reading,
        }
    }

    /// The reading for a key of [`Queries::iter`], to fill in a loop.
    pub fn slot(&mut self, key: &str) -> Option<&mut Reading> {
        match key {
            "availability" => Some(&mut self.availability),
            "p95Latency" => Some(&mut self.p95_latency),
            "errorRate" => Some(&mut self.error_rate),
            REQUESTS_KEY => Some(&mut self.requests),
            _ => None,
        }
    }

    fn get(&self, objective: Objective) -> &Reading {
        match objective {
            Objective::Availability => &self.availability,
            Objective::P95Latency => &self.p95_latency,
            Objective::ErrorRate => &self.error_rate,
        }
    }
}

/// One objective of an SLO gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Objective {
    /// At least this percentage of requests are not 5xx.
    Availability,
    /// The 95th-percentile latency is at most this long.
    P95Latency,
    /// At most this percentage of requests are 5xx.
    ErrorRate,
}

impl Objective {
    /// All objectives, in the order they are reported.
    pub const ALL: [Objective; 3] = [
        Objective::Availability,
        Objective::P95Latency,
        Objective::ErrorRate,
    ];

    /// The key in `GateResult.readings`, the same as the `SloGate` field.
    pub fn key(self) -> &'static str {
        match self {
            Objective::Availability => "availability",
            Objective::P95Latency => "p95Latency",
            Objective::ErrorRate => "errorRate",
        }
    }

    /// Formats a reading (or threshold) of this objective for people,
    /// rounded towards failing (availability down, the others up), so a
    /// shown reading never looks better than the one judged.
    pub fn format(self, value: f64) -> String {
        match self {
            Objective::Availability => percent(value, Round::Down),
            Objective::P95Latency => latency(value),
            Objective::ErrorRate => percent(value, Round::Up),
        }
    }

    /// Whether `reading` meets `threshold`.
    fn holds(self, reading: f64, threshold: f64) -> bool {
        match self {
            Objective::Availability => reading + EPSILON >= threshold,
            Objective::P95Latency | Objective::ErrorRate => reading <= threshold + EPSILON,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Objective::P95Latency => "",
            _ => "%",
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Objective::Availability => "availability",
            Objective::P95Latency => "p95 latency",
            Objective::ErrorRate => "error rate",
        })
    }
}

#[derive(Clone, Copy)]
enum Round {
    Down,
    Up,
}

/// Two decimals, rounded down or up, ignoring floating-point noise
/// (`99.93` is `9992.999…` hundredths).
fn percent(value: f64, round: Round) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let hundredths = match round {
        Round::Down => (value * 100.0 + EPSILON).floor(),
        Round::Up => (value * 100.0 - EPSILON).ceil(),
    };
    // `+ 0.0` turns the `-0.0` that rounding up a tiny negative gives into 0.
    format!("{:.2}", hundredths / 100.0 + 0.0)
}

/// Whole milliseconds below a second (`180ms`), seconds above (`2.5s`),
/// rounded up to the millisecond.
fn latency(seconds: f64) -> String {
    if seconds.is_infinite() && seconds > 0.0 {
        return "+Inf".into();
    }
    if !seconds.is_finite() {
        return seconds.to_string();
    }
    let ms = (seconds * 1000.0 - EPSILON).ceil().max(0.0) + 0.0;
    if ms < 1000.0 {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000.0)
    }
}

/// A gate's thresholds, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// The window the objectives are measured over.
    pub window: Duration,
    /// Minimum availability, percent.
    pub availability: Option<f64>,
    /// Maximum p95 latency.
    pub p95_latency: Option<Duration>,
    /// Maximum error rate, percent.
    pub error_rate: Option<f64>,
}

/// Why a gate's thresholds cannot be read. The schema's patterns make these
/// impossible for anything the apiserver admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// A field does not hold what it should.
    #[error("{field} {value:?} is not {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    /// The window is zero.
    #[error("window {0:?} is empty")]
    EmptyWindow(String),
    /// No objective is set: there would be nothing to judge.
    #[error("no objective is set (availability, p95Latency or errorRate)")]
    NoObjective,
}

impl Thresholds {
    /// Reads `gate`'s window and objectives.
    pub fn from_gate(gate: &SloGate) -> Result<Self, ThresholdError> {
        let invalid = |field, value: &str, expected| ThresholdError::Invalid {
            field,
            value: value.into(),
            expected,
        };
        let window =
            parse_duration(&gate.window).ok_or_else(|| invalid("window", &gate.window, "a duration"))?;
        if window.is_zero() {
            return Err(ThresholdError::EmptyWindow(gate.window.clone()));
        }
        let percent = |field, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| parse_percent(v).ok_or_else(|| invalid(field, v, "a percentage (0 to 100)")))
                .transpose()
        };
        let thresholds = Self {
            window,
            availability: percent("availability", &gate.availability)?,
            p95_latency: gate
                .p95_latency
                .as_deref()
                .map(|v| parse_duration(v).ok_or_else(|| invalid("p95Latency", v, "a duration")))
                .transpose()?,
            error_rate: percent("errorRate", &gate.error_rate)?,
        };
        if thresholds.availability.is_none()
            && thresholds.p95_latency.is_none()
            && thresholds.error_rate.is_none()
        {
            return Err(ThresholdError::NoObjective);
        }
        Ok(thresholds)
    }

    /// The threshold of `objective` (latency in seconds), when set.
    pub fn get(&self, objective: Objective) -> Option<f64> {
        match objective {
            Objective::Availability => self.availability,
            Objective::P95Latency => self.p95_latency.map(|d| d.as_secs_f64()),
            Objective::ErrorRate => self.error_rate,
        }
    }
}

/// `"99.5"`, `"0.5"`, `"100"`: a percentage, digits with an optional
/// fraction, at most 100.
pub fn parse_percent(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| *v <= 100.0)
}

/// `2s`, `300ms`, `1m30s`, `1.5h`: numbers with units `ms`, `s`, `m`, `h`,
/// one after another (the schema's duration pattern).
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..end];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
        if whole.is_empty()
            || fraction.is_empty()
            || !whole.bytes().chain(fraction.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[end..];
        let (size, len) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
            .into_iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .map(|(unit, size)| (size, unit.len()))?;
        total += value * size;
        rest = &rest[len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// An objective that does not hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Breach {
    pub objective: Objective,
    /// The reading (percent, or seconds for latency).
    pub reading: f64,
    /// The threshold it misses, in the same unit.
    pub threshold: f64,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.objective == Objective::Availability {
            "<"
        } else {
            ">"
        };
        let unit = self.objective.unit();
        write!(
            f,
            "{} {}{unit} {op} {}{unit}",
            self.objective,
            self.objective.format(self.reading),
            threshold(self.objective, self.threshold)
        )
    }
}

/// A threshold as a person wrote it: `99.5`, `2s`, `300ms`.
fn threshold(objective: Objective, value: f64) -> String {
    match objective {
        Objective::P95Latency => latency(value),
        _ => value.to_string(),
    }
}

/// Why the gate cannot decide yet. Never a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Prometheus answered, but without data for these objectives (no
    /// requests in the window, or no such series yet).
    NoData(Vec<Objective>),
    /// Prometheus could not be reached or answered with an error.
    Unavailable(String),
    /// The gate's thresholds cannot be read; the policy must be fixed.
    InvalidGate(String),
}

/// The decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every objective set on the gate was measured and holds.
    Passed,
    /// At least one measured objective does not hold. Breaches win over
    /// missing data: a measured breach is a fact.
    Failed(Vec<Breach>),
    /// Nothing failed, but something could not be measured.
    Waiting(Wait),
}

/// The verdict on a gate: the outcome, the readings for `GateResult.readings`
/// and a one-line evidence string.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    /// Measured values of the objectives the gate sets (and `requests`), as
    /// shown to people: `availability: "99.93"` (percent), `p95Latency:
    /// "180ms"`, `errorRate: "0.04"` (percent), `requests: "1234"`.
    pub readings: BTreeMap<String, String>,
    /// What the outcome rests on, at most [`MAX_EVIDENCE`] bytes.
    pub evidence: String,
}

impl Verdict {
    /// The gate state the outcome means.
    pub fn state(&self) -> GateState {
        match self.outcome {
            Outcome::Passed => GateState::Passed,
            Outcome::Failed(_) => GateState::Failed,
            Outcome::Waiting(_) => GateState::Waiting,
        }
    }

    /// The `slo` gate's result, reached `at` (RFC 3339).
    pub fn gate_result(&self, at: &str) -> GateResult {
        GateResult {
            name: GATE_NAME.into(),
            state: self.state(),
            at: Some(at.into()),
            evidence: Some(self.evidence.clone()),
            have: None,
            need: None,
            readings: self.readings.clone(),
        }
    }
}

/// The objectives a stage is watched against after a promotion when it
/// sets no SLO gate of its own: availability ≥ 99.5 %, p95 latency ≤ 2 s and
/// error rate ≤ 0.5 %, over `window`.
pub fn default_objectives(window: &str) -> SloGate {
    SloGate {
        observe: None,
        window: window.into(),
        availability: Some("99.5".into()),
        p95_latency: Some("2s".into()),
        error_rate: Some("0.5".into()),
    }
}

/// Judges `readings` against `gate`. Only the objectives the gate sets are
/// judged (and reported); a breach of any of them fails the gate; otherwise a
/// missing reading makes it wait; it passes only when every one was measured
/// and holds.
pub fn evaluate(gate: &SloGate, readings: &Readings) -> Verdict {
    let mut shown = BTreeMap::new();
    let requests = readings.requests.value().map(|n| format!("{:.0}", n.max(0.0)));
    if let Some(n) = &requests {
        shown.insert(REQUESTS_KEY.to_string(), n.clone());
    }
    let over = match &requests {
        Some(n) => format!("over {} ({n} requests)", gate.window),
        None => format!("over {}", gate.window),
    };
    let thresholds = match Thresholds::from_gate(gate) {
        Ok(t) => t,
        Err(e) => {
            let evidence = format!("waiting: the SLO gate is invalid: {e}");
            return verdict(
                Outcome::Waiting(Wait::InvalidGate(e.to_string())),
                shown,
                evidence,
            );
        }
    };

    let mut held = Vec::new();
    let mut breaches = Vec::new();
    let mut missing = Vec::new();
    let mut unavailable = None;
    for objective in Objective::ALL {
        let Some(limit) = thresholds.get(objective) else {
            continue;
        };
        let reading = readings.get(objective);
        match reading.value() {
            Some(value) => {
                shown.insert(objective.key().to_string(), objective.format(value));
                if objective.holds(value, limit) {
                    let op = if objective == Objective::Availability {
                        ">="
                    } else {
                        "<="
                    };
                    let unit = objective.unit();
                    held.push(format!(
                        "{objective} {}{unit} {op} {}{unit}",
                        objective.format(value),
                        threshold(objective, limit)
                    ));
                } else {
                    breaches.push(Breach {
                        objective,
                        reading: value,
                        threshold: limit,
                    });
                }
            }
            None => match reading {
                Reading::Unavailable(reason) => {
                    unavailable.get_or_insert_with(|| reason.clone());
                }
                _ => missing.push(objective),
            },
        }
    }

    if !breaches.is_empty() {
        let list: Vec<String> = breaches.iter().map(Breach::to_string).collect();
        let mut evidence = format!("breached: {}", list.join(", "));
        if !held.is_empty() {
            let _ = write!(evidence, "; held: {}", held.join(", "));
        }
        let _ = write!(evidence, "; {over}");
        return verdict(Outcome::Failed(breaches), shown, evidence);
    }
    if let Some(reason) = unavailable {
        let evidence = format!("waiting: Prometheus unavailable, never a pass: {reason}");
        return verdict(Outcome::Waiting(Wait::Unavailable(reason)), shown, evidence);
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(Objective::to_string).collect();
        let evidence = format!(
            "waiting: no data for {} {over}; no data is never a pass",
            names.join(", ")
        );
        return verdict(Outcome::Waiting(Wait::NoData(missing)), shown, evidence);
    }
    let evidence = format!("{} {over}", held.join(", "));
    verdict(Outcome::Passed, shown, evidence)
}

fn verdict(outcome: Outcome, readings: BTreeMap<String, String>, mut evidence: String) -> Verdict {
    if evidence.len() > MAX_EVIDENCE {
        let mut end = MAX_EVIDENCE - '…'.len_utf8();
        while !evidence.is_char_boundary(end) {
            end -= 1;
        }
        evidence.truncate(end);
        evidence.push('…');
    }
    Verdict {
        outcome,
        readings,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds' defaults.
    fn seed_gate() -> SloGate {
        SloGate {
            observe: Some("staging".into()),
            window: "10m".into(),
            availability: Some("99.5".into()),
            p95_latency: Some("2s".into()),
            error_rate: Some("0.5".into()),
        }
    }

    fn answer(value: &str) -> String {
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1767225600.123,"{value}"]}}]}}}}"#
        )
    }

    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

    fn readings(availability: Reading, p95: Reading, errors: Reading) -> Readings {
        Readings {
            availability,
            p95_latency: p95,
            error_rate: errors,
            requests: Reading::Value(1234.0),
        }
    }

    fn healthy() -> Readings {
        readings(Reading::Value(99.93), Reading::Value(0.18), Reading::Value(0.07))
    }

    #[test]
    fn slo_queries_are_the_contracts_promql() {
        let q = queries("notes", "notes-staging", "staging", Duration::from_secs(600));
        let m = r#"namespace="notes-staging",app="notes",stage="staging""#;
        assert_eq!(
            q.availability,
            format!(
                r#"100 * (sum(rate(winky_http_requests_total{{{m},code!~"5.."}}[10m])) or vector(0)) / sum(rate(winky_http_requests_total{{{m}}}[10m]))"#
            )
        );
        assert_eq!(
            q.error_rate,
            format!(
                r#"100 * (sum(rate(winky_http_requests_total{{{m},code=~"5.."}}[10m])) or vector(0)) / sum(rate(winky_http_requests_total{{{m}}}[10m]))"#
            )
        );
        assert_eq!(
            q.p95_latency,
            format!(
                r#"histogram_quantile(0.95, sum by (le) (rate(winky_http_request_duration_seconds_bucket{{{m}}}[10m])))"#
            )
        );
        assert_eq!(
            q.requests,
            format!(r#"sum(increase(winky_http_requests_total{{{m}}}[10m]))"#)
        );
        assert_eq!(selector("notes", "notes-staging", "staging"), format!("{{{m}}}"));
        let keys: Vec<&str> = q.iter().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["availability", "p95Latency", "errorRate", "requests"]);
    }

    #[test]
    fn slo_query_windows_use_the_largest_exact_unit() {
        let window = |d| {
            let q = queries("a", "n", "s", d);
            let start = q.requests.rfind('[').unwrap();
            q.requests[start + 1..q.requests.rfind(']').unwrap()].to_string()
        };
        assert_eq!(window(Duration::from_secs(7200)), "2h");
        assert_eq!(window(Duration::from_secs(600)), "10m");
        assert_eq!(window(Duration::from_secs(90)), "90s");
        assert_eq!(window(Duration::from_millis(1500)), "1500ms");
        assert_eq!(window(Duration::ZERO), "1ms");
    }

    #[test]
    fn slo_label_values_cannot_break_out_of_their_string() {
        let q = queries(r#"a"} or vector(100) #"#, "n\\", "s\nt", Duration::from_secs(60));
        assert!(
            q.requests
                .contains(r#"namespace="n\\",app="a\"} or vector(100) #",stage="s\nt""#),
            "{}",
            q.requests
        );
        // Every quote left unescaped is one the query itself wrote.
        let unescaped = q.requests.replace("\\\\", "").replace("\\\"", "");
        assert_eq!(unescaped.matches('"').count(), 6, "{}", q.requests);
        assert_eq!(quote("\u{7}"), "\"\\u0007\"");
    }

    #[test]
    fn slo_parses_a_sample() {
        assert_eq!(parse_response(&answer("0.997")), Reading::Value(0.997));
        assert_eq!(parse_response(&answer("+Inf")), Reading::Value(f64::INFINITY));
        let scalar = r#"{"status":"success","data":{"resultType":"scalar","result":[1767225600,"2"]}}"#;
        assert_eq!(parse_response(scalar), Reading::Value(2.0));
        let warned = r#"{"status":"success","warnings":["x"],"data":{"resultType":"vector","result":[{"metric":{"le":"1"},"value":[1,"5"]}]}}"#;
        assert_eq!(parse_response(warned), Reading::Value(5.0));
    }

    #[test]
    fn slo_nan_and_empty_answers_are_no_data() {
        assert_eq!(parse_response(EMPTY), Reading::NoData);
        assert_eq!(parse_response(&answer("NaN")), Reading::NoData);
        assert_eq!(Reading::Value(f64::NAN).value(), None);
    }

    #[test]
    fn slo_error_answers_are_unavailable() {
        let error = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error"}"#;
        let Reading::Unavailable(reason) = parse_response(error) else {
            panic!("an error answer is not a reading");
        };
        assert!(
            reason.contains("bad_data") && reason.contains("parse error"),
            "{reason}"
        );
        for body in [
            "",
            "<html>502 Bad Gateway</html>",
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"abc"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"value":[1]}]}}"#,
            r#"{"data":{}}"#,
        ] {
            assert!(
                matches!(parse_response(body), Reading::Unavailable(_)),
                "{body:?} must not read as a value or as no data"
            );
        }
    }

    #[test]
    fn slo_passes_when_every_objective_holds() {
        let v = evaluate(&seed_gate(), &healthy());
        assert_eq!(v.outcome, Outcome::Passed);
        assert_eq!(v.state(), GateState::Passed);
        let expected: BTreeMap<String, String> = [
            ("availability", "99.93"),
            ("p95Latency", "180ms"),
            ("errorRate", "0.07"),
            ("requests", "1234"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(v.readings, expected);
        assert_eq!(
            v.evidence,
            "availability 99.93% >= 99.5%, p95 latency 180ms <= 2s, error rate 0.07% <= 0.5% over 10m (1234 requests)"
        );
    }

    #[test]
    fn slo_readings_equal_to_thresholds_pass() {
        let at_limits = readings(Reading::Value(99.5), Reading::Value(2.0), Reading::Value(0.5));
        assert_eq!(evaluate(&seed_gate(), &at_limits).outcome, Outcome::Passed);
        // 199 of 200 requests: the ratio as floating point computes it.
        let noisy = readings(
            Reading::Value(199.0 / 200.0 * 100.0),
            Reading::Value(0.2),
            Reading::Value(0.5),
        );
        assert_eq!(evaluate(&seed_gate(), &noisy).outcome, Outcome::Passed);
    }

    #[test]
    fn slo_fails_on_errors_naming_availability_and_error_rate() {
        let r = readings(Reading::Value(95.0), Reading::Value(0.05), Reading::Value(5.0));
        let v = evaluate(&seed_gate(), &r);
        let Outcome::Failed(breaches) = &v.outcome else {
            panic!("{v:?}")
        };
        let failed: Vec<Objective> = breaches.iter().map(|b| b.objective).collect();
        assert_eq!(failed, [Objective::Availability, Objective::ErrorRate]);
        assert_eq!(v.state(), GateState::Failed);
        assert_eq!(
            v.evidence,
            "breached: availability 95.00% < 99.5%, error rate 5.00% > 0.5%; held: p95 latency 50ms <= 2s; over 10m (1234 requests)"
        );
        assert_eq!(v.readings["availability"], "95.00");
        assert_eq!(v.readings["errorRate"], "5.00");
    }

    #[test]
    fn slo_fails_on_latency() {
        let r = readings(Reading::Value(100.0), Reading::Value(4.875), Reading::Value(0.0));
        let v = evaluate(&seed_gate(), &r);
        assert_eq!(
            v.outcome,
            Outcome::Failed(vec![Breach {
                objective: Objective::P95Latency,
                reading: 4.875,
                threshold: 2.0
            }])
        );
        assert!(
            v.evidence.starts_with("breached: p95 latency 4.875s > 2s;"),
            "{}",
            v.evidence
        );
        assert_eq!(v.readings["p95Latency"], "4.875s");
        // All requests in the +Inf bucket is a measurement, and a breach.
        let r = readings(
            Reading::Value(100.0),
            Reading::Value(f64::INFINITY),
            Reading::Value(0.0),
        );
        let v = evaluate(&seed_gate(), &r);
        assert_eq!(v.state(), GateState::Failed);
        assert_eq!(v.readings["p95Latency"], "+Inf");
    }

    #[test]
    fn slo_no_data_waits_and_never_passes() {
        let none = Readings::default();
        let v = evaluate(&seed_gate(), &none);
        assert_eq!(v.outcome, Outcome::Waiting(Wait::NoData(Objective::ALL.to_vec())));
        assert_eq!(v.state(), GateState::Waiting);
        assert!(v.readings.is_empty());
        assert_eq!(
            v.evidence,
            "waiting: no data for availability, p95 latency, error rate over 10m; no data is never a pass"
        );
        // NaN handed in as a value is no data too, not a pass.
        let nan = readings(
            Reading::Value(f64::NAN),
            Reading::Value(f64::NAN),
            Reading::Value(f64::NAN),
        );
        assert_eq!(evaluate(&seed_gate(), &nan).state(), GateState::Waiting);
        // One objective without data is enough to wait.
        let partial = readings(Reading::Value(100.0), Reading::NoData, Reading::Value(0.0));
        assert_eq!(
            evaluate(&seed_gate(), &partial).outcome,
            Outcome::Waiting(Wait::NoData(vec![Objective::P95Latency]))
        );
    }

    #[test]
    fn slo_unreachable_prometheus_waits() {
        let v = evaluate(&seed_gate(), &Readings::unavailable("connection refused"));
        assert_eq!(
            v.outcome,
            Outcome::Waiting(Wait::Unavailable("connection refused".into()))
        );
        assert_eq!(
            v.evidence,
            "waiting: Prometheus unavailable, never a pass: connection refused"
        );
        assert!(v.readings.is_empty());
        // A partial outage still waits, and keeps what was measured.
        let partial = readings(
            Reading::Value(100.0),
            Reading::Unavailable("timeout".into()),
            Reading::NoData,
        );
        let v = evaluate(&seed_gate(), &partial);
        assert_eq!(v.outcome, Outcome::Waiting(Wait::Unavailable("timeout".into())));
        assert_eq!(v.readings["availability"], "100.00");
    }

    #[test]
    fn slo_a_measured_breach_fails_even_when_other_readings_are_missing() {
        let r = readings(
            Reading::Value(90.0),
            Reading::NoData,
            Reading::Unavailable("down".into()),
        );
        assert_eq!(evaluate(&seed_gate(), &r).state(), GateState::Failed);
    }

    #[test]
    fn slo_objectives_the_gate_does_not_set_are_not_judged() {
        let gate = SloGate {
            availability: Some("99".into()),
            p95_latency: None,
            error_rate: None,
            ..seed_gate()
        };
        let r = readings(Reading::Value(99.2), Reading::Value(30.0), Reading::NoData);
        let v = evaluate(&gate, &r);
        assert_eq!(v.outcome, Outcome::Passed);
        assert!(!v.readings.contains_key("p95Latency") && !v.readings.contains_key("errorRate"));
        assert_eq!(v.evidence, "availability 99.20% >= 99% over 10m (1234 requests)");
    }

    #[test]
    fn slo_invalid_gates_wait() {
        for gate in [
            SloGate {
                window: "ten minutes".into(),
                ..seed_gate()
            },
            SloGate {
                window: "0s".into(),
                ..seed_gate()
            },
            SloGate {
                availability: Some("101".into()),
                ..seed_gate()
            },
            SloGate {
                p95_latency: Some("2".into()),
                ..seed_gate()
            },
            SloGate {
                availability: None,
                p95_latency: None,
                error_rate: None,
                ..seed_gate()
            },
        ] {
            let v = evaluate(&gate, &healthy());
            assert!(
                matches!(v.outcome, Outcome::Waiting(Wait::InvalidGate(_))),
                "{gate:?}: {v:?}"
            );
            assert!(
                v.evidence.starts_with("waiting: the SLO gate is invalid: "),
                "{}",
                v.evidence
            );
        }
    }

    #[test]
    fn slo_thresholds_parse_from_the_gates_strings() {
        let t = Thresholds::from_gate(&seed_gate()).unwrap();
        assert_eq!(
            t,
            Thresholds {
                window: Duration::from_secs(600),
                availability: Some(99.5),
                p95_latency: Some(Duration::from_secs(2)),
                error_rate: Some(0.5),
            }
        );
        assert_eq!(t.get(Objective::P95Latency), Some(2.0));
        assert_eq!(
            Thresholds::from_gate(&SloGate {
                error_rate: Some("five".into()),
                ..seed_gate()
            }),
            Err(ThresholdError::Invalid {
                field: "errorRate",
                value: "five".into(),
                expected: "a percentage (0 to 100)"
            })
        );
    }

    #[test]
    fn slo_percentages_parse_strictly() {
        for (text, value) in [
            ("99.5", 99.5),
            ("0.5", 0.5),
            ("100", 100.0),
            ("100.0", 100.0),
            ("0", 0.0),
        ] {
            assert_eq!(parse_percent(text), Some(value), "{text}");
        }
        for text in ["", "100.1", "-1", "1e2", ".5", "5.", "NaN", "inf", " 1", "99.5%"] {
            assert_eq!(parse_percent(text), None, "{text}");
        }
    }

    #[test]
    fn slo_durations_parse_strictly() {
        for (text, ms) in [
            ("2s", 2000),
            ("300ms", 300),
            ("1m30s", 90_000),
            ("1.5h", 5_400_000),
            ("10m", 600_000),
            ("0.25s", 250),
        ] {
            assert_eq!(parse_duration(text), Some(Duration::from_millis(ms)), "{text}");
        }
        for text in ["", "2", "s", "1.s", ".5s", "1d", "2 s", "1..5s", "-1s", "1sm"] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }

    #[test]
    fn slo_readings_are_rounded_towards_failing() {
        // Shown readings never look better than the ones judged.
        assert_eq!(Objective::Availability.format(99.4999), "99.49");
        assert_eq!(Objective::Availability.format(99.93), "99.93");
        assert_eq!(Objective::Availability.format(100.0), "100.00");
        assert_eq!(Objective::ErrorRate.format(0.5001), "0.51");
        assert_eq!(Objective::ErrorRate.format(0.07), "0.07");
        assert_eq!(Objective::ErrorRate.format(0.0), "0.00");
        assert_eq!(Objective::P95Latency.format(0.18), "180ms");
        assert_eq!(Objective::P95Latency.format(0.000_475), "1ms");
        assert_eq!(Objective::P95Latency.format(2.0001), "2.001s");
        assert_eq!(Objective::P95Latency.format(2.0), "2s");
        assert_eq!(Objective::P95Latency.format(0.0), "0ms");
        assert_eq!(Objective::Availability.format(0.0), "0.00");
    }

    #[test]
    fn slo_gate_result_carries_readings_and_evidence() {
        let v = evaluate(&seed_gate(), &healthy());
        let result = v.gate_result("2026-01-01T00:00:00Z");
        assert_eq!(result.name, "slo");
        assert_eq!(result.state, GateState::Passed);
        assert_eq!(result.at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(result.evidence.as_deref(), Some(v.evidence.as_str()));
        assert_eq!(result.readings, v.readings);
        assert_eq!((result.have, result.need), (None, None));
    }

    #[test]
    fn slo_evidence_fits_a_gate_result() {
        let long = "é".repeat(2000);
        let v = evaluate(&seed_gate(), &Readings::unavailable(long));
        assert!(v.evidence.len() <= MAX_EVIDENCE, "{}", v.evidence.len());
        assert!(v.evidence.ends_with('…'));
    }

    #[test]
    fn slo_readings_fill_by_query_key() {
        let q = queries("notes", "n", "staging", Duration::from_secs(60));
        let mut r = Readings::default();
        for (key, _) in q.iter() {
            *r.slot(key).expect("every query has a slot") = Reading::Value(1.0);
        }
        assert_eq!(
            r,
            readings(Reading::Value(1.0), Reading::Value(1.0), Reading::Value(1.0)).with_requests(1.0)
        );
        assert!(r.slot("nope").is_none());
    }

    impl Readings {
        fn with_requests(mut self, n: f64) -> Self {
            self.requests = Reading::Value(n);
            self
        }
    }
}
