//! The parts of a reconcile every controller shares, written once:
//!
//! ```text
//!   Controller::run ─▶ <kind>::reconcile ─▶ driver::reconcile(object, ctx, body)
//!                        (instrumented)       │ times the body, counts its result,
//!                                             │ forgets past failures on success
//!                                             └ body: dereference → validate → build
//!                                                     → apply → driver::write_status
//!                                                       (a child the apiserver refused:
//!                                                        driver::report_failure, then Err)
//!                    ─▶ driver::error_policy  (on Err: count by category, back off with jitter)
//!   results ─▶ driver::drive                  (log and count what is not a reconcile)
//! ```
//!
//! A controller's context implements [`ControllerContext`]; everything here
//! is generic over it, so the controller's name is a constant and nothing is
//! dispatched at run time.

use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use kube::core::NamespaceResourceScope;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::apply::apply_status;
use crate::conditions::{ConditionSpec, DEGRADED, PROGRESSING, READY};
use crate::context::ControllerContext;
use crate::error::{Error, Result};
use crate::events;
use crate::metrics::{Metrics, ReconcileResult};

/// Condition reason of a child the apiserver refused to apply.
pub const APPLY_FAILED: &str = "ApplyFailed";
/// Condition reason of a child the apiserver refused to delete.
pub const DELETE_FAILED: &str = "DeleteFailed";
/// The longest message a condition gets (the apiserver's can be long).
const FAILURE_MESSAGE_MAX: usize = 2000;

/// The key of an object in backoffs and logs: `namespace/name` (`/name`
/// when cluster-scoped).
pub fn key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.name_any()
    )
}

/// Whether a reconcile that ended with `result` clears the object's record
/// of failures, so that its next failure backs off from the start again.
/// `Error` is itself a failure (the body backed off); `Suspended` did
/// nothing that shows the object works again.
fn forgets_failures(result: ReconcileResult) -> bool {
    !matches!(result, ReconcileResult::Error | ReconcileResult::Suspended)
}

/// Runs `body`, the reconcile of `object`, and counts how it ended: its
/// result and duration in metrics, and, unless it failed, no more backoff for
/// the object. An `Err` is returned as it is, for [`error_policy`].
pub async fn reconcile<K, C>(
    object: &K,
    ctx: &C,
    body: impl Future<Output = Result<(ReconcileResult, Action)>>,
) -> Result<Action>
where
    K: Resource,
    C: ControllerContext,
{
    let started = Instant::now();
    let (result, action) = body.await?;
    let core = ctx.core();
    if forgets_failures(result) {
        core.backoffs.reset(&key(object));
    }
    core.metrics.reconciled(C::NAME, result, started.elapsed());
    Ok(action)
}

