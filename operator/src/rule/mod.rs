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
//!
//! A Rule that moves to another App (`spec.app` changed) is unpublished from
//! the App it left in the same reconcile: the runtime ConfigMaps are indexed
//! by the Rules their `rules.json` lists ([`crate::index::rules_published_in`]),
//! so the old App is found from what it publishes, not from memory — after a
//! restart too — and a ConfigMap's change reconciles the Rules it lists as
//! well as its App's.
//!
//! A ConfigMap the apiserver refuses to apply is reported in the Rule's
//! status (`Ready=False`, `ApplyFailed`) and a Warning Event, and retried
//! with backoff ([`driver::report_failure`]).

pub mod publish;
mod wiring;

use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as FinalizerError, Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use tracing::{debug, info, instrument};
use winky_crds::Rule;
use winky_crds::keys::APP_LABEL;

pub use self::wiring::controller;
use crate::context::{ControllerContext, Core};
use crate::driver;
use crate::error::{Error, Result};
use crate::events;
use crate::index::{AppKey, ByApp, PublishedRules, published_rules};
use crate::listed::Listed;
use crate::metrics::ReconcileResult;
use crate::naming::runtime_config_map;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "rule";
/// The field manager that owns `rules.json` in runtime ConfigMaps.
pub const RULES_MANAGER: &str = "winky-operator-rules";
/// Finalizer that unpublishes a Rule before it goes.
pub const FINALIZER: &str = "winky.dev/unpublish-rule";

/// Shared state of the Rule controller.
pub struct RuleContext {
    /// Client, Events, metrics and backoffs.
    pub core: Core,
    /// Every Rule in scope.
    pub rules: Store<Rule>,
    /// Rules by App: a Rule's siblings, a ConfigMap's Rules.
    pub rules_by_app: ByApp<Rule>,
    /// The runtime ConfigMaps the operator manages, whole: what `rules.json`
    /// holds decides whether it needs applying.
    pub config_maps: Store<ConfigMap>,
    /// The runtime ConfigMaps by the Rules their `rules.json` lists: where a
    /// Rule is published, whichever App it names now.
    pub published_in: PublishedRules,
    /// Resolves once the ConfigMap cache has listed.
    pub listed: Listed,
    /// Whether each Rule may be published, so siblings are not re-evaluated.
    pub verdicts: publish::Verdicts,
}

impl std::fmt::Debug for RuleContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleContext").finish_non_exhaustive()
    }
}

impl ControllerContext for RuleContext {
    const NAME: &'static str = CONTROLLER;

    fn core(&self) -> &Core {
        &self.core
    }
}

/// Reconciles one Rule.
#[instrument(skip(rule, ctx), fields(rule = %rule.name_any(), namespace = rule.namespace().unwrap_or_default()))]
pub async fn reconcile(rule: Arc<Rule>, ctx: Arc<RuleContext>) -> Result<Action> {
    driver::reconcile(rule.as_ref(), ctx.as_ref(), async {
        Ok((
            ReconcileResult::Success,
            reconcile_rule(rule.clone(), &ctx).await?,
        ))
    })
    .await
}

