//! What the operator does with the pull-request deliveries of the webhook:
//! every one is recorded as an Event on its GitSource (the audit trail that
//! promotions act on); an agent's pull request is also checked against the
//! agents' policy ([`crate::agents::check_pull`]), with the commit status
//! `winky/policy` on its head commit — which branch protection can require —
//! and one comment on the pull request that is updated, never repeated.
//! Every pull request into the protected branch also gets a plan: what
//! merging it would create, change and prune ([`crate::gitsource::plan`]).

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use octocrab::models::StatusState;
use tokio::sync::mpsc::Receiver;
use tracing::{info, warn};
use winky_crds::promotion::Promotion;
use winky_crds::{App, GitSource, PromotionPolicy};

use crate::agents::{self, AgentRules, PullFacts};
use crate::events::{self, Recorder, truncate};
use crate::github::{GitHub, GitHubError};
use crate::gitsource::manifests::{self, SourceRef};
use crate::gitsource::plan::Plan;
use crate::gitsource::{self, fetch};
use crate::metrics::Metrics;
use crate::webhook::Delivery;

/// The commit status an agent's pull request gets.
pub const POLICY_CONTEXT: &str = "winky/policy";
/// Marks the operator's policy comment, so it is found and updated.
pub const POLICY_MARKER: &str = "<!-- winky:policy -->";

/// What the deliveries need.
#[derive(Clone)]
pub struct PullRequests {
    /// API client (the GitHub token's Secret is read with it).
    pub client: Client,
    /// Publishes the Events.
    pub recorder: Recorder,
    /// GitSources, from the GitSource controller's cache.
    pub sources: Store<GitSource>,
    /// PromotionPolicies: who the agents are.
    pub policies: Store<PromotionPolicy>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where the GitSources' caches are: a pull request's head is fetched there.
    pub cache_dir: std::path::PathBuf,
    /// Every App in scope: the ones a pull request's revision belongs to.
    pub apps: Store<App>,
    /// Every Promotion in scope: an App whose running or waiting revision
    /// came from a pull request is woken by that pull request's comments.
    pub promotions: Store<Promotion>,
    /// Asks the Promotion controller to look at an App again (a comment or a
    /// review may be an approval): it reads them from GitHub itself.
    pub nudge: tokio::sync::mpsc::Sender<ObjectRef<App>>,
}

impl std::fmt::Debug for PullRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullRequests").finish_non_exhaustive()
    }
}

/// Handles deliveries until the webhook receiver stops.
pub async fn handle(mut received: Receiver<Delivery>, ctx: PullRequests) {
    while let Some(delivery) = received.recv().await {
        let reference = reference(&delivery);
        events::publish(&ctx.recorder, &reference, vec![received_event(&delivery)]).await;
        let checked = matches!(
            delivery.action.as_deref(),
            Some("opened" | "synchronize" | "reopened" | "edited")
        );
        if matches!(delivery.event.as_str(), "issue_comment" | "pull_request_review") {
            nudge_apps(&delivery, &ctx);
        }
        if delivery.event == "pull_request" && checked {
            check(&delivery, &reference, &ctx).await;
            if delivery.action.as_deref() != Some("edited") {
                plan(&delivery, &reference, &ctx).await;
            }
        }
    }
}

fn reference(delivery: &Delivery) -> ObjectReference {
    ObjectReference {
        api_version: Some(GitSource::api_version(&()).into()),
        kind: Some(GitSource::kind(&()).into()),
        namespace: delivery.source.namespace.clone(),
        name: Some(delivery.source.name.clone()),
        ..Default::default()
    }
}

fn received_event(delivery: &Delivery) -> Event {
    let subject = match delivery.pull_request {
        Some(n) => format!(" on #{n}"),
        None => String::new(),
    };
    let note = format!(
        "{} {} by {}{subject} (delivery {})",
        delivery.event,
        delivery.action.as_deref().unwrap_or("received"),
        delivery.sender.as_deref().unwrap_or("unknown"),
        delivery.id
    );
    Event {
        type_: EventType::Normal,
        reason: "WebhookReceived".into(),
        note: Some(truncate(&note, 1000)),
        action: "Receive".into(),
        secondary: None,
    }
}

/// The verdict of the agents' policy on one pull request.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    state: StatusState,
    description: String,
    /// The comment, for an agent's pull request only.
    comment: Option<String>,
}

