//! The router end to end, with a fake [`Sources`], a frozen clock and real
//! GitHub payloads from `e2e/github/webhooks/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tower::ServiceExt;
use winky_crds::common::SecretKeyRef;
use winky_crds::gitsource::WebhookSpec;
use winky_crds::{GitSource, GitSourceSpec};

use super::event::{self, Kind, Parsed};
use super::signature::sign;
use super::*;

const PING: &str = include_str!("../../../e2e/github/webhooks/ping.json");
const PUSH_MASTER: &str = include_str!("../../../e2e/github/webhooks/push-branch.json");
const PUSH_TAG: &str = include_str!("../../../e2e/github/webhooks/push-tag.json");
const PULL_REQUEST: &str = include_str!("../../../e2e/github/webhooks/pull_request-opened.json");
const ISSUE_COMMENT: &str = include_str!("../../../e2e/github/webhooks/issue_comment-created.json");
const REVIEW: &str = include_str!("../../../e2e/github/webhooks/pull_request_review-submitted.json");

const SECRET: &[u8] = b"It's a Secret to Everybody";
/// Protected branch of `ns/notes`: the fixtures push to `master`.
const URL: &str = "/hooks/github/ns/notes";

/// GitSources in memory; the Secret is `SECRET`, or unreadable.
struct Fake {
    sources: HashMap<(String, String), Arc<GitSource>>,
    secret_readable: bool,
}

