//! A GitSource's status and Events, computed purely from what a sync found.
//!
//! Conditions follow the convention of Flux and kstatus: `Ready` says whether
//! the branch's head is applied, `Reconciling` that the operator is still
//! trying (a transient failure it retries), `Stalled` that it cannot go on
//! until the commit or the spec changes.

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType};
use winky_crds::GitSource;
use winky_crds::gitsource::{GitSourceStatus, InventoryEntry};

use super::manifests::describe;
use crate::conditions::{self, ConditionSpec, READY};
use crate::events::truncate;

/// `Reconciling`: the operator is working on the source or retrying.
pub const RECONCILING: &str = "Reconciling";
/// `Stalled`: nothing changes until the commit or the spec does.
pub const STALLED: &str = "Stalled";

/// What one sync ended with.
#[derive(Debug)]
pub enum Outcome {
    /// `spec.suspend` is set: nothing was fetched or applied.
    Suspended,
    /// Every object of `commit` is applied; `pruned` were deleted.
    Applied {
        commit: String,
        pull_request: Option<i64>,
        inventory: Vec<InventoryEntry>,
        pruned: Vec<InventoryEntry>,
    },
    /// The commit (or the spec) cannot be applied as it is: nothing was.
    Refused {
        commit: Option<String>,
        reason: &'static str,
        message: String,
    },
    /// Something that may pass (the remote, the apiserver) failed; retried.
    Failed {
        commit: Option<String>,
        reason: &'static str,
        message: String,
    },
}

/// The first 12 characters of a commit id, as people quote them.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// The status after `outcome`. `fetched` is the commit fetched in this sync
/// when it had to be fetched (the head moved).
pub fn desired_status(
    source: &GitSource,
    outcome: &Outcome,
    fetched: Option<&str>,
    now: Timestamp,
) -> GitSourceStatus {
    let old = source.status.clone().unwrap_or_default();
    let mut status = GitSourceStatus {
        observed_generation: source.metadata.generation,
        ..old.clone()
    };
    if let Some(commit) = fetched {
        status.last_fetched_commit = Some(commit.to_string());
        status.last_fetched_at = Some(now.to_string());
    }
    let wanted = match outcome {
        Outcome::Suspended => vec![ConditionSpec::new(
            RECONCILING,
            false,
            "Suspended",
            "spec.suspend is set: nothing is fetched, applied or pruned",
        )],
        Outcome::Applied {
            commit,
            pull_request,
            inventory,
            pruned,
        } => {
            status.last_attempted_commit = Some(commit.clone());
            status.last_applied_commit = Some(commit.clone());
            status.last_applied_pull_request = *pull_request;
            status.inventory = inventory.clone();
            let mut message = format!("applied commit {}: {} objects", short(commit), inventory.len());
            if !pruned.is_empty() {
                message.push_str(&format!(", {} pruned", pruned.len()));
            }
            vec![
                ConditionSpec::new(READY, true, "Succeeded", message.clone()),
                ConditionSpec::new(RECONCILING, false, "Succeeded", message.clone()),
                ConditionSpec::new(STALLED, false, "Succeeded", message),
            ]
        }
        Outcome::Refused {
            commit,
            reason,
            message,
        } => {
            if let Some(commit) = commit {
                status.last_attempted_commit = Some(commit.clone());
            }
            let message = with_commit(commit.as_deref(), message, old.last_applied_commit.as_deref());
            vec![
                ConditionSpec::new(READY, false, reason, message.clone()),
                ConditionSpec::new(
                    RECONCILING,
                    false,
                    reason,
                    "waiting for a new commit or a change to the spec",
                ),
                ConditionSpec::new(STALLED, true, reason, message),
            ]
        }
        Outcome::Failed {
            commit,
            reason,
            message,
        } => {
            if let Some(commit) = commit {
                status.last_attempted_commit = Some(commit.clone());
            }
            let message = with_commit(commit.as_deref(), message, old.last_applied_commit.as_deref());
            vec![
                ConditionSpec::new(READY, false, reason, message.clone()),
                ConditionSpec::new(RECONCILING, true, "ProgressingWithRetry", message.clone()),
                ConditionSpec::new(STALLED, false, reason, message),
            ]
        }
    };
    status.conditions = conditions::merge(&old.conditions, &wanted, source.metadata.generation, now);
    status
}

/// `message`, saying which commit it is about and what stays applied.
fn with_commit(commit: Option<&str>, message: &str, applied: Option<&str>) -> String {
    let about = commit
        .map(|c| format!("commit {}: ", short(c)))
        .unwrap_or_default();
    let kept = match applied {
        Some(applied) => format!(" (commit {} stays applied)", short(applied)),
        None => String::new(),
    };
    truncate(&format!("{about}{message}{kept}"), 4000)
}

