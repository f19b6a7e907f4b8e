//! The parts of a reconcile every controller shares, written once:
//!
//! ```text
//!   Controller::run ─▶ <kind>::reconcile ─▶ driver::reconcile(object, ctx, body)
//!                        (instrumented)       │ times the body, counts its result,
//!                                             │ forgets past failures on success
//!                                             └ body: dereference → validate → build
//!                                                     → apply → driver::write_status
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
use kube::runtime::events::Event;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use crate::apply::apply_status;
use crate::context::ControllerContext;
use crate::error::{Error, Result};
use crate::events;
use crate::metrics::{Metrics, ReconcileResult};

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
