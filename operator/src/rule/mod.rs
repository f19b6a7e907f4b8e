//! The Rule controller: compiles each Rule with `winky-policies`, runs its
//! tests, reports both in status, and publishes every passing Rule of an App
//! into the App's runtime ConfigMap.
//!
//! One owner per field: the App controller applies `data["runtime.json"]` of
//! `<app>-runtime` with the field manager `winky-operator`; this controller
//! applies only `data["rules.json"]` with [`RULES_MANAGER`]. Server-side apply
//! keeps the two apart, so neither ever removes the other's key. `rules.json`
//! always holds all publishable Rules of the App, recomputed from the cache
//! (each sibling's verdict remembered per generation) and applied only when
//! it differs from the cached ConfigMap; a finalizer republishes without a
//! Rule that is being deleted.

pub mod publish;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{debug, instrument, warn};
use winky_crds::Rule;

use crate::apply::apply_status;
use crate::context::Backoffs;
use crate::error::{Error, Result};
use crate::events;
use crate::metrics::Metrics;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "rule";
/// The field manager that owns `rules.json` in runtime ConfigMaps.
pub const RULES_MANAGER: &str = "winky-operator-rules";
/// Finalizer that unpublishes a Rule before it goes.
pub const FINALIZER: &str = "winky.dev/unpublish-rule";

/// Shared state of the Rule controller.
pub struct RuleContext {
    /// API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: crate::events::Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Every Rule in scope.
    pub rules: Store<Rule>,
    /// The runtime ConfigMaps the operator manages, whole: what `rules.json`
    /// holds decides whether it needs applying.
    pub config_maps: Store<ConfigMap>,
    /// Resolves once the ConfigMap cache has listed.
    pub listed: crate::listed::Listed,
    /// Whether each Rule may be published, so siblings are not re-evaluated.
    pub verdicts: publish::Verdicts,
    /// Retry delays of failing Rules.
    pub backoffs: Backoffs,
}

impl std::fmt::Debug for RuleContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleContext").finish_non_exhaustive()
    }
}

/// Reconciles one Rule.
#[instrument(skip(rule, ctx), fields(rule = %rule.name_any(), namespace = rule.namespace().unwrap_or_default()))]
pub async fn reconcile(rule: Arc<Rule>, ctx: Arc<RuleContext>) -> Result<Action> {
    let started = Instant::now();
    let namespace = rule.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<Rule> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = format!("{namespace}/{}", rule.name_any());
    let uid = rule.uid().unwrap_or_default();
    let action = match finalizer(&api, FINALIZER, rule, |event| async {
        match event {
            FinalizerEvent::Apply(rule) => apply(&rule, &ctx).await,
            FinalizerEvent::Cleanup(rule) => cleanup(&rule, &ctx).await,
        }
    })
    .await
    {
        Ok(action) => action,
        // A reconcile queued before the Rule went finds it gone: its
        // finalizer was removed already, and there is nothing left to do.
        Err(
            FinalizerError::AddFinalizer(kube::Error::Api(e))
            | FinalizerError::RemoveFinalizer(kube::Error::Api(e)),
        ) if e.code == 404 => {
            ctx.verdicts.forget_uid(&uid);
            Action::await_change()
        }
        // The finalizer patch tests the finalizers it read from the cache;
        // 422 means the server's differ (often: a reconcile a moment ago
        // added ours). That newer Rule is on its way through the watch and
        // reconciles again.
        Err(
            FinalizerError::AddFinalizer(kube::Error::Api(e))
            | FinalizerError::RemoveFinalizer(kube::Error::Api(e)),
        ) if e.code == 422 => {
            debug!(rule = %key, "the cached finalizers were stale; waiting for the newer Rule");
            Action::await_change()
        }
        Err(e) => return Err(Error::Finalizer(Box::new(e))),
    };
    ctx.backoffs.reset(&key);
    ctx.metrics.reconciled(CONTROLLER, "success", started.elapsed());
    Ok(action)
}

