//! The GitHub webhook receiver: `POST /hooks/github/{namespace}/{name}`, one
//! URL per GitSource.
//!
//! ```text
//! lookup (404) → rate limit (429) → body ≤ 1 MiB (413) → signature header (401)
//!   → Secret (503) → HMAC of the raw body (401) → delivery id, event (400)
//!   → parse (400) → replay window (409) → push to the branch: sync (202)
//!                                        → PR, review, comment: promotions (202)
//!                                        → ping (200), anything else (200, ignored)
//! ```
//!
//! Nothing in the body is looked at before its signature verified, and only
//! verified, well-formed deliveries enter the replay window, so unsigned
//! requests cannot fill it. The module owns the HTTP side only: a push becomes
//! an [`ObjectRef`] on the sync channel, the other events a [`Delivery`] on
//! the deliveries channel; what happens next belongs to their consumers.
//! [`signature`], [`replay`] and [`rate`] are pure, with time passed in;
//! [`event`] parses with octocrab's webhook models; [`sources`] finds
//! GitSources and their Secrets.

pub mod event;
pub mod rate;
pub mod replay;
pub mod signature;
pub mod sources;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{debug, info};
use winky_crds::GitSource;

use self::event::Parsed;
pub use self::event::{DELIVERY_HEADER, Delivery, EVENT_HEADER, Kind};
use self::rate::RateLimits;
use self::replay::Replays;
pub use self::signature::SIGNATURE_HEADER;
pub use self::sources::{KubeSources, SecretError, SecretValue, Sources, read_secret_key};
use crate::metrics::Metrics;

/// Largest body accepted. GitHub caps payloads at 25 MB, but push, pull
/// request and comment payloads are a few dozen KiB; a push too large for
/// this (thousands of commits) still lands with the interval sync.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Longest `X-GitHub-Delivery` accepted (GitHub sends 36-character GUIDs).
const MAX_DELIVERY_ID: usize = 128;

/// The receiver's state: where GitSources are found, where work goes, and
/// the replay window and rate limits shared by all requests.
pub struct Webhooks<S: Sources> {
    sources: S,
    syncs: mpsc::Sender<ObjectRef<GitSource>>,
    deliveries: mpsc::Sender<Delivery>,
    metrics: Arc<Metrics>,
    replays: Mutex<Replays>,
    rates: Mutex<RateLimits>,
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
}