/// The Events for going from `old` to `new`: `Applied` when a commit was
/// applied for the first time or something was pruned or Ready came back;
/// a Warning when a failure is new (another reason or message).
pub fn events(old: &GitSourceStatus, new: &GitSourceStatus, pruned: &[InventoryEntry]) -> Vec<Event> {
    let ready = |s: &GitSourceStatus| conditions::find(&s.conditions, READY).cloned();
    let (before, after) = (ready(old), ready(new));
    let Some(after) = after else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if after.status == "True" {
        let new_commit = old.last_applied_commit != new.last_applied_commit;
        let recovered = before.as_ref().is_some_and(|b| b.status != "True");
        if new_commit || recovered || !pruned.is_empty() {
            let mut note = after.message.clone();
            if !pruned.is_empty() {
                let names: Vec<String> = pruned.iter().map(describe).collect();
                note = format!("{note} ({})", names.join(", "));
            }
            out.push(Event {
                type_: EventType::Normal,
                reason: "Applied".into(),
                note: Some(truncate(&note, 1000)),
                action: "Sync".into(),
                secondary: None,
            });
        }
    } else if before
        .as_ref()
        .is_none_or(|b| b.reason != after.reason || b.message != after.message)
    {
        out.push(Event {
            type_: EventType::Warning,
            reason: after.reason.clone(),
            note: Some(truncate(&after.message, 1000)),
            action: "Sync".into(),
            secondary: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(status: Option<GitSourceStatus>) -> GitSource {
        let mut s = GitSource::new("apps", Default::default());
        s.metadata.generation = Some(2);
        s.status = status;
        s
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn entry(name: &str) -> InventoryEntry {
        InventoryEntry {
            api_version: "winky.dev/v1alpha1".into(),
            kind: "App".into(),
            namespace: "team".into(),
            name: name.into(),
        }
    }

    #[test]
    fn an_applied_commit_is_ready_and_announced_once() {
        let first = source(None);
        let applied = Outcome::Applied {
            commit: "aaaaaaaaaaaaaaaaaaaa".into(),
            pull_request: Some(7),
            inventory: vec![entry("notes")],
            pruned: vec![],
        };
        let status = desired_status(&first, &applied, Some("aaaaaaaaaaaaaaaaaaaa"), at(10));
        assert_eq!(
            status.last_applied_commit.as_deref(),
            Some("aaaaaaaaaaaaaaaaaaaa")
        );
        assert_eq!(status.last_applied_pull_request, Some(7));
        assert_eq!(status.last_fetched_at.as_deref(), Some("1970-01-01T00:00:10Z"));
        assert_eq!(status.observed_generation, Some(2));
        let ready = conditions::find(&status.conditions, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Succeeded")
        );
        assert_eq!(ready.message, "applied commit aaaaaaaaaaaa: 1 objects");
        let events = events(&GitSourceStatus::default(), &status, &[]);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "Applied");

        // The interval's re-apply of the same commit: same status, no Event.
        let again = desired_status(&source(Some(status.clone())), &applied, None, at(70));
        assert_eq!(again, status);
        assert!(super::events(&status, &again, &[]).is_empty());
    }

    #[test]
    fn a_refused_commit_stalls_keeps_the_inventory_and_warns_once() {
        let applied = GitSourceStatus {
            last_applied_commit: Some("aaaaaaaaaaaaaaaa".into()),
            inventory: vec![entry("notes")],
            ..Default::default()
        };
        let refused = Outcome::Refused {
            commit: Some("bbbbbbbbbbbbbbbb".into()),
            reason: "KindNotAllowed",
            message: "deploy/x.yaml:1: Secret (v1) is not allowed here".into(),
        };
        let status = desired_status(&source(Some(applied.clone())), &refused, None, at(10));
        assert_eq!(status.inventory, applied.inventory, "nothing was pruned");
        assert_eq!(status.last_applied_commit, applied.last_applied_commit);
        assert_eq!(status.last_attempted_commit.as_deref(), Some("bbbbbbbbbbbbbbbb"));
        let stalled = conditions::find(&status.conditions, STALLED).unwrap();
        assert_eq!(stalled.status, "True");
        assert_eq!(
            stalled.message,
            "commit bbbbbbbbbbbb: deploy/x.yaml:1: Secret (v1) is not allowed here (commit aaaaaaaaaaaa stays applied)"
        );
        let warned = events(&applied, &status, &[]);
        assert_eq!(warned.len(), 1);
        assert_eq!(warned[0].type_, EventType::Warning);
        assert_eq!(warned[0].reason, "KindNotAllowed");
        let again = desired_status(&source(Some(status.clone())), &refused, None, at(20));
        assert!(
            events(&status, &again, &[]).is_empty(),
            "the same failure is not announced again"
        );
    }

    #[test]
    fn a_transient_failure_is_reconciling_not_stalled() {
        let failed = Outcome::Failed {
            commit: None,
            reason: "FetchFailed",
            message: "listing git://x: connection refused".into(),
        };
        let status = desired_status(&source(None), &failed, None, at(1));
        let find = |t| conditions::find(&status.conditions, t).unwrap().status.clone();
        assert_eq!(
            (find(READY), find(RECONCILING), find(STALLED)),
            ("False".into(), "True".into(), "False".into())
        );
    }
}