/// Requeues a failed reconcile with exponential backoff and jitter.
pub fn error_policy(rule: Arc<Rule>, error: &Error, ctx: Arc<RuleContext>) -> Action {
    ctx.metrics.failed(CONTROLLER, error.category());
    let key = format!("{}/{}", rule.namespace().unwrap_or_default(), rule.name_any());
    let delay = ctx.backoffs.next(&key);
    warn!(rule = %rule.name_any(), category = error.category(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn apply(rule: &Rule, ctx: &RuleContext) -> Result<Action> {
    let evaluation = publish::evaluate(rule);
    ctx.verdicts.record(rule, &evaluation);
    // A cache that has not listed yet would report every ConfigMap missing.
    ctx.listed.wait().await;
    let published = publish_siblings(rule, ctx, None).await?;
    let old = rule.status.clone().unwrap_or_default();
    let new = publish::desired_status(rule, &evaluation, published, Timestamp::now());
    if new != old {
        apply_status(&ctx.client, rule, &new).await?;
        let events = events::for_transitions(&old.conditions, &new.conditions);
        events::publish(&ctx.recorder, &rule.object_ref(&()), events).await;
    }
    Ok(Action::await_change())
}

async fn cleanup(rule: &Rule, ctx: &RuleContext) -> Result<Action> {
    ctx.listed.wait().await;
    publish_siblings(rule, ctx, Some(rule)).await?;
    ctx.verdicts.forget(rule);
    // Deletions are rare: a good moment to drop verdicts of Rules gone otherwise.
    let live: std::collections::HashSet<String> = ctx.rules.state().iter().filter_map(|r| r.uid()).collect();
    ctx.verdicts.retain(|uid| live.contains(uid));
    Ok(Action::await_change())
}

/// Publishes the Rules of `rule`'s App (without `leaving`) when the App's
/// runtime ConfigMap exists; returns whether it exists.
///
/// A Rule being reconciled skips the apply when the cached ConfigMap holds
/// the document already: if the cache is behind, the ConfigMap's next event
/// reconciles the Rule again. A Rule that is leaving always applies: once its
/// finalizer is gone, nothing would look again.
async fn publish_siblings(rule: &Rule, ctx: &RuleContext, leaving: Option<&Rule>) -> Result<bool> {
    let namespace = rule.namespace().unwrap_or_default();
    let Some(cached) = ctx
        .config_maps
        .get(&publish::config_map_ref(&namespace, &rule.spec.app))
    else {
        return Ok(false);
    };
    let document = publish::document(&siblings(rule, ctx, leaving), &ctx.verdicts);
    if leaving.is_some() || publish::needs_publishing(&cached, &document) {
        publish::apply_rules(&ctx.client, &namespace, &rule.spec.app, document).await?;
    }
    Ok(true)
}

/// The Rules of the same App, `rule` itself as it is now, without `leaving`.
fn siblings(rule: &Rule, ctx: &RuleContext, leaving: Option<&Rule>) -> Vec<Arc<Rule>> {
    let namespace = rule.namespace();
    let mut rules: Vec<Arc<Rule>> = ctx
        .rules
        .state()
        .into_iter()
        .filter(|r| r.namespace() == namespace && r.spec.app == rule.spec.app)
        .filter(|r| r.name_any() != rule.name_any())
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect();
    if leaving.is_none() {
        rules.push(Arc::new(rule.clone()));
    }
    rules.sort_by_key(|r| r.name_any());
    rules
}

/// The Rules to reconcile when the runtime ConfigMap of an App changes.
pub fn rules_of_config_map(rules: &Store<Rule>, config_map: &ConfigMap) -> Vec<ObjectRef<Rule>> {
    let Some(app) = config_map.labels().get(winky_crds::keys::APP_LABEL) else {
        return Vec::new();
    };
    let namespace = config_map.namespace();
    rules
        .state()
        .into_iter()
        .filter(|r| r.namespace() == namespace && &r.spec.app == app)
        .map(|r| ObjectRef::from_obj(&*r))
        .collect()
}
