//! A merge reaching the cluster: pushes to a repository of a few Apps served
//! by `git daemon`, applied by the operator running in this process against
//! the real local control plane — through the signed push webhook, and
//! through the polling interval alone.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use winky_crds::{App, GitSource};
use winky_e2e::git::{GitServer, WorkTree};
use winky_e2e::webhook::{deliver, push_payload};
use winky_e2e::{ControlPlane, InProcessOperator};
use winky_operator::gitsource::parse_duration;

use crate::table::{Stats, Table, ms, profile};

/// The Apps of each repository; a push changes one of them.
const APPS: [&str; 4] = ["notes", "shop", "chat", "blog"];
/// How often the bench reads the GitSource while it waits.
const POLL: Duration = Duration::from_millis(10);
/// A push not applied within this long fails the bench.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The first sync also waits for leader election and the first watch.
const FIRST_TIMEOUT: Duration = Duration::from_secs(90);
/// Pause between pushes (not timed), so one push's App reconciles do not overlap the next.
const SETTLE: Duration = Duration::from_millis(300);
/// `spec.interval` of the source that only polls.
pub const INTERVAL: &str = "5s";
const SECRET: &str = "the-webhook-secret-of-winky-bench";
const FIELD_MANAGER: &str = "winky-bench";

/// How many pushes each measurement makes.
#[derive(Clone, Copy, Debug)]
pub struct Pushes {
    /// Through the webhook.
    pub webhook: usize,
    /// Through the polling interval.
    pub polled: usize,
}

/// Starts a control plane under `scratch`, runs both measurements and prints
/// a table as each ends, stops everything.
pub async fn bench(scratch: &Path, pushes: Pushes) -> Result<()> {
    eprintln!("sync: starting the local control plane");
    let root = scratch.to_path_buf();
    // Its Drop stops etcd, kube-apiserver and kube-controller-manager.
    let cp = tokio::task::spawn_blocking(move || ControlPlane::start(&root, "controlplane")).await??;
    let operator_client = cp.client().await?;
    // The bench's reads go through their own connections.
    let client = cp.client().await?;
    let ns = cp.namespace(&client, "bench").await?;
    let addr: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let cache = scratch.join("git-cache");
    let operator = InProcessOperator::start_with(operator_client, ns.name(), "bench-operator", |o| {
        o.webhook_addr = Some(addr);
        o.git_cache_dir = cache;
    });
    let git = GitServer::start(&scratch.join("git"))?;
    let env = Env {
        client,
        ns: ns.name().to_string(),
        operator: &operator,
        git: &git,
        scratch,
    };
    let webhook = through_webhook(&env, addr, pushes.webhook).await?;
    webhook.print();
    let polled = through_interval(&env, pushes.polled).await?;
    polled.print();
    operator.stop().await?;
    Ok(())
}

struct Env<'a> {
    client: Client,
    ns: String,
    operator: &'a InProcessOperator,
    git: &'a GitServer,
    scratch: &'a Path,
}

fn app_yaml(name: &str, image: &str) -> String {
    format!(
        "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  image: {image}\n  port: 8080\n"
    )
}

/// A repository `repo` holding one App per name in `APPS` (prefixed) under
/// `deploy/`, and a clone of it to push from.
fn repository(env: &Env<'_>, repo: &str, prefix: &str) -> Result<WorkTree> {
    let files: Vec<(String, String)> = APPS
        .iter()
        .map(|app| {
            let name = format!("{prefix}{app}");
            (
                format!("deploy/{name}.yaml"),
                app_yaml(&name, &format!("{app}:0")),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    env.git.create(repo, &files)?;
    WorkTree::clone(&env.git.url(repo), &env.scratch.join(format!("work-{repo}")))
}

/// Commits a new image for one App and pushes it; returns (before, after).
fn push(work: &WorkTree, prefix: &str, round: usize) -> Result<(String, String)> {
    let app = APPS[round % APPS.len()];
    let name = format!("{prefix}{app}");
    let before = work.head()?;
    work.write(
        &format!("deploy/{name}.yaml"),
        &app_yaml(&name, &format!("{app}:{round}")),
    )?;
    let after = work.commit_and_push(&format!("chore: {name} {round}"))?;
    Ok((before, after))
}

async fn apply<K>(client: &Client, ns: &str, value: serde_json::Value) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value)?;
    let name = object.meta().name.clone().context("the object has a name")?;
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("applying {} {name}", K::kind(&())))
}

