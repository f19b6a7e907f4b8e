//! What the pipeline needs from outside the cluster: the approvals people
//! gave on GitHub, tallied per Promotion by `winky_promotion::approvals`.
//!
//! Approvals are read from GitHub each time (level-triggered: a lost webhook
//! or a restart loses nothing): the comments of the pull request that merged
//! the revision. GitHub is reached through the GitSource that applied the
//! App (its `winky.dev/gitsource` annotation) and that GitSource's token.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::{Api, ResourceExt};
use tracing::warn;
use winky_crds::keys::GIT_SOURCE_ANNOTATION;
use winky_crds::promotion::{Approval, Promotion};
use winky_crds::{App, GitSource, PromotionPolicy};
use winky_policies::eligibility::{Eligibility, PullRequest};
use winky_promotion::approvals::{self, Comment, Event, Gate, Revision};
use winky_promotion::pipeline::ApprovalsFound;

use super::PromotionContext;
use crate::github::GitHub;

/// Approvals per Promotion name, and when to try again if GitHub could not be asked.
#[derive(Debug, Default)]
pub struct Found {
    /// Per Promotion name.
    pub approvals: BTreeMap<String, ApprovalsFound>,
    /// Set when GitHub could not be asked: the gates keep what they said and
    /// are asked again.
    pub retry: Option<Duration>,
    /// Why GitHub could not be asked, for a Warning Event on the App.
    pub problem: Option<String>,
}

/// The SLO gate of every Promotion of `app` that waits in a stage with one:
/// the observed stage's readings from the policy's Prometheus, judged by
/// `winky_promotion::slo::evaluate`. No Prometheus, no data and no answer
/// all wait; none passes.
pub async fn slo(
    app: &App,
    app_namespace: &str,
    policy: &PromotionPolicy,
    promotions: &[Promotion],
    now: jiff::Timestamp,
) -> BTreeMap<String, winky_crds::promotion::GateResult> {
    let mut out = BTreeMap::new();
    let stages = &policy.spec.stages;
    for promotion in promotions
        .iter()
        .filter(|p| !p.status.as_ref().map(|s| s.phase).unwrap_or_default().is_final())
    {
        let Some(k) = stages.iter().position(|s| s.name == promotion.spec.stage) else {
            continue;
        };
        let Some(gate) = &stages[k].gates.slo else {
            continue;
        };
        // The stage observed: the gate's `observe`, else the previous stage.
        let observed = gate
            .observe
            .as_deref()
            .and_then(|name| stages.iter().find(|s| s.name == name))
            .or_else(|| k.checked_sub(1).map(|p| &stages[p]))
            .unwrap_or(&stages[k]);
        let namespace =
            crate::naming::stage_namespace(observed.namespace.as_deref(), app_namespace, &app.name_any());
        let readings = match &policy.spec.prometheus {
            Some(prometheus) => {
                let window =
                    winky_promotion::slo::parse_duration(&gate.window).unwrap_or(Duration::from_secs(600));
                let queries =
                    winky_promotion::slo::queries(&app.name_any(), &namespace, &observed.name, window);
                super::prometheus::readings(&prometheus.url, &queries).await
            }
            None => winky_promotion::slo::Readings::unavailable(
                "the PromotionPolicy names no Prometheus (spec.prometheus.url)",
            ),
        };
        let verdict = winky_promotion::slo::evaluate(gate, &readings);
        let mut result = verdict.gate_result(&now.to_string());
        if let Some(evidence) = &mut result.evidence {
            *evidence = crate::events::truncate(
                &format!("{} in {} ({namespace}): {evidence}", gate.window, observed.name),
                1000,
            );
        }
        out.insert(promotion.name_any(), result);
    }
    out
}

/// The approvals of every Promotion of `app` that waits in a stage with an
/// approvals gate.
pub async fn approvals(
    app: &App,
    policy: &PromotionPolicy,
    promotions: &[Promotion],
    ctx: &PromotionContext,
) -> Found {
    let mut found = Found::default();
    let waiting: Vec<&Promotion> = promotions
        .iter()
        .filter(|p| !p.status.as_ref().map(|s| s.phase).unwrap_or_default().is_final())
        .filter(|p| stage_gate(policy, &p.spec.stage).is_some())
        .collect();
    if waiting.is_empty() {
        return found;
    }
    match tally_all(app, policy, &waiting, ctx).await {
        Ok(approvals) => found.approvals = approvals,
        Err(problem) => {
            warn!(app = %app.name_any(), %problem, "the approvals could not be read; the gates wait");
            found.retry = Some(Duration::from_secs(30));
            found.problem = Some(problem);
        }
    }
    found
}

