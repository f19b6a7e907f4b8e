//! The Promotion controller: for every App that follows a PromotionPolicy,
//! each revision moves stage by stage only when its gates hold, and every
//! decision is on record in its Promotions.
//!
//! ```text
//!  App (new revision) ─▶ snapshot: ControllerRevision <app>-<revision> (owned by the App)
//!      │
//!      ├─ gather: policy stages, the App's Promotions, approvals (GitHub: the
//!      │          merged pull request's comments), SLO results
//!      ├─ winky_promotion::pipeline::decide (pure)
//!      └─ write: new Promotions, changed statuses (append-only history and
//!                approvals), one Event per new history entry
//! ```
//!
//! The App controller runs, in each stage, the revision Promoted into it.
//! Gates that wait on time (soak) requeue when they end; gates that wait on
//! people (approvals) are looked at again when a Promotion changes, and
//! every [`APPROVALS_POLL`] while one waits.

pub mod gather;
pub mod prometheus;
mod report;
pub mod wiring;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use tracing::{info, instrument};
use winky_crds::keys::{APP_LABEL, MANAGED_BY_LABEL};
use winky_crds::promotion::{Promotion, PromotionStatus, RevisionSnapshot, snapshot_name};
use winky_crds::{App, PromotionPolicy};
use winky_promotion::pipeline::{self, AppView, Inputs};

pub use self::wiring::controller;
use crate::apply::apply_params;
use crate::context::{ControllerContext, Core};
use crate::driver;
use crate::error::{Error, Result};
use crate::events;
use crate::github::GitHub;
use crate::listed::Listed;
use crate::metrics::ReconcileResult;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "promotion";
/// How often a Promotion waiting for approvals looks at GitHub again when no
/// webhook says something changed; also the most often an App's pull
/// requests are read when none did.
pub const APPROVALS_POLL: Duration = Duration::from_secs(30);

/// When a decision made from a stale cache is made again.
const STALE_RETRY: Duration = Duration::from_millis(500);

/// How often a Promotion with an SLO gate (and a stage watched after a
/// promotion) reads Prometheus again while it waits: a condition that
/// holds is acted on within this (and a scrape), against Flagger's and
/// Kargo's 30–60 s. Each read is four instant queries per waiting gate.
pub const SLO_POLL: Duration = Duration::from_secs(4);

/// Shared state of the Promotion controller.
pub struct PromotionContext {
    /// Client, Events, metrics, backoffs.
    pub core: Core,
    /// Every Promotion in scope.
    pub promotions: Store<Promotion>,
    /// Promotions by App.
    pub promotions_by_app: crate::index::ByApp<Promotion>,
    /// Every PromotionPolicy.
    pub policies: Store<PromotionPolicy>,
    /// Every revision snapshot (ControllerRevision) the operator manages.
    pub kept: Store<ControllerRevision>,
    /// Resolves once the caches above have listed.
    pub listed: Listed,
    /// Revisions already kept as ControllerRevisions, by App uid: one apply
    /// per revision, not per reconcile (after a restart, one no-op apply).
    pub snapshots: Mutex<HashSet<(String, String)>>,
    /// Apps a webhook delivery said GitHub has news for.
    pub nudged: Arc<Mutex<HashSet<ObjectRef<App>>>>,
    /// When each App's pull requests were last read from GitHub.
    pub github_read: Mutex<HashMap<ObjectRef<App>, Instant>>,
    /// Apps whose last decision was made from a stale cache: the next one
    /// reads their Promotions from the apiserver.
    pub stale: Mutex<HashSet<ObjectRef<App>>>,
}

impl ControllerContext for PromotionContext {
    const NAME: &'static str = CONTROLLER;

    fn core(&self) -> &Core {
        &self.core
    }
}

impl std::fmt::Debug for PromotionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromotionContext").finish_non_exhaustive()
    }
}

/// Moves the revisions of one App through its stages.
#[instrument(skip(app, ctx), fields(app = %app.name_any(), namespace = app.namespace().unwrap_or_default()))]
pub async fn reconcile(app: Arc<App>, ctx: Arc<PromotionContext>) -> Result<Action> {
    driver::reconcile(app.as_ref(), ctx.as_ref(), async {
        pipeline_of(&app, &ctx).await
    })
    .await
}