fn verdict(facts: &PullFacts<'_>, problems: &[String], rules: &AgentRules) -> Verdict {
    if !rules.is_agent(facts.author) {
        return Verdict {
            state: StatusState::Success,
            description: format!(
                "opened by {}, a person: the agents' policy does not apply",
                facts.author
            ),
            comment: None,
        };
    }
    if problems.is_empty() {
        return Verdict {
            state: StatusState::Success,
            description: "the agent stayed on its branch and off the rules".into(),
            comment: Some(format!(
                "### ✅ Winky: the agents' policy holds\n\nThis pull request was opened by the agent `{}` from `{}` into \
                 `{}`. It may be merged by a person; an agent's merge is never applied.",
                facts.author, facts.head_ref, facts.base_ref
            )),
        };
    }
    let list: String = problems.iter().map(|p| format!("- {p}\n")).collect();
    Verdict {
        state: StatusState::Failure,
        description: format!("{} problem(s): {}", problems.len(), problems[0]),
        comment: Some(format!(
            "### ❌ Winky: the agents' policy does not hold\n\nThis pull request was opened by the agent `{}` from \
             `{}` into `{}`, and:\n\n{list}\nThe status `{POLICY_CONTEXT}` fails, so branch protection blocks the merge; \
             and nothing an agent merges is applied.",
            facts.author, facts.head_ref, facts.base_ref
        )),
    }
}

async fn check(delivery: &Delivery, reference: &ObjectReference, ctx: &PullRequests) {
    let Some(source) = ctx.sources.get(&delivery.source) else {
        return;
    };
    let (Some(spec), Some(number), Some(head_sha)) =
        (&source.spec.github, delivery.pull_request, &delivery.head_sha)
    else {
        return;
    };
    let namespace = delivery.source.namespace.clone().unwrap_or_default();
    let facts = PullFacts {
        author: delivery.author.as_deref().unwrap_or_default(),
        head_ref: delivery.head_ref.as_deref().unwrap_or_default(),
        base_ref: delivery.base_ref.as_deref().unwrap_or_default(),
    };
    let rules = AgentRules::of(ctx.policies.state().iter().map(|p| p.as_ref()));
    let result = async {
        let github = GitHub::connect(&ctx.client, &namespace, spec).await?;
        let files = if rules.is_agent(facts.author) {
            github.pull_files(number).await?
        } else {
            Vec::new()
        };
        let problems = agents::check_pull(&facts, &files, &rules, &source.spec.branch);
        let verdict = verdict(&facts, &problems, &rules);
        github
            .set_status(head_sha, POLICY_CONTEXT, verdict.state, &verdict.description)
            .await?;
        if let Some(comment) = &verdict.comment {
            github.upsert_comment(number, POLICY_MARKER, comment).await?;
        }
        Ok::<_, GitHubError>((problems, verdict))
    }
    .await;
    let event = match result {
        Ok((problems, _)) if problems.is_empty() => {
            info!(pull = number, "the agents' policy holds");
            return;
        }
        Ok((problems, _)) => Event {
            type_: EventType::Warning,
            reason: "AgentPolicyFailed".into(),
            note: Some(truncate(
                &format!(
                    "pull request #{number} by {}: {}",
                    facts.author,
                    problems.join("; ")
                ),
                1000,
            )),
            action: "CheckPullRequest".into(),
            secondary: None,
        },
        Err(e) => {
            warn!(pull = number, error = %e, "checking a pull request");
            ctx.metrics.failed("gitsource", "github");
            Event {
                type_: EventType::Warning,
                reason: "GitHubStatusFailed".into(),
                note: Some(truncate(&format!("{POLICY_CONTEXT} on #{number}: {e}"), 1000)),
                action: "CheckPullRequest".into(),
                secondary: None,
            }
        }
    };
    events::publish(&ctx.recorder, reference, vec![event]).await;
}

/// Wakes the pipelines of the Apps with a revision, waiting or running in a
/// stage, from the pull request `delivery` is about (a comment may be an
/// approval or a command). A full queue drops the nudge: the pipeline looks
/// again on its own.
fn nudge_apps(delivery: &Delivery, ctx: &PullRequests) {
    let Some(number) = delivery.pull_request.and_then(|n| i64::try_from(n).ok()) else {
        return;
    };
    let source = format!(
        "{}/{}",
        delivery.source.namespace.as_deref().unwrap_or_default(),
        delivery.source.name
    );
    let promoted: std::collections::HashSet<(String, String)> = ctx
        .promotions
        .state()
        .iter()
        .filter(|p| p.spec.revision.pull_request == Some(number))
        .filter(|p| {
            let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
            !phase.is_final() || phase == winky_crds::promotion::Phase::Promoted
        })
        .map(|p| (p.namespace().unwrap_or_default(), p.spec.app.clone()))
        .collect();
    for app in ctx.apps.state() {
        if app.annotations().get(winky_crds::keys::GIT_SOURCE_ANNOTATION) != Some(&source) {
            continue;
        }
        let current = app
            .status
            .as_ref()
            .and_then(|s| s.revision.as_ref())
            .and_then(|r| r.pull_request)
            == Some(number);
        if current || promoted.contains(&(app.namespace().unwrap_or_default(), app.name_any())) {
            let _ = ctx.nudge.try_send(ObjectRef::from_obj(app.as_ref()));
        }
    }
}

