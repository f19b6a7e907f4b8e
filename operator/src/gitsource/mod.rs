//! The GitSource controller: what people merged into the protected branch of
//! a repository is what runs, and nothing else.
//!
//! ```text
//!  GitSource ──▶ credentials (Secret) ─▶ fetch::fetch_head (git2, only refs/heads/<branch>)
//!                  ─▶ with spec.github, a new commit must come from a pull request a
//!                     person merged (agents::provenance)
//!                  ─▶ fetch::read_manifests ─▶ manifests::parse (pure: kinds, namespaces)
//!                  ─▶ sync::dry_run (all or nothing) ─▶ sync::apply ─▶ sync::prune
//!                  ─▶ status (pure conditions + inventory) ─▶ Events
//!                  ─▶ with spec.github, commit status `winky/sync` on the commit
//! ```
//!
//! A sync runs when the GitSource changes, when the push webhook asks for it
//! and every `spec.interval` (which also puts back what was edited by hand).
//! A refused commit stalls the source and leaves the previous commit
//! applied; a failure that may pass is retried with backoff and prunes
//! nothing.

pub mod fetch;
pub mod manifests;
pub mod plan;
pub mod status;
pub mod sync;
mod timeouts;
mod wiring;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource, ResourceExt};
use octocrab::models::StatusState;
use tracing::{info, instrument, warn};
use winky_crds::gitsource::InventoryEntry;
use winky_crds::{GitSource, PromotionPolicy};

use self::fetch::Credentials;
use self::manifests::SourceRef;
use self::status::{Outcome, short};
pub use self::wiring::controller;
use crate::agents::{self, AgentRules};
use crate::context::{ControllerContext, Core};
use crate::driver;
use crate::error::Result;
use crate::events;
use crate::github::GitHub;
use crate::listed::Listed;
use crate::metrics::ReconcileResult;

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "gitsource";

/// Shared state of the GitSource controller.
pub struct GitSourceContext {
    /// Client, Events, metrics and backoffs.
    pub core: Core,
    /// Where the bare cache repositories live, one per GitSource.
    pub cache_dir: PathBuf,
    /// Every PromotionPolicy: who the agents are.
    pub policies: Store<PromotionPolicy>,
    /// Resolves once the caches above have listed.
    pub listed: Listed,
}

impl std::fmt::Debug for GitSourceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSourceContext")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl ControllerContext for GitSourceContext {
    const NAME: &'static str = CONTROLLER;

    fn core(&self) -> &Core {
        &self.core
    }
}

/// What a sync did, for status, Events and the next wake-up.
struct Synced {
    outcome: Outcome,
    /// The commit fetched in this sync, when the head had moved.
    fetched: Option<String>,
}

/// Reconciles one GitSource: one sync.
#[instrument(skip(source, ctx), fields(gitsource = %source.name_any(), namespace = source.namespace().unwrap_or_default()))]
pub async fn reconcile(source: Arc<GitSource>, ctx: Arc<GitSourceContext>) -> Result<Action> {
    if source.meta().deletion_timestamp.is_some() {
        // What it applied stays: deleting a source must not delete the apps.
        // Not counted: there was nothing to do.
        return Ok(Action::await_change());
    }
    driver::reconcile(source.as_ref(), ctx.as_ref(), sync_and_report(&source, &ctx)).await
}