impl<S: Sources> fmt::Debug for Webhooks<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl<S: Sources> Webhooks<S> {
    /// A receiver that queues syncs of GitSources on `syncs` and hands pull
    /// request, review and comment deliveries to `deliveries`.
    pub fn new(
        sources: S,
        syncs: mpsc::Sender<ObjectRef<GitSource>>,
        deliveries: mpsc::Sender<Delivery>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            sources,
            syncs,
            deliveries,
            metrics,
            replays: Mutex::new(Replays::default()),
            rates: Mutex::new(RateLimits::default()),
            clock: Box::new(Instant::now),
        }
    }

    /// Replaces the clock the replay window and rate limits read (tests
    /// freeze it to make floods and windows deterministic).
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Replaces the rate limit (default [`rate::RATE_BURST`] at
    /// [`rate::RATE_PER_SECOND`]).
    pub fn with_rate_limit(self, burst: u32, per_second: u32) -> Self {
        Self {
            rates: Mutex::new(RateLimits::new(burst, per_second)),
            ..self
        }
    }

    /// Handles one request to `namespace/name`.
    async fn receive(
        &self,
        namespace: &str,
        name: &str,
        kind: Kind,
        headers: &HeaderMap,
        body: Body,
    ) -> Outcome {
        let now = (self.clock)();
        let Some(source) = self.sources.source(namespace, name) else {
            return Outcome::NotFound;
        };
        let Some(webhook) = source.spec.webhook.as_ref() else {
            return Outcome::NotFound;
        };
        if let Err(wait) = lock(&self.rates).take(&format!("{namespace}/{name}"), now) {
            return Outcome::RateLimited(wait);
        }
        // The raw body, capped here rather than by axum's DefaultBodyLimit
        // (which only applies to extractors such as `Bytes`), so that the
        // answer is ours: a 413 that is counted.
        let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(body) => body,
            Err(e) if is_length_limit(&e) => return Outcome::TooLarge,
            Err(_) => return Outcome::Malformed("the request body could not be read".into()),
        };
        let Some(signature) = headers.get(SIGNATURE_HEADER) else {
            return Outcome::Unsigned;
        };
        let secret = match self.sources.webhook_secret(namespace, &webhook.secret_ref).await {
            Ok(secret) => secret,
            Err(e) => return Outcome::Unavailable(Unavailable::Secret(e)),
        };
        if let Err(e) = signature::verify(&secret, signature.as_bytes(), &body) {
            debug!(
                namespace,
                name,
                reason = e.category(),
                "webhook signature rejected"
            );
            return Outcome::BadSignature;
        }

        let Some(id) = delivery_id(headers) else {
            return Outcome::Malformed(format!("missing or malformed {DELIVERY_HEADER}"));
        };
        if kind == Kind::Unknown {
            return Outcome::Malformed(format!("missing or unknown {EVENT_HEADER}"));
        }
        let source_ref = ObjectRef::from_obj(source.as_ref());
        let parsed = match event::parse(kind, &body, source_ref.clone(), id) {
            Ok(parsed) => parsed,
            // Where, not what: serde_json's message may quote payload values.
            Err(e) => {
                return Outcome::Malformed(format!(
                    "malformed {} payload ({:?} error at line {}, column {})",
                    kind.label(),
                    e.classify(),
                    e.line(),
                    e.column()
                ));
            }
        };
        if !lock(&self.replays).first_seen(id, now) {
            return Outcome::Replayed(id.to_owned());
        }

        let outcome = match parsed {
            Parsed::Ping => Outcome::Pong,
            Parsed::Ignored => Outcome::Ignored(format!(
                "ignored: the operator does not use {} events",
                kind.label()
            )),
            Parsed::Push { git_ref } => {
                let branch = &source.spec.branch;
                if git_ref.strip_prefix("refs/heads/") != Some(branch.as_str()) {
                    return Outcome::Ignored(format!("ignored: not the protected branch {branch}"));
                }
                match self.syncs.try_send(source_ref) {
                    // Full: syncs are already queued and the controller is
                    // behind; it fetches the branch head when it gets to a
                    // GitSource, so a queued sync covers this push, and if
                    // the queue holds only others, the interval sync does.
                    Ok(()) | Err(TrySendError::Full(_)) => {
                        Outcome::Accepted(format!("sync of {namespace}/{name} queued"))
                    }
                    Err(TrySendError::Closed(_)) => Outcome::Unavailable(Unavailable::Stopped),
                }
            }
            Parsed::Delivery(delivery) => match self.deliveries.try_send(*delivery) {
                Ok(()) => Outcome::Accepted(format!("{} delivery queued", kind.label())),
                // Unlike a sync, a dropped approval or command is lost:
                // answer 503 so that it can be redelivered.
                Err(TrySendError::Full(_)) => Outcome::Unavailable(Unavailable::Busy),
                Err(TrySendError::Closed(_)) => Outcome::Unavailable(Unavailable::Stopped),
            },
        };
        if matches!(outcome, Outcome::Unavailable(_)) {
            // Not handed on: let GitHub's "Redeliver" through.
            lock(&self.replays).forget(id);
        }
        outcome
    }
}

/// The router: `POST /hooks/github/{namespace}/{name}`.
pub fn router<S: Sources>(hooks: Arc<Webhooks<S>>) -> Router {
    Router::new()
        .route("/hooks/github/{namespace}/{name}", post(receive::<S>))
        .with_state(hooks)
}

/// Serves `router` on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await
}

