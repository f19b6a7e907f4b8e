//! What a verified delivery is: its kind (from `X-GitHub-Event`), its body
//! parsed with octocrab's webhook models, and the [`Delivery`] handed to the
//! promotions work. Pure: no I/O.

use kube::runtime::reflector::ObjectRef;
use octocrab::models::webhook_events::{WebhookEvent, WebhookEventPayload, WebhookEventType};
use serde::Serialize;
use winky_crds::GitSource;

/// The header naming the event.
pub const EVENT_HEADER: &str = "x-github-event";
/// The header carrying the delivery's unique id (a GUID).
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// The kind of a delivery, from its `X-GitHub-Event` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `ping`: the hook was just created or pinged.
    Ping,
    /// `push`: commits or a tag were pushed.
    Push,
    /// `pull_request`.
    PullRequest,
    /// `issue_comment`: a comment on an issue or a pull request (ChatOps).
    IssueComment,
    /// `pull_request_review`.
    PullRequestReview,
    /// An event GitHub sends that the operator does not use.
    Other,
    /// No header, or a name GitHub does not send.
    Unknown,
}

impl Kind {
    /// The kind of `header`. "Known to GitHub" is octocrab's list of events.
    pub fn from_header(header: Option<&[u8]>) -> Self {
        let Some(name) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
            return Kind::Unknown;
        };
        match name {
            "ping" => Kind::Ping,
            "push" => Kind::Push,
            "pull_request" => Kind::PullRequest,
            "issue_comment" => Kind::IssueComment,
            "pull_request_review" => Kind::PullRequestReview,
            _ => match serde_json::from_value(serde_json::Value::String(name.to_owned())) {
                Ok(WebhookEventType::Unknown(_)) | Err(_) => Kind::Unknown,
                Ok(_) => Kind::Other,
            },
        }
    }

    /// The `event` label of the delivery metric: a fixed set.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::Push => "push",
            Kind::PullRequest => "pull_request",
            Kind::IssueComment => "issue_comment",
            Kind::PullRequestReview => "pull_request_review",
            Kind::Other => "other",
            Kind::Unknown => "unknown",
        }
    }
}

/// A verified pull-request, review or comment delivery, for the promotions
/// work (ChatOps commands, approvals, policy checks). Owned and small: the
/// rest of the payload is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The GitSource whose hook received it.
    pub source: ObjectRef<GitSource>,
    /// `X-GitHub-Delivery`.
    pub id: String,
    /// `pull_request`, `issue_comment` or `pull_request_review`.
    pub event: String,
    /// `opened`, `synchronize`, `created`, `submitted`, …
    pub action: Option<String>,
    /// Login of whoever caused the event.
    pub sender: Option<String>,
    /// Number of the pull request; `None` for a comment on a plain issue.
    pub pull_request: Option<u64>,
    /// Login of the pull request's (or issue's) author, who may never
    /// approve it.
    pub author: Option<String>,
    /// Head branch of the pull request (not sent with comments).
    pub head_ref: Option<String>,
    /// Base branch of the pull request: where it wants to merge (not sent
    /// with comments).
    pub base_ref: Option<String>,
    /// Head commit of the pull request, or the commit a review is about
    /// (not sent with comments).
    pub head_sha: Option<String>,
    /// Body of the comment or review: where ChatOps commands are.
    pub body: Option<String>,
    /// State of a review, lower case: `approved`, `changes_requested`,
    /// `commented`, `dismissed`.
    pub review_state: Option<String>,
    /// Web address of the comment, review or pull request, for the audit trail.
    pub url: Option<String>,
}

/// A verified, well-formed delivery.
#[derive(Debug)]
pub enum Parsed {
    /// A `ping`.
    Ping,
    /// A `push` to `git_ref` (`refs/heads/…` or `refs/tags/…`).
    Push {
        /// The full ref.
        git_ref: String,
    },
    /// A delivery for the promotions work; `source` and `id` are filled by
    /// the caller.
    Delivery(Box<Delivery>),
    /// Well-formed, but of an event the operator does not use.
    Ignored,
}

/// Parses a verified `body` of `kind` delivered to `source` as `id`.
/// Events the operator does not use are only checked to be JSON: octocrab's
/// models for them may lag behind GitHub, and a payload nobody reads must
/// not fail for that.
pub fn parse(
    kind: Kind,
    body: &[u8],
    source: ObjectRef<GitSource>,
    id: &str,
) -> Result<Parsed, serde_json::Error> {
    if matches!(kind, Kind::Other | Kind::Unknown) {
        serde_json::from_slice::<serde::de::IgnoredAny>(body)?;
        return Ok(Parsed::Ignored);
    }
    let event = WebhookEvent::try_from_header_and_body(kind.label(), body)?;
    let mut delivery = Delivery {
        source,
        id: id.to_owned(),
        event: kind.label().to_owned(),
        action: None,
        sender: event.sender.as_ref().map(|s| s.login.clone()),
        pull_request: None,
        author: None,
        head_ref: None,
        base_ref: None,
        head_sha: None,
        body: None,
        review_state: None,
        url: None,
    };
    match event.specific {
        WebhookEventPayload::Ping(_) => return Ok(Parsed::Ping),
        WebhookEventPayload::Push(push) => return Ok(Parsed::Push { git_ref: push.r#ref }),
        WebhookEventPayload::PullRequest(payload) => {
            let pr = payload.pull_request;
            delivery.action = name(&payload.action);
            delivery.pull_request = Some(payload.number);
            delivery.author = pr.user.map(|u| u.login);
            delivery.head_ref = Some(pr.head.ref_field);
            delivery.base_ref = Some(pr.base.ref_field);
            delivery.head_sha = Some(pr.head.sha);
            delivery.url = pr.html_url.map(String::from);
        }
        WebhookEventPayload::IssueComment(payload) => {
            delivery.action = name(&payload.action);
            let issue = payload.issue;
            delivery.pull_request = issue.pull_request.is_some().then_some(issue.number);
            delivery.author = Some(issue.user.login);
            delivery.body = payload.comment.body;
            delivery.url = Some(payload.comment.html_url.into());
        }
        WebhookEventPayload::PullRequestReview(payload) => {
            let (pr, review) = (payload.pull_request, payload.review);
            delivery.action = name(&payload.action);
            delivery.pull_request = Some(pr.number);
            delivery.author = pr.user.map(|u| u.login);
            delivery.head_ref = Some(pr.head.ref_field);
            delivery.base_ref = Some(pr.base.ref_field);
            delivery.head_sha = review.commit_id.or(Some(pr.head.sha));
            delivery.body = review.body;
            delivery.review_state = review.state.as_ref().and_then(name).map(|s| s.to_lowercase());
            delivery.url = Some(review.html_url.into());
        }
        // The header named one of the kinds above, so octocrab parsed that kind.
        _ => return Ok(Parsed::Ignored),
    }
    Ok(Parsed::Delivery(Box::new(delivery)))
}

/// The wire name of an octocrab enum (`opened`, `APPROVED`).
fn name<T: Serialize>(value: &T) -> Option<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}