/// Syncs, writes the status, reports to GitHub and publishes the Events;
/// decides when to look again. A failed sync is not an `Err`: it is in the
/// status, and it backs off here, never beyond the interval.
async fn sync_and_report(source: &GitSource, ctx: &GitSourceContext) -> Result<(ReconcileResult, Action)> {
    ctx.listed.wait().await;
    let namespace = source.namespace().unwrap_or_default();
    let github = match &source.spec.github {
        Some(spec) => Some(GitHub::connect(&ctx.core.client, &namespace, spec).await),
        None => None,
    };
    let synced = match &github {
        Some(Err(e)) => Synced {
            outcome: Outcome::Failed {
                commit: None,
                reason: "GitHubUnavailable",
                message: format!("{e}: no new commit is applied until GitHub can say who merged it"),
            },
            fetched: None,
        },
        Some(Ok(github)) => sync(source, ctx, Some(github)).await,
        None => sync(source, ctx, None).await,
    };
    let old = source.status.clone().unwrap_or_default();
    let new = status::desired_status(
        source,
        &synced.outcome,
        synced.fetched.as_deref(),
        Timestamp::now(),
    );
    driver::apply_changed_status(ctx, source, &old, &new).await?;
    if let Some(Ok(github)) = &github {
        report_sync(github, source, &old, &new, &synced.outcome, ctx).await;
    }
    let pruned = match &synced.outcome {
        Outcome::Applied { pruned, .. } => pruned.as_slice(),
        _ => &[],
    };
    events::publish(
        &ctx.core.recorder,
        &source.object_ref(&()),
        status::events(&old, &new, pruned),
    )
    .await;

    Ok(match &synced.outcome {
        Outcome::Suspended => (ReconcileResult::Suspended, Action::await_change()),
        Outcome::Applied { .. } => (ReconcileResult::Success, Action::requeue(interval(source))),
        // A new commit may come without a webhook: keep looking.
        Outcome::Refused { .. } => (ReconcileResult::Invalid, Action::requeue(interval(source))),
        Outcome::Failed { reason, .. } => {
            ctx.core.metrics.failed(CONTROLLER, category(reason));
            let delay = ctx.core.backoffs.next(&driver::key(source)).min(interval(source));
            (ReconcileResult::Error, Action::requeue(delay))
        }
    })
}

/// A low-cardinality metric label for a failure reason.
fn category(reason: &str) -> &'static str {
    match reason {
        "FetchFailed" | "BranchNotFound" | "CacheFailed" => "fetch",
        "CredentialsFailed" => "credentials",
        _ => "apply",
    }
}

/// `spec.interval`, or one minute when it cannot be read (the schema's
/// pattern makes that impossible for anything the apiserver admitted).
pub fn interval(source: &GitSource) -> Duration {
    parse_duration(&source.spec.interval).unwrap_or(Duration::from_secs(60))
}

/// `1m`, `30s`, `1h30m`, `500ms`, `1.5h` as a Duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
            .into_iter()
            .find(|(u, _)| rest.starts_with(u))
            .map(|(u, f)| (f, u.len()))?;
        total += value * unit;
        rest = &rest[len..];
    }
    // The schema admits any number of digits: a duration too long to hold is none.
    Duration::try_from_secs_f64(total).ok()
}

/// Sets the commit status `winky/sync` when a commit's outcome is new: applied
/// (success) or refused (failure, with the reason). A status GitHub refuses
/// is a Warning Event: it is what reviewers look at.
async fn report_sync(
    github: &GitHub,
    source: &GitSource,
    old: &winky_crds::GitSourceStatus,
    new: &winky_crds::GitSourceStatus,
    outcome: &Outcome,
    ctx: &GitSourceContext,
) {
    let (commit, state, description) = match outcome {
        Outcome::Applied {
            commit,
            inventory,
            pruned,
            ..
        } => (
            commit,
            StatusState::Success,
            format!(
                "applied to the cluster: {} objects, {} pruned",
                inventory.len(),
                pruned.len()
            ),
        ),
        Outcome::Refused {
            commit: Some(commit),
            reason,
            message,
        } => (commit, StatusState::Failure, format!("{reason}: {message}")),
        _ => return,
    };
    let ready = |s: &winky_crds::GitSourceStatus| {
        crate::conditions::find(&s.conditions, crate::conditions::READY)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    if old.last_attempted_commit.as_deref() == Some(commit.as_str()) && ready(old) == ready(new) {
        return;
    }
    if let Err(e) = github.set_status(commit, "winky/sync", state, &description).await {
        warn!(error = %e, "setting winky/sync");
        ctx.core.metrics.failed(CONTROLLER, "github");
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: "GitHubStatusFailed".into(),
            note: Some(events::truncate(
                &format!("winky/sync on {}: {e}", short(commit)),
                1000,
            )),
            action: "Report".into(),
            secondary: None,
        };
        events::publish(&ctx.core.recorder, &source.object_ref(&()), vec![event]).await;
    }
}

