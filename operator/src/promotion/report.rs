//! What the pipeline tells people where they look: one reply per command
//! comment, a pull-request comment on a rollback, the commit status
//! `winky/<stage>` of each revision, and the rollback metric. A report that
//! cannot be made is a Warning Event on the App; the decision it reports is
//! already on record in the Promotions.

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use octocrab::models::StatusState;
use tracing::info;
use winky_crds::App;
use winky_crds::promotion::{HistoryEntry, Promotion};
use winky_promotion::pipeline::RolledBack;

use super::PromotionContext;
use super::gather::Reply;
use crate::github::GitHub;

use winky_crds::keys::REQUESTED_AT_ANNOTATION;

/// Posts the reply of each command comment: what each of its commands did,
/// and why. One reply per comment (updated in place, never doubled).
pub async fn replies(
    app: &App,
    replies: &[Reply],
    answers: &[String],
    github: Option<&GitHub>,
    ctx: &PromotionContext,
) {
    let Some(github) = github else {
        return;
    };
    for reply in replies {
        let Some(body) = reply.text(answers) else {
            continue;
        };
        if let Err(e) = github.upsert_comment(reply.number, &reply.marker(), &body).await {
            let note = format!(
                "the reply to comment {} on pull request #{} could not be posted: {e}",
                reply.comment, reply.number
            );
            super::warn_app(app, "ReplyFailed", &note, ctx).await;
        }
    }
}

/// Reports each rollback: the metric, and a comment on the pull request of
/// the revision rolled back.
pub async fn rollbacks(
    app: &App,
    namespace: &str,
    promotions: &[Promotion],
    rollbacks: &[RolledBack],
    github: Option<&GitHub>,
    ctx: &PromotionContext,
) {
    for done in rollbacks {
        let cause = if done.by == "operator" {
            "slo_breach"
        } else {
            "command"
        };
        ctx.core
            .metrics
            .rolled_back(namespace, &app.name_any(), &done.stage, cause);
        info!(stage = %done.stage, from = %done.from_revision, to = %done.to_revision, cause, "rolled back");
        let number = promotions
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(done.from.as_str()))
            .and_then(|p| p.spec.revision.pull_request)
            .and_then(|n| u64::try_from(n).ok());
        let (Some(github), Some(number)) = (github, number) else {
            continue;
        };
        let body = format!(
            "**{stage} was rolled back** from {from} to {to}: {why}.\n\n\
             {from} is not promoted into {stage} again on its own: a new revision, or \
             `/promote {stage}` from an eligible approver, moves {stage} on. \
             The Promotion `{promotion}` has the record (`kubectl describe promotion {promotion} -n {namespace}`).",
            stage = done.stage,
            from = done.from_revision,
            to = done.to_revision,
            why = done.why,
            promotion = done.from,
        );
        let marker = format!("<!-- winky:rollback:{} -->", done.from);
        if let Err(e) = github.upsert_comment(number, &marker, &body).await {
            let note = format!(
                "the rollback of {} could not be reported on pull request #{number}: {e}",
                done.stage
            );
            super::warn_app(app, "ReportFailed", &note, ctx).await;
        }
    }
}

/// Asks the App controller to run the emulator again (`/retest`).
pub async fn request_retest(app: &App, ctx: &PromotionContext) {
    let api: Api<App> = Api::namespaced(ctx.core.client.clone(), &app.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {"annotations": {REQUESTED_AT_ANNOTATION: Timestamp::now().to_string()}}
    });
    if let Err(e) = api
        .patch(&app.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        let note = format!("/retest could not ask for a new emulator run: {e}");
        super::warn_app(app, "RetestFailed", &note, ctx).await;
    }
}

/// The commit status a history event sets, if it is a change of phase.
pub fn commit_state(event: &str) -> Option<StatusState> {
    match event {
        "Created" | "Verifying" | "AwaitingApproval" | "GatesPassed" => Some(StatusState::Pending),
        "Promoted" | "Restored" => Some(StatusState::Success),
        "Rejected" | "RolledBack" => Some(StatusState::Failure),
        // Never reached the stage, through no fault of its own.
        "Superseded" => Some(StatusState::Error),
        _ => None,
    }
}

/// Sets `winky/<stage>` on the revision's commit from history `entry`.
pub async fn commit_status(
    promotion: &Promotion,
    entry: &HistoryEntry,
    github: &GitHub,
    ctx: &PromotionContext,
) {
    let (Some(state), Some(sha)) = (
        commit_state(&entry.event),
        promotion.spec.revision.git_commit.as_deref(),
    ) else {
        return;
    };
    let context = format!("winky/{}", promotion.spec.stage);
    let description = format!("{}: {}", entry.event, entry.message);
    if let Err(e) = github.set_status(sha, &context, state, &description).await {
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: "StatusFailed".into(),
            note: Some(crate::events::truncate(
                &format!("the commit status {context} could not be set on {sha}: {e}"),
                1000,
            )),
            action: "Promote".into(),
            secondary: None,
        };
        crate::events::publish(
            &ctx.core.recorder,
            &kube::Resource::object_ref(promotion, &()),
            vec![event],
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_event_sets_a_status_and_others_do_not() {
        assert_eq!(commit_state("Promoted"), Some(StatusState::Success));
        assert_eq!(commit_state("Restored"), Some(StatusState::Success));
        assert_eq!(commit_state("RolledBack"), Some(StatusState::Failure));
        assert_eq!(commit_state("AwaitingApproval"), Some(StatusState::Pending));
        assert_eq!(commit_state("GatePassed"), None);
        assert_eq!(commit_state("Command"), None);
        assert_eq!(
            commit_state("Retired"),
            None,
            "a retired revision was promoted: its status stays"
        );
    }
}