async fn pipeline_of(app: &App, ctx: &PromotionContext) -> Result<(ReconcileResult, Action)> {
    if app.meta().deletion_timestamp.is_some() {
        return Ok((ReconcileResult::Deleting, Action::await_change()));
    }
    ctx.listed.wait().await;
    let namespace = app.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    // No policy, a policy not there (the App controller reports it), or no
    // revision computed yet: nothing to promote.
    let Some(policy) = app
        .spec
        .policy
        .as_ref()
        .and_then(|name| ctx.policies.get(&ObjectRef::new(name)))
    else {
        return Ok((ReconcileResult::Invalid, Action::await_change()));
    };
    let Some(revision) = app.status.as_ref().and_then(|s| s.revision.clone()) else {
        return Ok((ReconcileResult::Success, Action::await_change()));
    };
    let kept = keep_snapshot(app, &namespace, &revision, ctx).await?;

    let name = app.name_any();
    let key = ObjectRef::from_obj(app);
    // After a write refused as stale, the Promotions are read from the
    // apiserver, not the cache: a cache whose watch is slow to come back (as
    // after a kube-apiserver restart) must not hold the pipeline up.
    let fresh = ctx.stale.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    let promotions: Vec<Promotion> = if fresh {
        let api: Api<Promotion> = Api::namespaced(ctx.core.client.clone(), &namespace);
        api.list(&ListParams::default().labels(&format!("{APP_LABEL}={name}")))
            .await
            .map_err(|source| Error::Apply {
                kind: "Promotion".into(),
                name: format!("the Promotions of {name}"),
                source,
            })?
            .items
            .into_iter()
            .filter(|p| p.spec.app == name)
            .collect()
    } else {
        // The App's own, from the index: not a scan of every Promotion.
        ctx.promotions_by_app
            .get(&crate::index::AppKey::new(namespace.as_str(), name.as_str()))
            .iter()
            .filter_map(|r| ctx.promotions.get(r))
            .filter(|p| p.spec.app == name)
            .map(|p| p.as_ref().clone())
            .collect()
    };
    if kept {
        prune_snapshots(app, &namespace, &promotions, ctx).await?;
    }
    let now = Timestamp::now();
    // GitHub is read when a delivery says it has news, and otherwise at most
    // every APPROVALS_POLL: the reconciles a status write or an SLO poll
    // brings must not spend the token's rate limit (5,000 requests an hour).
    let nudged = ctx.nudged.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    let due = ctx
        .github_read
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .is_none_or(|read| read.elapsed() >= APPROVALS_POLL);
    let found = if nudged || due {
        ctx.github_read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Instant::now());
        gather::github(app, &policy, &promotions, ctx).await
    } else {
        gather::Found::default()
    };
    if let Some(problem) = &found.problem {
        // Not only a log line: whoever waits for an approval sees why it is not read.
        warn_app(
            app,
            "ApprovalsUnreadable",
            &format!("the approvals and commands could not be read from GitHub: {problem}"),
            ctx,
        )
        .await;
    }
    let slo = gather::slo(app, &namespace, &policy, &promotions, now).await;
    let (watch, watching) = gather::watch(app, &namespace, &policy, &promotions, now).await;
    let inputs = Inputs {
        app: AppView {
            name: &name,
            revision: Some(&revision),
            emulator: app.status.as_ref().and_then(|s| s.emulator.as_ref()),
        },
        stages: &policy.spec.stages,
        promotions: &promotions,
        approvals: &found.approvals,
        slo: &slo,
        watch: &watch,
        commands: &found.commands,
        now,
    };
    let decision = pipeline::decide(&inputs);
    // The commit statuses of new phases need GitHub even when no pull
    // request had to be read (a revision's first Promotions).
    let connected = match &found.github {
        None if !decision.create.is_empty() || !decision.statuses.is_empty() => {
            match gather::connect(app, ctx).await {
                Ok(github) => github,
                Err(problem) => {
                    // Where people look: the phases are written, their
                    // commit statuses are not.
                    let note = format!("the commit statuses winky/<stage> cannot be set: {problem}");
                    warn_app(app, "StatusFailed", &note, ctx).await;
                    None
                }
            }
        }
        _ => None,
    };
    let github = found.github.as_ref().or(connected.as_ref());
    if !write(app, &namespace, &promotions, &decision, github, ctx).await? {
        // Nothing is reported of a decision not all on record: it is made
        // again at once, from the Promotions as the apiserver has them, and
        // with GitHub read again (the commands read now are not on record).
        ctx.stale
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
        if found.github.is_some() {
            ctx.nudged.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
        }
        return Ok((ReconcileResult::Success, Action::requeue(STALE_RETRY)));
    }
    report::replies(app, &found.replies, &decision.replies, github, ctx).await;
    report::rollbacks(app, &namespace, &promotions, &decision.rollbacks, github, ctx).await;
    if found.retest {
        report::request_retest(app, ctx).await;
    }

    let waiting_for_people = promotions.iter().chain(decision.create.iter()).any(|p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.phase == winky_crds::promotion::Phase::AwaitingApproval)
    });
    let next = [
        decision.recheck_in,
        waiting_for_people.then_some(APPROVALS_POLL),
        found.retry,
        (!slo.is_empty() || watching).then_some(SLO_POLL),
    ]
    .into_iter()
    .flatten()
    .min();
    let action = next.map_or_else(Action::await_change, Action::requeue);
    Ok((ReconcileResult::Success, action))
}