async fn git_source(env: &Env<'_>, name: &str, interval: &str, webhook: bool) -> Result<GitSource> {
    let mut spec = serde_json::json!({
        "url": env.git.url(name), "branch": "main", "path": "deploy", "interval": interval,
    });
    if webhook {
        spec["webhook"] = serde_json::json!({"secretRef": {"name": "github-webhook", "key": "secret"}});
    }
    apply(
        &env.client,
        &env.ns,
        serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "GitSource",
            "metadata": {"name": name}, "spec": spec,
        }),
    )
    .await
}

/// Reads the GitSource every `POLL` until its last applied commit is `commit`.
async fn applied(env: &Env<'_>, name: &str, commit: &str, timeout: Duration) -> Result<()> {
    let api: Api<GitSource> = Api::namespaced(env.client.clone(), &env.ns);
    let deadline = Instant::now() + timeout;
    loop {
        let source = api.get(name).await?;
        let status = source.status.as_ref();
        if status.and_then(|s| s.last_applied_commit.as_deref()) == Some(commit) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "GitSource {}/{name} did not apply {commit} within {timeout:?}; its status: {}",
                env.ns,
                serde_json::to_string(&source.status)?
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The operator's own histograms of the GitSource controller.
#[derive(Clone, Copy, Debug, PartialEq)]
struct OperatorTimes {
    fetch: (f64, f64),
    sync: (f64, f64),
}

impl OperatorTimes {
    fn read(operator: &InProcessOperator) -> Self {
        let pair = |name: &str| {
            (
                operator.metric(&format!("winky_gitsource_{name}_duration_seconds_sum")),
                operator.metric(&format!("winky_gitsource_{name}_duration_seconds_count")),
            )
        };
        Self {
            fetch: pair("fetch"),
            sync: pair("sync"),
        }
    }

    /// The fetch and the apply of the one sync since `before`, if there was exactly one.
    fn one_since(&self, before: &Self) -> Option<(Duration, Duration)> {
        let one = |now: (f64, f64), then: (f64, f64)| {
            (now.1 - then.1 == 1.0).then(|| Duration::from_secs_f64((now.0 - then.0).max(0.0)))
        };
        Some((one(self.fetch, before.fetch)?, one(self.sync, before.sync)?))
    }
}

fn verdict(met: bool, goal: &str) -> String {
    format!("{goal}: {}", if met { "met" } else { "MISSED" })
}

async fn through_webhook(env: &Env<'_>, addr: SocketAddr, pushes: usize) -> Result<Table> {
    let work = repository(env, "apps", "")?;
    let _: Secret = apply(
        &env.client,
        &env.ns,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "github-webhook"},
            "stringData": {"secret": SECRET},
        }),
    )
    .await?;
    // Only the webhook can make a new commit arrive within the measurement.
    git_source(env, "apps", "10m", true).await?;
    eprintln!("sync: waiting for the first sync (leader election included)");
    applied(env, "apps", &work.head()?, FIRST_TIMEOUT).await?;
    let url = format!("http://{addr}/hooks/github/{}/apps", env.ns);

    let (mut total, mut answered, mut fetch, mut apply) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=pushes {
        eprint!("\rsync: webhook push {round}/{pushes}");
        let (before, after) = push(&work, "", round)?;
        let body = push_payload("acme/apps", "main", &before, &after);
        let times = OperatorTimes::read(env.operator);
        let started = Instant::now();
        // Blocking I/O on the bench's own thread; the operator runs on the runtime's workers.
        let answer = deliver(&url, SECRET.as_bytes(), "push", &body)?;
        answered.push(started.elapsed());
        if answer.status != 202 {
            bail!("the webhook answered {answer:?}");
        }
        applied(env, "apps", &after, APPLY_TIMEOUT).await?;
        total.push(started.elapsed());
        if let Some((f, a)) = OperatorTimes::read(env.operator).one_since(&times) {
            fetch.push(f);
            apply.push(a);
        }
        tokio::time::sleep(SETTLE).await;
    }
    eprintln!();
    // What was applied is what was pushed last.
    let apps: Api<App> = Api::namespaced(env.client.clone(), &env.ns);
    for (i, app) in APPS.iter().enumerate() {
        let last = (1..=pushes).rev().find(|r| r % APPS.len() == i).unwrap_or(0);
        let image = apps.get(app).await?.spec.image;
        if image != format!("{app}:{last}") {
            bail!("App {app} has image {image}, not the last one pushed ({app}:{last})");
        }
    }

    let mut table = Table::new(
        format!(
            "winky-bench: push → applied through the webhook, {pushes} pushes, {} build, times in ms",
            profile()
        ),
        &["n", "min", "p50", "p95", "max", "goal"],
    );
    let quantiles = [0.0, 0.5, 0.95, 1.0];
    let p95 = Stats::new(&total).quantile(0.95);
    let mut cells = Stats::new(&total).cells(&quantiles);
    cells.push(verdict(p95.is_some_and(|p| p < 2000.0), "p95 < 2 s"));
    table.row("delivery sent → commit applied", cells);
    let mut cells = Stats::new(&answered).cells(&quantiles);
    cells.push(String::new());
    table.row("  webhook answered 202", cells);
    for (name, samples) in [
        ("  operator: list + fetch + read", &fetch),
        ("  operator: dry-run + apply + prune", &apply),
    ] {
        let mut cells = Stats::new(samples).cells(&quantiles);
        cells.push(String::new());
        table.row(name, cells);
    }
    table.note(format!(
        "A repository of {} Apps on `git daemon`; each push is a commit changing one App's image, then a \
         signed `push` delivery. GitSource interval 10m: only the webhook can trigger the sync.",
        APPS.len()
    ));
    table.note(format!(
        "Timed from sending the delivery until a GET of the GitSource (every {} ms) shows \
         status.lastAppliedCommit = the pushed commit. The operator rows are its own histograms \
         (winky_gitsource_{{fetch,sync}}_duration_seconds), one sync per push.",
        POLL.as_millis()
    ));
    Ok(table)
}