async fn sync(source: &GitSource, ctx: &GitSourceContext, github: Option<&GitHub>) -> Synced {
    let failed = |reason: &'static str, message: String, commit: Option<String>| Outcome::Failed {
        commit,
        reason,
        message,
    };
    let refused = |reason: &'static str, message: String, commit: Option<String>| Outcome::Refused {
        commit,
        reason,
        message,
    };
    let mut synced = Synced {
        outcome: Outcome::Suspended,
        fetched: None,
    };
    if source.spec.suspend {
        return synced;
    }
    let (namespace, name) = (source.namespace().unwrap_or_default(), source.name_any());

    let credentials = match credentials(source, &ctx.core.client).await {
        Ok(c) => c,
        Err(CredentialsError::Unsupported(message)) => {
            synced.outcome = refused("CredentialsUnsupported", message, None);
            return synced;
        }
        Err(CredentialsError::Unreadable(message)) => {
            synced.outcome = failed("CredentialsFailed", message, None);
            return synced;
        }
    };

    // git2 blocks: fetch and read on the blocking pool.
    let cache = cache_path(&ctx.cache_dir, source);
    let (url, branch, path) = (
        source.spec.url.clone(),
        source.spec.branch.clone(),
        source.spec.path.clone(),
    );
    let fetch_started = Instant::now();
    let fetch_cache = cache.clone();
    let fetched = tokio::task::spawn_blocking(move || {
        fetch::fetch_head(&fetch_cache, &url, &branch, credentials.as_ref())
    })
    .await;
    ctx.core.metrics.git_fetched(fetch_started.elapsed());
    let head = match fetched {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => {
            synced.outcome = failed(e.reason(), e.to_string(), None);
            return synced;
        }
        Err(panicked) => {
            synced.outcome = failed(
                "FetchFailed",
                format!("the fetch did not finish: {panicked}"),
                None,
            );
            return synced;
        }
    };
    if head.fetched {
        info!(commit = short(&head.commit), "fetched");
        synced.fetched = Some(head.commit.clone());
    }
    let commit = Some(head.commit.clone());

    // Only what a person merged through a pull request reaches the cluster.
    // A commit applied before was checked then.
    let applied_before = source
        .status
        .as_ref()
        .and_then(|s| s.last_applied_commit.as_deref());
    // The pull request that merged the commit, kept for its re-applies.
    let mut pull_request = source
        .status
        .as_ref()
        .filter(|_| applied_before == Some(head.commit.as_str()))
        .and_then(|s| s.last_applied_pull_request);
    if let Some(github) = github
        && applied_before != Some(head.commit.as_str())
    {
        let merged = match github.merged_pull(&head.commit).await {
            Ok(merged) => merged,
            Err(e) => {
                synced.outcome = failed("GitHubUnavailable", e.to_string(), commit);
                return synced;
            }
        };
        let rules = AgentRules::of(ctx.policies.state().iter().map(|p| p.as_ref()));
        if let Err(refusal) = agents::provenance(&head.commit, merged.as_ref(), &rules) {
            synced.outcome = refused(refusal.reason, refusal.message, commit);
            return synced;
        }
        pull_request = merged.map(|m| m.number as i64);
    }

    // Reading the commit from the cache blocks too, briefly.
    let read_commit = head.commit.clone();
    let read = tokio::task::spawn_blocking(move || fetch::read_manifests(&cache, &read_commit, &path)).await;
    let files = match read {
        Ok(Ok(files)) => files,
        Ok(Err(e)) => {
            synced.outcome = refused(e.reason(), e.to_string(), commit);
            return synced;
        }
        Err(panicked) => {
            synced.outcome = failed(
                "FetchFailed",
                format!("reading the commit did not finish: {panicked}"),
                commit,
            );
            return synced;
        }
    };

    let source_ref = SourceRef {
        namespace: &namespace,
        name: &name,
        commit: &head.commit,
        pull_request,
    };
    let manifests = match manifests::parse(&files, &source_ref) {
        Ok(m) => m,
        Err(invalid) => {
            synced.outcome = refused(invalid.reason(), invalid.to_string(), commit);
            return synced;
        }
    };
    let previous: Vec<InventoryEntry> = source
        .status
        .as_ref()
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    if manifests.is_empty() && !previous.is_empty() && !source.spec.allow_empty {
        let message = format!(
            "no manifests under {} — pruning would delete all {} objects this source applied; \
             set spec.allowEmpty to allow that",
            source.spec.path,
            previous.len()
        );
        synced.outcome = refused("EmptySource", message, commit);
        return synced;
    }

    let apply_started = Instant::now();
    let applied = async {
        let client = &ctx.core.client;
        sync::dry_run(client, &manifests, &source_ref).await?;
        sync::apply(client, &manifests, &source_ref).await?;
        let inventory: Vec<InventoryEntry> = {
            let mut entries: Vec<InventoryEntry> = manifests.iter().map(|m| m.entry()).collect();
            entries.sort();
            entries
        };
        let stale: Vec<InventoryEntry> = previous
            .iter()
            .filter(|e| !inventory.contains(e))
            .cloned()
            .collect();
        let pruned = if source.spec.prune {
            sync::prune(client, &stale, &source_ref).await?
        } else {
            Vec::new()
        };
        Ok::<_, sync::SyncError>((inventory, pruned))
    }
    .await;
    ctx.core.metrics.git_synced(apply_started.elapsed());
    synced.outcome = match applied {
        Ok((inventory, pruned)) => {
            if !pruned.is_empty() {
                info!(pruned = pruned.len(), "pruned what left the repository");
            }
            ctx.core.metrics.git_applied(&namespace, &name, Timestamp::now());
            Outcome::Applied {
                commit: head.commit,
                pull_request,
                inventory,
                pruned,
            }
        }
        Err(e) if e.is_transient() => failed(e.reason(), e.to_string(), commit),
        Err(e) => refused(e.reason(), e.to_string(), commit),
    };
    synced
}