/// Keeps `revision` of `app` as a ControllerRevision the App owns, once;
/// `true` when it was not kept before.
async fn keep_snapshot(
    app: &App,
    namespace: &str,
    revision: &winky_crds::common::RevisionRef,
    ctx: &PromotionContext,
) -> Result<bool> {
    let key = (app.uid().unwrap_or_default(), revision.id.clone());
    if ctx
        .snapshots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&key)
    {
        return Ok(false);
    }
    let name = snapshot_name(&app.name_any(), &revision.id);
    // Kept already (this operator restarted): a snapshot never changes, so
    // there is nothing to apply, and nothing new to prune for.
    if ctx.kept.get(&ObjectRef::new(&name).within(namespace)).is_some() {
        ctx.snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        return Ok(false);
    }
    let snapshot = RevisionSnapshot {
        revision: revision.clone(),
        app: app.spec.clone(),
    };
    let data = serde_json::to_value(&snapshot).map_err(|source| Error::Serialize {
        what: "a revision snapshot",
        source,
    })?;
    let owner = app
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("uid"))?;
    let object = ControllerRevision {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            labels: Some(
                [
                    (APP_LABEL.to_string(), app.name_any()),
                    (MANAGED_BY_LABEL.to_string(), crate::MANAGED_BY.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        // The revision's place in the App's history: when it was first seen.
        revision: Timestamp::now().as_millisecond(),
    };
    let api: Api<ControllerRevision> = Api::namespaced(ctx.core.client.clone(), namespace);
    match api.patch(&name, &apply_params(), &Patch::Apply(&object)).await {
        Ok(_) => {}
        // A ControllerRevision's data never changes, and the revision id is
        // the hash of the spec it keeps: one kept before (a commit or pull
        // request annotation changed since, or the operator restarted) is
        // the same revision.
        Err(kube::Error::Api(e)) if e.code == 422 => {}
        Err(source) => {
            return Err(Error::Apply {
                kind: "ControllerRevision".into(),
                name,
                source,
            });
        }
    }
    ctx.snapshots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key);
    Ok(true)
}

/// Deletes the snapshots of `app` it no longer needs
/// (`winky_promotion::pipeline::snapshots_to_prune`): a bounded history.
/// Looked at when a revision was kept for the first time, so once per
/// revision (not again for every App after a restart).
async fn prune_snapshots(
    app: &App,
    namespace: &str,
    promotions: &[Promotion],
    ctx: &PromotionContext,
) -> Result<()> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.core.client.clone(), namespace);
    // Read from the apiserver, not the cache: the snapshots kept a moment
    // ago must be counted, or the history stays one too long.
    let selector = format!(
        "{APP_LABEL}={},{MANAGED_BY_LABEL}={}",
        app.name_any(),
        crate::MANAGED_BY
    );
    let mut kept: Vec<ControllerRevision> = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::Apply {
            kind: "ControllerRevision".into(),
            name: format!("the snapshots of {}", app.name_any()),
            source,
        })?
        .items
        .into_iter()
        // Owned by this App (a namesake App deleted and created again owns
        // none of its predecessor's).
        .filter(|s| {
            s.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == app.uid().as_ref())
        })
        .collect();
    kept.sort_by_key(|s| s.revision);
    let revisions: Vec<(String, String)> = kept
        .iter()
        .filter_map(|s| {
            let data = s.data.as_ref()?;
            let snapshot: RevisionSnapshot = serde_json::from_value(data.0.clone()).ok()?;
            Some((snapshot.revision.id, s.name_any()))
        })
        .collect();
    let ids: Vec<&str> = revisions.iter().map(|(id, _)| id.as_str()).collect();
    for id in pipeline::snapshots_to_prune(&ids, promotions) {
        let Some((_, name)) = revisions.iter().find(|(r, _)| r == id) else {
            continue;
        };
        match api.delete(name, &Default::default()).await {
            Ok(_) => info!(snapshot = %name, "pruned"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Apply {
                    kind: "ControllerRevision".into(),
                    name: name.clone(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Creates the new Promotions and writes the statuses that changed; one
/// Event per new history entry. `false` when a write was refused because
/// the decision was made from a stale cache: the rest is not written, and
/// the decision is made again from the newer Promotions.
async fn write(
    app: &App,
    namespace: &str,
    before: &[Promotion],
    decision: &pipeline::Decision,
    github: Option<&GitHub>,
    ctx: &PromotionContext,
) -> Result<bool> {
    let client = &ctx.core.client;
    let api: Api<Promotion> = Api::namespaced(client.clone(), namespace);
    let owner = app
        .controller_owner_ref(&())
        .ok_or(Error::MissingMetadata("uid"))?;
    for promotion in &decision.create {
        let mut object = promotion.clone();
        object.metadata.namespace = Some(namespace.to_string());
        object.metadata.owner_references = Some(vec![owner.clone()]);
        object.metadata.labels = Some([(APP_LABEL.to_string(), app.name_any())].into());
        let status = object.status.take().unwrap_or_default();
        let created = match api.create(&PostParams::default(), &object).await {
            Ok(created) => created,
            // Created by a reconcile a moment ago, from a cache that had not
            // seen it yet: the watch brings it, and the next reconcile
            // decides from what is there.
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(source) => {
                return Err(Error::Apply {
                    kind: "Promotion".into(),
                    name: object.name_any(),
                    source,
                });
            }
        };
        if !write_status(client, &created, &status).await? {
            return Ok(false);
        }
        announce(&created, &PromotionStatus::default(), &status, github, ctx).await;
        info!(promotion = %created.name_any(), "created");
    }
    for (name, status) in &decision.statuses {
        let Some(existing) = before
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        else {
            continue;
        };
        if !write_status(client, existing, status).await? {
            return Ok(false);
        }
        announce(
            existing,
            &existing.status.clone().unwrap_or_default(),
            status,
            github,
            ctx,
        )
        .await;
    }
    Ok(true)
}

/// Writes `status` to `promotion` only if the Promotion is still the one the
/// decision was made from: its resourceVersion goes with the patch, so a
/// decision made from a stale cache is refused (409) and made again from
/// the newer Promotion, instead of overwriting a phase. `false` when it was
/// refused so.
async fn write_status(
    client: &kube::Client,
    promotion: &Promotion,
    status: &PromotionStatus,
) -> Result<bool> {
    let api: Api<Promotion> = Api::namespaced(client.clone(), &promotion.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {"resourceVersion": promotion.resource_version()},
        "status": status,
    });
    match api
        .patch_status(&promotion.name_any(), &apply_params(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(Error::Status(e)),
    }
}

/// One Event per history entry `new` has beyond `old` (Warning for a
/// rejection, a rollback or a breach), and the commit status
/// `winky/<stage>` of the revision's commit for each change of phase.
async fn announce(
    promotion: &Promotion,
    old: &PromotionStatus,
    new: &PromotionStatus,
    github: Option<&GitHub>,
    ctx: &PromotionContext,
) {
    let added: Vec<_> = new.history.iter().skip(old.history.len()).collect();
    let events: Vec<Event> = added
        .iter()
        .map(|h| Event {
            type_: if matches!(
                h.event.as_str(),
                "Rejected" | "RolledBack" | "GateFailed" | "SLOBreached"
            ) {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: h.event.clone(),
            note: Some(events::truncate(&format!("{}: {}", h.actor, h.message), 1000)),
            action: "Promote".into(),
            secondary: None,
        })
        .collect();
    events::publish(&ctx.core.recorder, &promotion.object_ref(&()), events).await;
    if let Some(github) = github
        && let Some(entry) = added
            .iter()
            .rev()
            .find(|h| report::commit_state(&h.event).is_some())
    {
        report::commit_status(promotion, entry, github, ctx).await;
    }
}

/// A Warning Event on the App.
async fn warn_app(app: &App, reason: &str, note: &str, ctx: &PromotionContext) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(events::truncate(note, 1000)),
        action: "Promote".into(),
        secondary: None,
    };
    events::publish(&ctx.core.recorder, &app.object_ref(&()), vec![event]).await;
}