/// Runs the finalizer around [`apply`] and [`cleanup`].
async fn reconcile_rule(rule: Arc<Rule>, ctx: &RuleContext) -> Result<Action> {
    let namespace = rule.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let api: Api<Rule> = Api::namespaced(ctx.core.client.clone(), &namespace);
    let key = driver::key(rule.as_ref());
    let uid = rule.uid().unwrap_or_default();
    let action = match finalizer(&api, FINALIZER, rule, |event| async {
        match event {
            FinalizerEvent::Apply(rule) => apply(&rule, ctx).await,
            FinalizerEvent::Cleanup(rule) => cleanup(&rule, ctx).await,
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
    Ok(action)
}

async fn apply(rule: &Rule, ctx: &RuleContext) -> Result<Action> {
    let evaluation = publish::evaluate(rule);
    ctx.verdicts.record(rule, &evaluation);
    // A cache that has not listed yet would report every ConfigMap missing.
    ctx.listed.wait().await;
    let published = match publish(rule, ctx, false).await {
        Ok(published) => published,
        Err(error) => return Err(failed(rule, Some(&evaluation), error, ctx).await),
    };
    let old = rule.status.clone().unwrap_or_default();
    let new = publish::desired_status(rule, &evaluation, published, Timestamp::now());
    driver::write_status(ctx, rule, &old, &new, |old, new| {
        events::for_transitions(&old.conditions, &new.conditions)
    })
    .await?;
    Ok(Action::await_change())
}

async fn cleanup(rule: &Rule, ctx: &RuleContext) -> Result<Action> {
    ctx.listed.wait().await;
    if let Err(error) = publish(rule, ctx, true).await {
        return Err(failed(rule, None, error, ctx).await);
    }
    ctx.verdicts.forget(rule);
    // Deletions are rare: a good moment to drop verdicts of Rules gone otherwise.
    let live: std::collections::HashSet<String> = ctx.rules.state().iter().filter_map(|r| r.uid()).collect();
    ctx.verdicts.retain(|uid| live.contains(uid));
    Ok(Action::await_change())
}

/// Reports a ConfigMap the apiserver refused (in the Rule's status and a
/// Warning Event) and returns `error`, so that the reconcile is retried with
/// backoff.
async fn failed(
    rule: &Rule,
    evaluation: Option<&publish::Evaluation>,
    error: Error,
    ctx: &RuleContext,
) -> Error {
    let Some(failure) = driver::ChildFailure::of(&error) else {
        return error;
    };
    let old = rule.status.clone().unwrap_or_default();
    let new = publish::failed_status(rule, evaluation, &failure, Timestamp::now());
    driver::report_failure(ctx, rule, &old, &new, &failure, error).await
}

/// Publishes the Rules of `rule`'s App — with `rule` as it is now, or
/// without it when it is `leaving` — and republishes, without `rule`, every
/// other App whose `rules.json` still lists it: the App it was moved away
/// from. Returns whether `rule`'s App has its runtime ConfigMap.
async fn publish(rule: &Rule, ctx: &RuleContext, leaving: bool) -> Result<bool> {
    let published = publish_app(rule, ctx, &rule.spec.app, leaving).await?;
    for app in apps_publishing(rule, ctx) {
        if app != rule.spec.app {
            info!(left = %app, "unpublishing the Rule from the App it no longer names");
            publish_app(rule, ctx, &app, true).await?;
        }
    }
    Ok(published)
}

/// Publishes the Rules of the App `app` (in `rule`'s namespace) when the
/// App's runtime ConfigMap exists; `rule` is among them when it names `app`
/// and is not `leaving`. Returns whether the ConfigMap exists.
///
/// A Rule being reconciled skips the apply when the cached ConfigMap holds
/// the document already: if the cache is behind, the ConfigMap's next event
/// reconciles the Rule again. A Rule that is leaving always applies: once its
/// finalizer is gone, or it names another App, nothing would look again.
async fn publish_app(rule: &Rule, ctx: &RuleContext, app: &str, leaving: bool) -> Result<bool> {
    let namespace = rule.namespace().unwrap_or_default();
    let Some(cached) = ctx.config_maps.get(&publish::config_map_ref(&namespace, app)) else {
        return Ok(false);
    };
    let document = publish::document(&members(rule, ctx, app, leaving), &ctx.verdicts);
    if leaving || publish::needs_publishing(&cached, &document) {
        publish::apply_rules(&ctx.core.client, &namespace, app, document).await?;
    }
    Ok(true)
}

/// The Rules of the App `app` in `rule`'s namespace, as the cache holds
/// them, with `rule` as it is now in place of the cached one: among them
/// when it names `app` and is not `leaving`, else not.
fn members(rule: &Rule, ctx: &RuleContext, app: &str, leaving: bool) -> Vec<Arc<Rule>> {
    let namespace = rule.namespace().unwrap_or_default();
    let key = AppKey::new(namespace, app);
    let mut rules: Vec<Arc<Rule>> = ctx
        .rules_by_app
        .get(&key)
        .iter()
        .filter_map(|r| ctx.rules.get(r))
        // The index follows the store a step behind: what the store holds decides.
        .filter(|r| r.spec.app == app)
        .filter(|r| r.name_any() != rule.name_any())
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect();
    if !leaving && rule.spec.app == app {
        rules.push(Arc::new(rule.clone()));
    }
    rules.sort_by_key(|r| r.name_any());
    rules
}

/// The Apps whose cached runtime ConfigMap lists `rule` in its `rules.json`.
fn apps_publishing(rule: &Rule, ctx: &RuleContext) -> Vec<String> {
    let namespace = rule.namespace().unwrap_or_default();
    let mut apps: Vec<String> = ctx
        .published_in
        .get(&ObjectRef::new(&rule.name_any()).within(&namespace))
        .iter()
        .filter_map(|r| ctx.config_maps.get(r))
        .filter_map(|cm| {
            let app = cm.labels().get(APP_LABEL)?;
            // Only an App's own runtime ConfigMap in its namespace is published to.
            (cm.name_any() == runtime_config_map(app)).then(|| app.clone())
        })
        .collect();
    apps.sort_unstable();
    apps.dedup();
    apps
}

/// The Rules to reconcile when the runtime ConfigMap of an App changes: the
/// App's, and those its `rules.json` lists (one that moved to another App is
/// reconciled, and unpublishes itself here).
pub fn rules_of_config_map(rules_by_app: &ByApp<Rule>, config_map: &ConfigMap) -> Vec<ObjectRef<Rule>> {
    let (Some(app), Some(namespace)) = (config_map.labels().get(APP_LABEL), config_map.namespace()) else {
        return Vec::new();
    };
    let mut rules = rules_by_app.get(&AppKey::new(namespace, app));
    let known: std::collections::HashSet<ObjectRef<Rule>> = rules.iter().cloned().collect();
    rules.extend(
        published_rules(config_map)
            .into_iter()
            .filter(|r| !known.contains(r)),
    );
    rules
}