/// Requeues a failed reconcile with exponential backoff and jitter, and
/// counts the failure by category.
pub fn error_policy<K, C>(object: Arc<K>, error: &Error, ctx: Arc<C>) -> Action
where
    K: Resource,
    C: ControllerContext,
{
    let core = ctx.core();
    core.metrics.failed(C::NAME, error.category());
    let key = key(object.as_ref());
    let delay = core.backoffs.next(&key);
    warn!(controller = C::NAME, object = %key, category = error.category(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Writes `new` through the status subresource of `object` when it differs
/// from `old` (the status this controller owns, as the object carries it);
/// returns whether it wrote.
pub async fn apply_changed_status<K, S, C>(ctx: &C, object: &K, old: &S, new: &S) -> Result<bool>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    S: Serialize + PartialEq,
    C: ControllerContext,
{
    if new == old {
        return Ok(false);
    }
    apply_status(&ctx.core().client, object, new).await?;
    Ok(true)
}

/// Like [`apply_changed_status`], then publishes the Events `events` finds
/// between `old` and `new`: a status that did not change announces nothing.
pub async fn write_status<K, S, C>(
    ctx: &C,
    object: &K,
    old: &S,
    new: &S,
    events: impl FnOnce(&S, &S) -> Vec<Event>,
) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    S: Serialize + PartialEq,
    C: ControllerContext,
{
    if apply_changed_status(ctx, object, old, new).await? {
        events::publish(&ctx.core().recorder, &object.object_ref(&()), events(old, new)).await;
    }
    Ok(())
}

/// A child that a reconcile could not write, as status and Events tell it:
/// the step (`ApplyFailed`, `DeleteFailed`) and the apiserver's message. The
/// message is what the apiserver answered about the operator's own request,
/// built from the spec and references only: the controllers never put a
/// secret's value into a child, so none can come back in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildFailure {
    /// [`APPLY_FAILED`] or [`DELETE_FAILED`]: condition and Event reason.
    pub reason: &'static str,
    /// `applying Service b24.dotted: <the apiserver's message>`.
    pub message: String,
}

impl ChildFailure {
    /// The failure `error` is, when it is a child's apply or delete (not a
    /// status write, which could not report itself anyway).
    pub fn of(error: &Error) -> Option<Self> {
        let (reason, verb, kind, name, source) = match error {
            Error::Apply { kind, name, source } => (APPLY_FAILED, "applying", kind, name, source),
            Error::Prune { kind, name, source } => (DELETE_FAILED, "deleting", kind, name, source),
            Error::Finalizer(inner) => {
                use kube::runtime::finalizer::Error as Finalizer;
                return match inner.as_ref() {
                    Finalizer::ApplyFailed(e) | Finalizer::CleanupFailed(e) => Self::of(e),
                    _ => None,
                };
            }
            _ => return None,
        };
        let answer = match source {
            kube::Error::Api(status) if !status.message.is_empty() => {
                format!("{} ({})", status.message, status.code)
            }
            other => other.to_string(),
        };
        let answer = events::truncate(&answer, FAILURE_MESSAGE_MAX);
        Some(Self {
            reason,
            message: format!("{verb} {kind} {name}: {answer}; retrying with backoff"),
        })
    }

    /// `Ready=False`, `Progressing=False` and `Degraded=True`, each with the
    /// reason and message: nothing runs as the spec asks until the apiserver
    /// accepts the child.
    pub fn conditions(&self) -> Vec<ConditionSpec> {
        vec![
            ConditionSpec::new(READY, false, self.reason, self.message.clone()),
            ConditionSpec::new(PROGRESSING, false, self.reason, self.message.clone()),
            ConditionSpec::new(DEGRADED, true, self.reason, self.message.clone()),
        ]
    }

    /// The Warning Event of one failed attempt.
    pub fn event(&self) -> Event {
        Event {
            type_: EventType::Warning,
            reason: self.reason.into(),
            note: Some(events::truncate(&self.message, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        }
    }
}

/// Reports a child the apiserver refused: writes `new` (the status with the
/// failure's conditions) when it differs from `old`, and publishes the
/// failure's Warning Event, each attempt (the recorder counts a repeat on
/// the first one, so `kubectl describe` shows how often it was tried). Then
/// returns `error` for [`error_policy`], which retries with backoff. A status
/// write that fails too is logged: the apply error is what is returned.
pub async fn report_failure<K, S, C>(
    ctx: &C,
    object: &K,
    old: &S,
    new: &S,
    failure: &ChildFailure,
    error: Error,
) -> Error
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
    S: Serialize + PartialEq,
    C: ControllerContext,
{
    if let Err(e) = apply_changed_status(ctx, object, old, new).await {
        warn!(controller = C::NAME, object = %key(object), error = %e, "writing the status of a failed apply failed");
    }
    events::publish(
        &ctx.core().recorder,
        &object.object_ref(&()),
        vec![failure.event()],
    )
    .await;
    error
}

/// Drives the result stream of the controller `name` (its metrics label) to
/// its end. Reconcile errors are logged by [`error_policy`]; this logs the
/// others and counts failed lists and watches.
pub async fn drive<T, R, Q>(
    name: &'static str,
    metrics: &Metrics,
    results: impl Stream<Item = Result<T, controller::Error<R, Q>>>,
) where
    R: std::error::Error + 'static,
    Q: std::error::Error + 'static,
{
    info!("{name} controller started");
    results
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                // A reconcile queued for an object deleted since: expected.
                Err(e @ controller::Error::ObjectNotFound(_)) => debug!(error = %e, "{name} controller"),
                // A list or watch of one of its inputs failed (it is retried).
                Err(e @ controller::Error::QueueError(_)) => {
                    metrics.watch_failed(name);
                    warn!(error = %e, "{name} controller");
                }
                Err(e) => warn!(error = %e, "{name} controller"),
            }
        })
        .await;
    info!("{name} controller stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use winky_crds::{App, PromotionPolicy};

    #[test]
    fn the_key_is_namespace_and_name() {
        let mut app = App::new("notes", Default::default());
        app.metadata.namespace = Some("team".into());
        assert_eq!(key(&app), "team/notes");
        // Cluster-scoped: one key per name all the same.
        let policy = PromotionPolicy::new("default", Default::default());
        assert_eq!(key(&policy), "/default");
    }

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn a_refused_child_is_a_failure_with_the_apiservers_message() {
        let failure = ChildFailure::of(&Error::Apply {
            kind: "Service".into(),
            name: "b24.dotted".into(),
            source: api(
                422,
                "Service \"b24.dotted\" is invalid: metadata.name: Invalid value",
            ),
        })
        .unwrap();
        assert_eq!(failure.reason, APPLY_FAILED);
        assert_eq!(
            failure.message,
            "applying Service b24.dotted: Service \"b24.dotted\" is invalid: metadata.name: Invalid value (422); retrying with backoff"
        );
        let conditions: Vec<(&str, bool, &str)> = failure
            .conditions()
            .iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect();
        assert_eq!(
            conditions,
            [
                (READY, false, APPLY_FAILED),
                (PROGRESSING, false, APPLY_FAILED),
                (DEGRADED, true, APPLY_FAILED)
            ]
        );
        let event = failure.event();
        assert_eq!(
            (event.type_, event.reason.as_str()),
            (EventType::Warning, APPLY_FAILED)
        );

        let prune = Error::Prune {
            kind: "CronJob".into(),
            name: "x-fn".into(),
            source: api(500, "etcd timed out"),
        };
        assert_eq!(ChildFailure::of(&prune).unwrap().reason, DELETE_FAILED);
        // Inside a finalizer, the same.
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(prune)));
        assert_eq!(ChildFailure::of(&wrapped).unwrap().reason, DELETE_FAILED);
        // A status write is not a child.
        assert!(ChildFailure::of(&Error::Status(api(500, "x"))).is_none());
        // A very long answer is cut.
        let long = ChildFailure::of(&Error::Apply {
            kind: "Deployment".into(),
            name: "n".into(),
            source: api(500, &"x".repeat(10_000)),
        })
        .unwrap();
        assert!(
            long.message.len() < FAILURE_MESSAGE_MAX + 100,
            "{}",
            long.message.len()
        );
        assert!(
            long.message.ends_with("…; retrying with backoff"),
            "{}",
            long.message
        );
    }

    #[test]
    fn only_a_failure_or_a_suspension_keeps_the_backoff() {
        let kept: Vec<&str> = ReconcileResult::ALL
            .into_iter()
            .filter(|r| !forgets_failures(*r))
            .map(ReconcileResult::as_str)
            .collect();
        assert_eq!(kept, ["suspended", "error"]);
    }
}