impl Sources for Fake {
    fn source(&self, namespace: &str, name: &str) -> Option<Arc<GitSource>> {
        self.sources
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    async fn webhook_secret(
        &self,
        namespace: &str,
        secret: &SecretKeyRef,
    ) -> Result<SecretValue, SecretError> {
        if self.secret_readable {
            Ok(SecretValue::new(SECRET.to_vec()))
        } else {
            Err(SecretError::NotFound {
                namespace: namespace.to_owned(),
                name: secret.name.clone(),
            })
        }
    }
}

fn git_source(name: &str, branch: &str, webhook: bool) -> Arc<GitSource> {
    let mut source = GitSource::new(
        name,
        GitSourceSpec {
            url: "https://github.com/Codertocat/Hello-World.git".into(),
            branch: branch.into(),
            webhook: webhook.then(|| WebhookSpec {
                secret_ref: SecretKeyRef {
                    name: "hello-world-webhook".into(),
                    key: "secret".into(),
                },
            }),
            ..GitSourceSpec::default()
        },
    );
    source.metadata.namespace = Some("ns".into());
    Arc::new(source)
}

struct Harness {
    router: Router,
    syncs: mpsc::Receiver<ObjectRef<GitSource>>,
    deliveries: mpsc::Receiver<Delivery>,
    metrics: Arc<Metrics>,
    clock: Arc<Mutex<Instant>>,
}

fn harness_with(secret_readable: bool, capacity: usize) -> Harness {
    let sources = [
        git_source("notes", "master", true),
        git_source("shop", "main", true),
        git_source("plain", "master", false),
    ]
    .into_iter()
    .map(|s| (("ns".to_owned(), s.metadata.name.clone().unwrap_or_default()), s))
    .collect();
    let (sync_tx, syncs) = mpsc::channel(capacity);
    let (delivery_tx, deliveries) = mpsc::channel(capacity);
    let metrics = Arc::new(Metrics::default());
    let clock = Arc::new(Mutex::new(Instant::now()));
    let frozen = clock.clone();
    let hooks = Webhooks::new(
        Fake {
            sources,
            secret_readable,
        },
        sync_tx,
        delivery_tx,
        metrics.clone(),
    )
    .with_clock(move || *frozen.lock().unwrap());
    Harness {
        router: router(Arc::new(hooks)),
        syncs,
        deliveries,
        metrics,
        clock,
    }
}

fn harness() -> Harness {
    harness_with(true, 8)
}

/// A request as GitHub sends it, with whichever headers are given.
fn request(
    url: &str,
    event: Option<&str>,
    delivery: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Request<Body> {
    let mut req = Request::post(url).header(header::CONTENT_TYPE, "application/json");
    for (name, value) in [
        (EVENT_HEADER, event),
        (DELIVERY_HEADER, delivery),
        (SIGNATURE_HEADER, signature),
    ] {
        if let Some(value) = value {
            req = req.header(name, value);
        }
    }
    req.body(Body::from(body.to_vec())).unwrap()
}

/// A delivery of `event` to `url`, signed with `SECRET`.
fn signed(url: &str, event: &str, delivery: &str, body: &[u8]) -> Request<Body> {
    request(url, Some(event), Some(delivery), Some(&sign(SECRET, body)), body)
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> (StatusCode, String) {
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn counted(&self, event: &str, result: &str) -> bool {
        let line = format!(r#"winky_webhook_deliveries_total{{event="{event}",result="{result}"}} 1"#);
        self.metrics.encode().lines().any(|l| l == line)
    }

    fn advance(&self, by: Duration) {
        *self.clock.lock().unwrap() += by;
    }
}

#[tokio::test]
async fn a_push_to_the_protected_branch_queues_exactly_one_sync() {
    let mut h = harness();
    let (status, text) = h.send(signed(URL, "push", "d-1", PUSH_MASTER.as_bytes())).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::ACCEPTED, "sync of ns/notes queued")
    );
    assert_eq!(h.syncs.try_recv(), Ok(ObjectRef::new("notes").within("ns")));
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(h.deliveries.try_recv(), Err(TryRecvError::Empty));
    assert!(h.counted("push", "accepted"), "{}", h.metrics.encode());
}

#[tokio::test]
async fn a_push_to_another_branch_or_a_tag_queues_nothing() {
    let mut h = harness();
    let other = h
        .send(signed(
            "/hooks/github/ns/shop",
            "push",
            "d-1",
            PUSH_MASTER.as_bytes(),
        ))
        .await;
    assert_eq!(
        other,
        (StatusCode::OK, "ignored: not the protected branch main".into())
    );
    let tag = h.send(signed(URL, "push", "d-2", PUSH_TAG.as_bytes())).await;
    assert_eq!(
        tag,
        (StatusCode::OK, "ignored: not the protected branch master".into())
    );
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
    assert!(h.metrics.encode().contains(r#"event="push",result="ignored"} 2"#));
}

#[tokio::test]
async fn an_unsigned_delivery_is_401_and_does_not_poison_the_replay_window() {
    let mut h = harness();
    let body = PUSH_MASTER.as_bytes();
    let (status, text) = h.send(request(URL, Some("push"), Some("d-1"), None, body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(text, "missing x-hub-signature-256: set a secret on the webhook");
    assert!(h.counted("push", "unsigned"));
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
    // The genuine delivery with the same id still goes through.
    let (status, _) = h.send(signed(URL, "push", "d-1", body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(h.syncs.try_recv().is_ok());
}

#[tokio::test]
async fn a_wrong_or_foreign_signature_is_401_and_does_not_poison_the_replay_window() {
    let mut h = harness();
    let body = PUSH_MASTER.as_bytes();
    let garbage = "sha256=0000000000000000000000000000000000000000000000000000000000000000";
    let foreign = sign(b"another secret", body);
    let other_body = sign(SECRET, b"{}");
    for signature in [
        garbage,
        "sha256=zz",
        "sha1=abc",
        foreign.as_str(),
        other_body.as_str(),
    ] {
        let (status, text) = h
            .send(request(URL, Some("push"), Some("d-1"), Some(signature), body))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{signature}");
        assert!(!text.contains("Secret to Everybody"), "{text}");
    }
    assert!(
        h.metrics
            .encode()
            .contains(r#"event="push",result="bad_signature"} 5"#)
    );
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        h.send(signed(URL, "push", "d-1", body)).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_replayed_delivery_is_409_and_queues_nothing_the_second_time() {
    let mut h = harness();
    let body = PUSH_MASTER.as_bytes();
    assert_eq!(
        h.send(signed(URL, "push", "d-1", body)).await.0,
        StatusCode::ACCEPTED
    );
    assert!(h.syncs.try_recv().is_ok());
    h.advance(Duration::from_secs(30 * 60));
    let (status, text) = h.send(signed(URL, "push", "d-1", body)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(text, "delivery d-1 was already received; replays are dropped");
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
    assert!(h.counted("push", "replayed"));
    // Past the window the id is forgotten.
    h.advance(Duration::from_secs(31 * 60));
    assert_eq!(
        h.send(signed(URL, "push", "d-1", body)).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn an_oversized_body_is_413_even_when_signed() {
    let mut h = harness();
    let body = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, text) = h.send(signed(URL, "push", "d-1", &body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text, "payload larger than 1048576 bytes");
    assert!(h.counted("push", "too_large"));
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
    // Exactly at the cap is read (and then found not to be a push).
    let body = vec![b' '; MAX_BODY_BYTES];
    assert_eq!(
        h.send(signed(URL, "push", "d-2", &body)).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn malformed_json_or_a_missing_or_unknown_event_is_400_after_a_valid_signature() {
    let mut h = harness();
    let truncated = &PUSH_MASTER.as_bytes()[..100];
    let (status, text) = h.send(signed(URL, "push", "d-1", truncated)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.starts_with("malformed push payload (Eof error at line"),
        "{text}"
    );
    assert!(h.counted("push", "malformed"));
    // Valid JSON that is not a push payload.
    let (status, _) = h.send(signed(URL, "push", "d-2", br#"{"ref": 1}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = PING.as_bytes();
    let signature = sign(SECRET, body);
    let missing = h
        .send(request(URL, None, Some("d-3"), Some(&signature), body))
        .await;
    assert_eq!(
        missing,
        (
            StatusCode::BAD_REQUEST,
            "missing or unknown x-github-event".into()
        )
    );
    let unknown = h.send(signed(URL, "no_such_event", "d-4", body)).await;
    assert_eq!(unknown.0, StatusCode::BAD_REQUEST);
    let no_id = h
        .send(request(URL, Some("ping"), None, Some(&signature), body))
        .await;
    assert_eq!(
        no_id,
        (
            StatusCode::BAD_REQUEST,
            "missing or malformed x-github-delivery".into()
        )
    );
    assert!(
        h.metrics
            .encode()
            .contains(r#"event="unknown",result="malformed"} 2"#)
    );
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
    // Rejected deliveries were not remembered: fixed, they go through.
    assert_eq!(h.send(signed(URL, "ping", "d-3", body)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_source_or_one_without_a_webhook_is_404() {
    let h = harness();
    let body = PUSH_MASTER.as_bytes();
    let unknown = h.send(signed("/hooks/github/ns/nope", "push", "d-1", body)).await;
    assert_eq!(
        unknown,
        (
            StatusCode::NOT_FOUND,
            "no GitSource here with spec.webhook set".into()
        )
    );
    let plain = h
        .send(signed("/hooks/github/ns/plain", "push", "d-2", body))
        .await;
    assert_eq!(plain.0, StatusCode::NOT_FOUND);
    assert!(
        h.metrics
            .encode()
            .contains(r#"event="push",result="not_found"} 2"#)
    );
    let get = h
        .router
        .clone()
        .oneshot(Request::get(URL).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_flood_is_429_after_the_burst_then_the_rate_refills() {
    let h = harness();
    let body = PING.as_bytes();
    for i in 0..rate::RATE_BURST {
        let (status, _) = h.send(signed(URL, "ping", &format!("d-{i}"), body)).await;
        assert_eq!(status, StatusCode::OK, "delivery {i}");
    }
    let response = h
        .router
        .clone()
        .oneshot(signed(URL, "ping", "d-flood", body))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert!(h.counted("ping", "rate_limited"));
    // Unsigned requests are limited too (they cost a lookup and a body read).
    let unsigned = h.send(request(URL, Some("ping"), Some("d-x"), None, body)).await;
    assert_eq!(unsigned.0, StatusCode::TOO_MANY_REQUESTS);
    // Other GitSources have their own bucket.
    let shop = h
        .send(signed("/hooks/github/ns/shop", "ping", "d-shop", body))
        .await;
    assert_eq!(shop.0, StatusCode::OK);
    h.advance(Duration::from_millis(1000 / u64::from(rate::RATE_PER_SECOND)));
    assert_eq!(
        h.send(signed(URL, "ping", "d-flood", body)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_ping_is_200() {
    let h = harness();
    let pong = h.send(signed(URL, "ping", "d-1", PING.as_bytes())).await;
    assert_eq!(pong, (StatusCode::OK, "pong".into()));
    assert!(h.counted("ping", "accepted"));
}

#[tokio::test]
async fn an_issue_comment_is_handed_to_the_deliveries_channel() {
    let mut h = harness();
    let (status, text) = h
        .send(signed(URL, "issue_comment", "d-1", ISSUE_COMMENT.as_bytes()))
        .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::ACCEPTED, "issue_comment delivery queued")
    );
    let delivery = h.deliveries.try_recv().unwrap();
    assert_eq!(delivery.source, ObjectRef::new("notes").within("ns"));
    assert_eq!(delivery.id, "d-1");
    assert_eq!(delivery.event, "issue_comment");
    assert_eq!(delivery.action.as_deref(), Some("created"));
    assert_eq!(delivery.sender.as_deref(), Some("Codertocat"));
    assert_eq!(delivery.author.as_deref(), Some("Codertocat"));
    // The fixture comments on a plain issue, not a pull request.
    assert_eq!(delivery.pull_request, None);
    assert_eq!(
        delivery.body.as_deref(),
        Some("You are totally right! I'll get this fixed right away.")
    );
    assert!(
        delivery
            .url
            .unwrap()
            .starts_with("https://github.com/Codertocat/Hello-World/issues/1#")
    );
    assert_eq!(h.deliveries.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
    assert!(h.counted("issue_comment", "accepted"));
}

#[tokio::test]
async fn pull_requests_and_reviews_are_handed_to_the_deliveries_channel() {
    let mut h = harness();
    let opened = h
        .send(signed(URL, "pull_request", "d-1", PULL_REQUEST.as_bytes()))
        .await;
    assert_eq!(opened.0, StatusCode::ACCEPTED);
    let pr = h.deliveries.try_recv().unwrap();
    assert_eq!(
        (
            pr.event.as_str(),
            pr.action.as_deref(),
            pr.pull_request,
            pr.head_ref.as_deref()
        ),
        ("pull_request", Some("opened"), Some(2), Some("changes"))
    );
    assert_eq!(
        pr.head_sha.as_deref(),
        Some("ec26c3e57ca3a959ca5aad62de7213c562f8c821")
    );
    let reviewed = h
        .send(signed(URL, "pull_request_review", "d-2", REVIEW.as_bytes()))
        .await;
    assert_eq!(reviewed.0, StatusCode::ACCEPTED);
    let review = h.deliveries.try_recv().unwrap();
    assert_eq!(
        (
            review.action.as_deref(),
            review.pull_request,
            review.review_state.as_deref()
        ),
        (Some("submitted"), Some(2), Some("commented"))
    );
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
}

#[tokio::test]
async fn another_github_event_is_200_ignored() {
    let mut h = harness();
    let (status, text) = h
        .send(signed(URL, "star", "d-1", br#"{"action":"created"}"#))
        .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "ignored: the operator does not use other events")
    );
    assert!(h.counted("other", "ignored"));
    assert_eq!(h.deliveries.try_recv(), Err(TryRecvError::Empty));
}

#[tokio::test]
async fn an_unreadable_secret_is_503_and_names_nothing() {
    let h = harness_with(false, 8);
    let (status, text) = h.send(signed(URL, "push", "d-1", PUSH_MASTER.as_bytes())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text,
        "the webhook secret of this GitSource cannot be read; see the operator's logs"
    );
    assert!(h.counted("push", "unavailable"));
}

#[tokio::test]
async fn a_delivery_that_cannot_be_queued_is_503_and_may_be_redelivered() {
    let mut h = harness_with(true, 1);
    let body = ISSUE_COMMENT.as_bytes();
    assert_eq!(
        h.send(signed(URL, "issue_comment", "d-1", body)).await.0,
        StatusCode::ACCEPTED
    );
    let (status, _) = h.send(signed(URL, "issue_comment", "d-2", body)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.deliveries.try_recv().map(|d| d.id), Ok("d-1".into()));
    assert_eq!(
        h.send(signed(URL, "issue_comment", "d-2", body)).await.0,
        StatusCode::ACCEPTED
    );
    // A full sync channel is fine: a sync is already queued.
    assert_eq!(
        h.send(signed(URL, "push", "d-3", PUSH_MASTER.as_bytes())).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        h.send(signed(URL, "push", "d-4", PUSH_MASTER.as_bytes())).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(h.syncs.try_recv().map(|r| r.name), Ok("notes".into()));
    assert_eq!(h.syncs.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn every_fixture_parses_with_octocrab() {
    let source = || ObjectRef::new("notes").within("ns");
    for (kind, body) in [
        (Kind::Ping, PING),
        (Kind::Push, PUSH_MASTER),
        (Kind::Push, PUSH_TAG),
        (Kind::PullRequest, PULL_REQUEST),
        (Kind::IssueComment, ISSUE_COMMENT),
        (Kind::PullRequestReview, REVIEW),
    ] {
        let parsed = event::parse(kind, body.as_bytes(), source(), "d");
        assert!(parsed.is_ok(), "{kind:?}: {parsed:?}");
    }
    assert!(matches!(
        event::parse(Kind::Push, PUSH_TAG.as_bytes(), source(), "d"),
        Ok(Parsed::Push { git_ref }) if git_ref == "refs/tags/simple-tag"
    ));
}

#[test]
fn event_labels_are_a_fixed_set() {
    assert_eq!(Kind::from_header(Some(b"push")), Kind::Push);
    assert_eq!(Kind::from_header(Some(b"star")), Kind::Other);
    assert_eq!(Kind::from_header(Some(b"workflow_run")), Kind::Other);
    assert_eq!(Kind::from_header(Some(b"made_up")), Kind::Unknown);
    assert_eq!(Kind::from_header(Some(b"\xff")), Kind::Unknown);
    assert_eq!(Kind::from_header(None), Kind::Unknown);
}