/// Posts the plan of a pull request into the protected branch. A plan that
/// cannot be made says why, in the comment; one that cannot be posted is a
/// Warning Event.
async fn plan(delivery: &Delivery, reference: &ObjectReference, ctx: &PullRequests) {
    let Some(source) = ctx.sources.get(&delivery.source) else {
        return;
    };
    let (Some(spec), Some(number), Some(head_ref)) =
        (&source.spec.github, delivery.pull_request, &delivery.head_ref)
    else {
        return;
    };
    if delivery.base_ref.as_deref() != Some(source.spec.branch.as_str()) {
        return;
    }
    let namespace = delivery.source.namespace.clone().unwrap_or_default();
    let planned = make_plan(&source, number, head_ref, ctx).await;
    let body = gitsource::plan::render(&planned, &format!("{namespace}/{}", delivery.source.name));
    let posted = async {
        let github = GitHub::connect(&ctx.client, &namespace, spec).await?;
        github
            .upsert_comment(number, gitsource::plan::PLAN_MARKER, &body)
            .await
    }
    .await;
    if let Err(e) = posted {
        warn!(pull = number, error = %e, "posting a plan");
        ctx.metrics.failed("gitsource", "github");
        let event = Event {
            type_: EventType::Warning,
            reason: "GitHubCommentFailed".into(),
            note: Some(truncate(&format!("the plan of #{number}: {e}"), 1000)),
            action: "Plan".into(),
            secondary: None,
        };
        events::publish(&ctx.recorder, reference, vec![event]).await;
    }
}

/// Fetches, reads, parses and dry-runs the head of pull request `number`.
async fn make_plan(
    source: &GitSource,
    number: u64,
    head_ref: &str,
    ctx: &PullRequests,
) -> Result<Plan, String> {
    let credentials = gitsource::credentials(source, &ctx.client)
        .await
        .map_err(|e| format!("the repository cannot be read: {e}"))?;
    let cache = gitsource::cache_path(&ctx.cache_dir, source);
    let (url, path, head_ref) = (
        source.spec.url.clone(),
        source.spec.path.clone(),
        head_ref.to_string(),
    );
    let (commit, files) = tokio::task::spawn_blocking(move || {
        let head = fetch::fetch_pull(&cache, &url, number, &head_ref, credentials.as_ref())?;
        let files = fetch::read_manifests(&cache, &head.commit, &path)?;
        Ok::<_, fetch::FetchError>((head.commit, files))
    })
    .await
    .map_err(|e| format!("fetching the pull request did not finish: {e}"))?
    .map_err(|e| e.to_string())?;
    let namespace = source.namespace().unwrap_or_default();
    let name = source.name_any();
    let source_ref = SourceRef {
        namespace: &namespace,
        name: &name,
        commit: &commit,
        pull_request: None,
    };
    let manifests = manifests::parse(&files, &source_ref).map_err(|e| e.to_string())?;
    let previous = source
        .status
        .as_ref()
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    gitsource::plan::plan(&ctx.client, &manifests, &source_ref, &previous, source.spec.prune)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AgentRules {
        let policy: PromotionPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "PromotionPolicy", "metadata": {"name": "default"},
            "spec": {"agents": {"logins": ["bot"], "branchPattern": "^winky/.+$"}, "approvers": {"logins": []},
                     "stages": [{"name": "preview", "gates": {"emulator": true}}]},
        }))
        .unwrap();
        AgentRules::of([&policy])
    }

    #[test]
    fn people_pass_agents_pass_or_fail_with_a_comment_saying_why() {
        let person = PullFacts {
            author: "alice",
            head_ref: "feature",
            base_ref: "main",
        };
        let v = verdict(&person, &[], &rules());
        assert_eq!((v.state, v.comment), (StatusState::Success, None));
        let agent = PullFacts {
            author: "bot",
            ..person
        };
        let v = verdict(&agent, &[], &rules());
        assert_eq!(v.state, StatusState::Success);
        assert!(v.comment.unwrap().contains("✅"));
        let v = verdict(&agent, &["it touches policies/x.yaml".into()], &rules());
        assert_eq!(v.state, StatusState::Failure);
        assert_eq!(v.description, "1 problem(s): it touches policies/x.yaml");
        assert!(v.comment.unwrap().contains("- it touches policies/x.yaml\n"));
    }
}