/// The bare cache repository of `source` under `cache_dir`: one per
/// GitSource (its uid in the name, so a new GitSource of the same name starts
/// afresh).
pub fn cache_path(cache_dir: &std::path::Path, source: &GitSource) -> PathBuf {
    cache_dir
        .join(source.namespace().unwrap_or_default())
        .join(format!(
            "{}-{}",
            source.name_any(),
            source.uid().unwrap_or_default()
        ))
}

/// Why credentials could not be had.
#[derive(Debug)]
pub enum CredentialsError {
    /// The spec asks for credentials the operator cannot use.
    Unsupported(String),
    /// The Secret could not be read (yet).
    Unreadable(String),
}

impl std::fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialsError::Unsupported(m) | CredentialsError::Unreadable(m) => f.write_str(m),
        }
    }
}

/// The HTTPS credentials `spec.credentials` names, read from its Secret.
pub async fn credentials(
    source: &GitSource,
    client: &Client,
) -> Result<Option<Credentials>, CredentialsError> {
    let Some(spec) = &source.spec.credentials else {
        return Ok(None);
    };
    let Some(secret_ref) = &spec.secret_ref else {
        return Err(CredentialsError::Unsupported(
            "credentials from Vault are not supported yet: use spec.credentials.secretRef".into(),
        ));
    };
    let namespace = source.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| {
            CredentialsError::Unreadable(format!("reading Secret {namespace}/{}: {e}", secret_ref.name))
        })?
        .ok_or_else(|| {
            CredentialsError::Unreadable(format!("Secret {namespace}/{} does not exist", secret_ref.name))
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        data.get(key).map(|v| {
            String::from_utf8_lossy(&v.0)
                .trim_end_matches(['\n', '\r'])
                .to_string()
        })
    };
    match (text("username"), text("password"), data.contains_key("identity")) {
        (username, Some(password), _) => Ok(Some(Credentials {
            username: username.unwrap_or_else(|| "x-access-token".into()),
            password,
        })),
        (_, None, true) => Err(CredentialsError::Unsupported(format!(
            "Secret {namespace}/{} holds an SSH identity; only HTTPS credentials (username and password or token) are supported yet",
            secret_ref.name
        ))),
        (_, None, false) => Err(CredentialsError::Unsupported(format!(
            "Secret {namespace}/{} has no `password` key (username and password, or a token as password)",
            secret_ref.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_like_the_schema_allows() {
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(
            parse_duration("99999999999999999999h"),
            None,
            "too long to hold, no panic"
        );
    }
}