fn stage_gate<'a>(policy: &'a PromotionPolicy, stage: &str) -> Option<&'a winky_crds::policy::ApprovalGate> {
    policy
        .spec
        .stages
        .iter()
        .find(|s| s.name == stage)
        .and_then(|s| s.gates.approvals.as_ref())
}

async fn tally_all(
    app: &App,
    policy: &PromotionPolicy,
    waiting: &[&Promotion],
    ctx: &PromotionContext,
) -> Result<BTreeMap<String, ApprovalsFound>, String> {
    let mut out = BTreeMap::new();
    let Some(source) = app.annotations().get(GIT_SOURCE_ANNOTATION) else {
        // Not applied from a repository: no pull request, nobody can approve.
        return Ok(out);
    };
    let (source_namespace, source_name) = source
        .split_once('/')
        .ok_or("a malformed winky.dev/gitsource annotation")?;
    let sources: Api<GitSource> = Api::namespaced(ctx.core.client.clone(), source_namespace);
    let source = sources
        .get_opt(source_name)
        .await
        .map_err(|e| format!("reading GitSource {source_namespace}/{source_name}: {e}"))?
        .ok_or_else(|| format!("GitSource {source_namespace}/{source_name} is gone"))?;
    let Some(github) = &source.spec.github else {
        return Ok(out);
    };
    let github = GitHub::connect(&ctx.core.client, source_namespace, github)
        .await
        .map_err(|e| e.to_string())?;
    let agents = policy.spec.agents.logins.clone();
    let approvers = policy.spec.approvers.logins.clone();
    for promotion in waiting {
        let Some(gate) = stage_gate(policy, &promotion.spec.stage) else {
            continue;
        };
        let Some(number) = promotion.spec.revision.pull_request else {
            continue;
        };
        let number = u64::try_from(number).map_err(|_| "a negative pull request number")?;
        let author = github.pull_author(number).await.map_err(|e| e.to_string())?;
        let comments = github.comments(number).await.map_err(|e| e.to_string())?;
        let since = created_at(promotion);
        let eligibility = Eligibility::compile(
            gate.eligible.as_deref(),
            &format!("stage {}", promotion.spec.stage),
        )
        .map_err(|e| format!("the eligibility of stage {}: {e}", promotion.spec.stage))?;
        let commit = promotion.spec.revision.git_commit.clone().unwrap_or_default();
        let revision = Revision {
            head: commit.clone(),
            merge: Some(commit),
            since,
        };
        let events = events_of(
            &comments,
            promotion
                .status
                .as_ref()
                .map(|s| s.approvals.as_slice())
                .unwrap_or_default(),
        );
        let tally = approvals::tally(
            &Gate {
                stage: &promotion.spec.stage,
                stage_since: since,
                need: gate.count,
                revision: &revision,
                pull_request: PullRequest {
                    author: &author,
                    number: number as i64,
                },
                agents: &agents,
                approvers: &approvers,
                eligibility: &eligibility,
            },
            &events,
        );
        out.insert(
            promotion.name_any(),
            ApprovalsFound {
                have: tally.have,
                records: tally.approvals(),
            },
        );
    }
    Ok(out)
}

/// When the Promotion was created: approvals written before belong to an
/// earlier revision or stage.
fn created_at(promotion: &Promotion) -> jiff::Timestamp {
    promotion
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The comments as approval events. An edited comment is a creation with no
/// command then an edit (an edit never adds an approval), unless its
/// approval was counted before it was edited, which is on record.
fn events_of(comments: &[crate::github::PullComment], recorded: &[Approval]) -> Vec<Event> {
    let mut events = Vec::new();
    for c in comments {
        let counted_before = recorded
            .iter()
            .any(|a| a.url.is_some() && a.url == c.url && a.counted.as_deref() == Some("counted"));
        let comment = Comment {
            id: c.id,
            login: c.login.clone(),
            body: if c.edited && !counted_before {
                String::new()
            } else {
                c.body.clone()
            },
            at: c.created_at,
            url: c.url.clone(),
        };
        events.push(Event::CommentCreated(comment));
        if c.edited && !counted_before {
            events.push(Event::CommentEdited {
                id: c.id,
                body: c.body.clone(),
                at: c.created_at,
            });
        }
    }
    events
}