async fn receive<S: Sources>(
    State(hooks): State<Arc<Webhooks<S>>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let kind = Kind::from_header(headers.get(EVENT_HEADER).map(|v| v.as_bytes()));
    let outcome = hooks.receive(&namespace, &name, kind, &headers, body).await;
    let result = outcome.result();
    hooks.metrics.webhook_delivery(kind.label(), result);
    let delivery = delivery_id(&headers).unwrap_or("-");
    match &outcome {
        Outcome::Accepted(_) | Outcome::Pong => info!(
            namespace,
            name,
            delivery,
            event = kind.label(),
            "webhook delivery accepted"
        ),
        Outcome::Unavailable(why) => {
            info!(namespace, name, delivery, event = kind.label(), reason = %why, "webhook delivery not handled")
        }
        _ => debug!(
            namespace,
            name,
            delivery,
            event = kind.label(),
            result,
            "webhook delivery"
        ),
    }
    outcome.into_response()
}

/// `X-GitHub-Delivery`, when it is present, short and printable.
fn delivery_id(headers: &HeaderMap) -> Option<&str> {
    let id = headers.get(DELIVERY_HEADER)?.to_str().ok()?;
    let ok = !id.is_empty() && id.len() <= MAX_DELIVERY_ID && id.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(id)
}

fn is_length_limit(e: &axum::Error) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
}

/// The state behind a poisoned lock is a window or buckets: still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a verified delivery, or one that could not be verified, was not handled.
#[derive(Debug)]
enum Unavailable {
    /// The Secret could not be read.
    Secret(SecretError),
    /// The deliveries channel is full.
    Busy,
    /// The consumer is gone (the operator is stopping).
    Stopped,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Secret(e) => write!(f, "webhook secret ({}): {e}", e.category()),
            Unavailable::Busy => f.write_str("deliveries queue full"),
            Unavailable::Stopped => f.write_str("consumer stopped"),
        }
    }
}

/// What became of a request: its status, metric result and message.
#[derive(Debug)]
enum Outcome {
    Accepted(String),
    Pong,
    Ignored(String),
    NotFound,
    RateLimited(Duration),
    TooLarge,
    Unsigned,
    BadSignature,
    Unavailable(Unavailable),
    Malformed(String),
    Replayed(String),
}

impl Outcome {
    /// The `result` label of the delivery metric.
    fn result(&self) -> &'static str {
        match self {
            // A ping is the hook working as set up.
            Outcome::Accepted(_) | Outcome::Pong => "accepted",
            Outcome::Ignored(_) => "ignored",
            Outcome::NotFound => "not_found",
            Outcome::RateLimited(_) => "rate_limited",
            Outcome::TooLarge => "too_large",
            Outcome::Unsigned => "unsigned",
            Outcome::BadSignature => "bad_signature",
            Outcome::Unavailable(_) => "unavailable",
            Outcome::Malformed(_) => "malformed",
            Outcome::Replayed(_) => "replayed",
        }
    }
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let text = |status: StatusCode, message: String| (status, message).into_response();
        match self {
            Outcome::Accepted(message) => text(StatusCode::ACCEPTED, message),
            Outcome::Pong => text(StatusCode::OK, "pong".into()),
            Outcome::Ignored(message) => text(StatusCode::OK, message),
            Outcome::NotFound => text(
                StatusCode::NOT_FOUND,
                "no GitSource here with spec.webhook set".into(),
            ),
            Outcome::RateLimited(wait) => {
                let seconds = wait.as_secs_f64().ceil().max(1.0).to_string();
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, seconds)],
                    "too many deliveries for this GitSource; retry later".to_owned(),
                )
                    .into_response()
            }
            Outcome::TooLarge => text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("payload larger than {MAX_BODY_BYTES} bytes"),
            ),
            Outcome::Unsigned => text(
                StatusCode::UNAUTHORIZED,
                format!("missing {SIGNATURE_HEADER}: set a secret on the webhook"),
            ),
            Outcome::BadSignature => text(
                StatusCode::UNAUTHORIZED,
                format!("{SIGNATURE_HEADER} does not match this GitSource's webhook secret"),
            ),
            Outcome::Unavailable(Unavailable::Secret(_)) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook secret of this GitSource cannot be read; see the operator's logs".into(),
            ),
            Outcome::Unavailable(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the operator cannot take this delivery now; redeliver it later".into(),
            ),
            Outcome::Malformed(message) => text(StatusCode::BAD_REQUEST, message),
            Outcome::Replayed(id) => text(
                StatusCode::CONFLICT,
                format!("delivery {id} was already received; replays are dropped"),
            ),
        }
    }
}