async fn through_interval(env: &Env<'_>, pushes: usize) -> Result<Table> {
    let interval = parse_duration(INTERVAL).context("INTERVAL is a duration")?;
    let work = repository(env, "polled", "polled-")?;
    git_source(env, "polled", INTERVAL, false).await?;
    applied(env, "polled", &work.head()?, FIRST_TIMEOUT).await?;
    let mut took = Vec::new();
    for round in 0..pushes {
        // Pushes land at phases spread evenly over the interval after the previous sync.
        tokio::time::sleep(interval.mul_f64(round as f64 / pushes as f64)).await;
        eprint!("\rsync: polled push {}/{pushes}", round + 1);
        let (_, after) = push(&work, "polled-", round + 1)?;
        let started = Instant::now();
        applied(env, "polled", &after, interval + APPLY_TIMEOUT).await?;
        took.push(started.elapsed());
    }
    eprintln!();

    let mut table = Table::new(
        format!(
            "winky-bench: push → applied by the polling fallback (no webhook), {pushes} pushes, {} build, times in ms",
            profile()
        ),
        &["n", "min", "p50", "max", "goal"],
    );
    let stats = Stats::new(&took);
    let bound = interval + Duration::from_secs(1);
    let mut cells = stats.cells(&[0.0, 0.5, 1.0]);
    cells.push(verdict(
        stats
            .quantile(1.0)
            .is_some_and(|max| max <= bound.as_secs_f64() * 1000.0),
        &format!(
            "max ≤ interval + 1 s ({})",
            ms(Some(bound.as_secs_f64() * 1000.0))
        ),
    ));
    table.row(format!("push → commit applied, interval {INTERVAL}"), cells);
    table.note(format!(
        "The same repository shape, spec.interval {INTERVAL}, no delivery. Push k of {pushes} is made k/{pushes} \
         of the interval after the previous commit was seen applied, so the waits span the interval: \
         expect about interval × (1 − k/{pushes}) plus one sync each."
    ));
    Ok(table)
}
