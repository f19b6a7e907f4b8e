//! Promotion decisions: how long after the evidence is there the operator
//! writes the decision. Against a fresh local control plane, the operator
//! in-process (with its webhook receiver), the real Prometheus scraping
//! [`MetricsWorkload`]s and the GitHub double:
//!
//! - the SLO gate: from the moment Prometheus answers the gate's own queries
//!   with a pass until the Promotion is `Promoted`;
//! - the approvals gate: from the signed `issue_comment` delivery of an
//!   `/approve` answered 202 until the approval is counted in the Promotion's
//!   status and the Promotion is `Promoted`.
//!
//! Each run uses an App of its own, so no run inherits another's traffic,
//! comments or timers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use winky_crds::keys::{GIT_COMMIT_ANNOTATION, GIT_SOURCE_ANNOTATION, PULL_REQUEST_ANNOTATION};
use winky_crds::policy::SloGate;
use winky_crds::promotion::{GateState, Phase, Promotion};
use winky_crds::{App, GitSource, PromotionPolicy};
use winky_e2e::git::{GitServer, git};
use winky_e2e::github::GitHubDouble;
use winky_e2e::prometheus::{LoadSpec, MetricsWorkload, Prometheus, drive_load};
use winky_e2e::webhook::{deliver, example};
use winky_e2e::{ControlPlane, InProcessOperator};
use winky_operator::naming::stage_namespace;
use winky_operator::promotion::SLO_POLL;
use winky_promotion::slo::{self, Outcome};

use crate::table::{Stats, Table, profile};

/// How often the bench reads the Promotion (and Prometheus) while it waits.
const POLL: Duration = Duration::from_millis(10);
/// How often Prometheus scrapes the workloads.
const SCRAPE: Duration = Duration::from_secs(1);
/// The first App also waits for leader election and the first watches.
const FIRST_TIMEOUT: Duration = Duration::from_secs(90);
/// A new App's production Promotion not waiting within this long fails the bench.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A decision not written within this long (after the operator's poll, for
/// the SLO gate) fails the bench.
const DECISION_TIMEOUT: Duration = Duration::from_secs(30);
/// Healthy traffic not read as a pass by Prometheus within this long fails the bench.
const PASS_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause (not timed) between a production Promotion seen waiting for
/// approval and the `/approve`: GitHub's comment times have whole seconds,
/// and a comment is only read when written after the revision came.
const COMMENT_SETTLE: Duration = Duration::from_millis(1100);
/// The observed stage, the one the SLO gate reads.
const OBSERVED: &str = "preview";
/// Its namespace, as the policy says.
const OBSERVED_NAMESPACE: &str = "{app.namespace}-preview";
const APPROVER: &str = "alice";
const AUTHOR: &str = "dana";
const SECRET: &str = "the-webhook-secret-of-winky-bench";
const TOKEN: &str = "ghs_token_of_winky_bench";
const FIELD_MANAGER: &str = "winky-bench";

/// Starts a control plane under `scratch` and the operator, runs both
/// measurements `runs` times and prints a table as each ends, stops everything.
pub async fn bench(scratch: &Path, runs: usize) -> Result<()> {
    eprintln!("promotion: starting the local control plane");
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
    let env = Env {
        client,
        ns: ns.name().to_string(),
        scratch,
    };
    slo_gate(&env, runs).await?.print();
    approvals_gate(&env, addr, runs).await?.print();
    operator.stop().await?;
    Ok(())
}

struct Env<'a> {
    client: Client,
    ns: String,
    scratch: &'a Path,
}

impl Env<'_> {
    fn promotions(&self) -> Api<Promotion> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Applies `value` (a whole namespaced object) in the bench's namespace.
    async fn apply<K>(&self, value: serde_json::Value) -> Result<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Serialize
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(value)?;
        let name = object.meta().name.clone().context("the object has a name")?;
        Api::<K>::namespaced(self.client.clone(), &self.ns)
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("applying {} {name}", K::kind(&())))
    }

    /// Applies the PromotionPolicy `name` (cluster-scoped) with `spec`.
    async fn policy(&self, name: &str, spec: serde_json::Value) -> Result<PromotionPolicy> {
        Api::<PromotionPolicy>::all(self.client.clone())
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(serde_json::json!({
                    "apiVersion": "winky.dev/v1alpha1", "kind": "PromotionPolicy",
                    "metadata": {"name": name}, "spec": spec,
                })),
            )
            .await
            .with_context(|| format!("applying PromotionPolicy {name}"))
    }

    /// Lists the Promotions every `POLL` until `app`'s Promotion into
    /// `stage` satisfies `ready`.
    async fn promotion_where(
        &self,
        app: &str,
        stage: &str,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Promotion) -> bool,
    ) -> Result<Promotion> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .promotions()
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|p| p.spec.app == app && p.spec.stage == stage);
            if let Some(p) = &found
                && ready(p)
            {
                return Ok(found.expect("just matched"));
            }
            if Instant::now() > deadline {
                bail!(
                    "the {stage} Promotion of App {}/{app} was not {what} within {timeout:?}; it is: {}",
                    self.ns,
                    match &found {
                        Some(p) => serde_json::to_string(&p.status)?,
                        None => "not there".into(),
                    }
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

fn phase(p: &Promotion) -> Phase {
    p.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn gate<'p>(p: &'p Promotion, name: &str) -> Option<&'p winky_crds::promotion::GateResult> {
    p.status.as_ref()?.gates.iter().find(|g| g.name == name)
}

fn name_of(p: &Promotion) -> Result<String> {
    p.metadata.name.clone().context("a Promotion has a name")
}

fn verdict(met: bool, goal: &str) -> String {
    format!("{goal}: {}", if met { "met" } else { "MISSED" })
}

/// From `from` to `to`, zero when `to` comes first.
fn between(from: jiff::Timestamp, to: jiff::Timestamp) -> Duration {
    let ns = (to.as_nanosecond() - from.as_nanosecond()).max(0);
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Healthy traffic on a workload, in bursts of half a second, until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<u64>>,
}

impl Load {
    /// 20 requests a second.
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut ok = 0;
            while !flag.load(Ordering::Relaxed) {
                let spec = LoadSpec {
                    requests: 10,
                    duration: Duration::from_millis(500),
                    concurrency: 2,
                };
                let report = drive_load(&url, spec).await?;
                if report.ok != report.sent {
                    bail!("the workload at {url} did not answer every request with 2xx: {report:?}");
                }
                ok += report.ok;
            }
            Ok(ok)
        });
        Self { stop, task }
    }

    /// Stops the traffic (the burst under way ends first); returns the requests answered.
    async fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the load task panicked")?
    }
}

/// SLO condition true in Prometheus → production `Promoted`.
async fn slo_gate(env: &Env<'_>, runs: usize) -> Result<Table> {
    let apps: Vec<String> = (0..runs).map(|k| format!("slo-{k}")).collect();
    let observed_ns = stage_namespace(Some(OBSERVED_NAMESPACE), &env.ns, "");
    // One workload per App, each as the App would run in the observed stage.
    let mut workloads = Vec::new();
    for app in &apps {
        workloads.push(MetricsWorkload::start(&observed_ns, app, OBSERVED).await?);
    }
    let targets: Vec<_> = workloads.iter().map(|w| w.scrape_target()).collect();
    let prometheus = Prometheus::start(&env.scratch.join("prometheus"), &targets, SCRAPE).await?;
    let policy_name = format!("{}-slo", env.ns);
    let policy = env
        .policy(
            &policy_name,
            serde_json::json!({
                "prometheus": {"url": prometheus.url()},
                "stages": [
                    {"name": OBSERVED, "namespace": OBSERVED_NAMESPACE, "autoPromote": true},
                    {"name": "production", "autoPromote": true, "gates": {"slo": {
                        "observe": OBSERVED, "window": "1m",
                        "availability": "99.5", "p95Latency": "500ms", "errorRate": "0.5"}}},
                ],
            }),
        )
        .await?;
    // The gate as the apiserver stored it: the bench asks Prometheus what the operator asks.
    let gate_spec: SloGate = policy
        .spec
        .stages
        .iter()
        .find_map(|s| s.gates.slo.clone())
        .context("the policy has an SLO gate")?;
    let window = slo::parse_duration(&gate_spec.window).context("the gate's window is a duration")?;

    let (mut total, mut to_read, mut to_seen, mut to_pass) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, app) in apps.iter().enumerate() {
        eprint!("\rpromotion: SLO run {}/{runs}", k + 1);
        env.apply::<App>(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": app},
            "spec": {"image": format!("{app}:1"), "port": 8080, "policy": policy_name},
        }))
        .await?;
        // No traffic yet: production waits on the gate, which reads no data.
        let timeout = if k == 0 { FIRST_TIMEOUT } else { SETUP_TIMEOUT };
        let waiting = env
            .promotion_where(app, "production", "waiting on its SLO gate", timeout, |p| {
                phase(p) == Phase::Verifying
                    && gate(p, slo::GATE_NAME).is_some_and(|g| g.state == GateState::Waiting)
            })
            .await?;
        let name = name_of(&waiting)?;
        // Run k's condition comes true k/N of a poll interval after the gate
        // started waiting, so the runs span the operator's poll.
        tokio::time::sleep(SLO_POLL.mul_f64(k as f64 / runs as f64)).await;

        let load = Load::start(workloads[k].url());
        let traffic = Instant::now();
        let queries = slo::queries(app, &observed_ns, OBSERVED, window);
        let (t0, t0_wall) = loop {
            let readings = prometheus.readings(&queries).await;
            let verdict = slo::evaluate(&gate_spec, &readings);
            match verdict.outcome {
                Outcome::Passed => break (Instant::now(), jiff::Timestamp::now()),
                Outcome::Failed(_) => bail!("healthy traffic failed the SLO gate: {}", verdict.evidence),
                Outcome::Waiting(_) if traffic.elapsed() > PASS_TIMEOUT => bail!(
                    "Prometheus did not read the traffic of {app} as a pass within {PASS_TIMEOUT:?}: {}",
                    verdict.evidence
                ),
                Outcome::Waiting(_) => tokio::time::sleep(POLL).await,
            }
        };
        to_pass.push(t0 - traffic);

        let deadline = t0 + SLO_POLL + DECISION_TIMEOUT;
        let promoted = loop {
            let p = env.promotions().get(&name).await?;
            match phase(&p) {
                Phase::Promoted => break p,
                Phase::Verifying | Phase::Pending | Phase::Promoting => {}
                other => bail!(
                    "the production Promotion {name} went {other:?}, not Promoted: {}",
                    serde_json::to_string(&p.status)?
                ),
            }
            if Instant::now() > deadline {
                bail!(
                    "the production Promotion {name} was not Promoted within {:?} of the SLO holding: {}",
                    SLO_POLL + DECISION_TIMEOUT,
                    serde_json::to_string(&p.status)?
                );
            }
            tokio::time::sleep(POLL).await;
        };
        let seen = Instant::now();
        let seen_wall = jiff::Timestamp::now();
        load.stop().await?;
        total.push(seen - t0);
        let passed = gate(&promoted, slo::GATE_NAME)
            .filter(|g| g.state == GateState::Passed)
            .with_context(|| format!("{name} is Promoted without a passed SLO gate"))?;
        // The reconcile that read the pass stamps the gate with its start.
        let at: jiff::Timestamp = passed
            .at
            .as_deref()
            .context("a passed gate says when")?
            .parse()
            .context("the gate's `at` is an RFC 3339 time")?;
        to_read.push(between(t0_wall, at));
        to_seen.push(between(at, seen_wall));
    }
    eprintln!();

    let mut table = Table::new(
        format!(
            "winky-bench: SLO condition true in Prometheus → promotion applied, {runs} runs, {} build, times in ms",
            profile()
        ),
        &["n", "min", "p50", "p95", "max", "goal"],
    );
    let quantiles = [0.0, 0.5, 0.95, 1.0];
    let stats = Stats::new(&total);
    let mut cells = stats.cells(&quantiles);
    cells.push(verdict(
        stats.quantile(0.95).is_some_and(|p| p < 5000.0),
        "p95 < 5 s",
    ));
    table.row("SLO true in Prometheus → Promoted", cells);
    for (name, samples) in [
        ("  → the operator's next reconcile (gate.at)", &to_read),
        ("  gate.at → Promoted read by the bench", &to_seen),
        ("traffic started → SLO true (scrapes; context)", &to_pass),
    ] {
        let mut cells = Stats::new(samples).cells(&quantiles);
        cells.push(String::new());
        table.row(name, cells);
    }
    table.note(format!(
        "One App per run under a policy preview → production, production's SLO gate observing preview \
         (window {}, availability ≥ {}%, p95 ≤ {}, error rate ≤ {}%); the real Prometheus scrapes one \
         in-process workload per App every {} ms. No traffic until the gate waits (no data), then 20 \
         healthy requests a second.",
        gate_spec.window,
        gate_spec.availability.as_deref().unwrap_or("-"),
        gate_spec.p95_latency.as_deref().unwrap_or("-"),
        gate_spec.error_rate.as_deref().unwrap_or("-"),
        SCRAPE.as_millis()
    ));
    table.note(format!(
        "t0: the bench runs the gate's own queries (winky_promotion::slo::queries) against Prometheus every \
         {} ms and judges them with slo::evaluate; t0 is its first Passed, at most one poll (and its four queries) \
         after the scrape that made it true. Then it GETs the Promotion every {} ms until phase Promoted.",
        POLL.as_millis(),
        POLL.as_millis()
    ));
    table.note(format!(
        "By design the operator reads Prometheus again only every SLO_POLL = {} s while an SLO gate waits \
         (operator/src/promotion/mod.rs): nothing tells it that Prometheus' answer changed, so a promotion \
         waits up to {} s after the condition holds, about half of it on average. Run k of {runs} starts its \
         traffic k/{runs} of SLO_POLL after the gate began waiting, so the waits span the interval. \
         gate.at is the start of the reconcile that read the pass.",
        SLO_POLL.as_secs(),
        SLO_POLL.as_secs(),
    ));
    Ok(table)
}

/// The body of GitHub's `issue_comment` delivery: `login` wrote comment
/// `id` saying `body` on pull request `number`.
fn comment_payload(number: u64, id: u64, login: &str, body: &str) -> Result<Vec<u8>> {
    let mut payload = example("issue_comment-created.json");
    payload["action"] = serde_json::json!("created");
    payload["issue"]["number"] = serde_json::json!(number);
    payload["issue"]["pull_request"] = serde_json::json!({
        "url": format!("https://api.github.com/repos/acme/apps/pulls/{number}"),
        "html_url": format!("https://github.com/acme/apps/pull/{number}"),
        "diff_url": format!("https://github.com/acme/apps/pull/{number}.diff"),
        "patch_url": format!("https://github.com/acme/apps/pull/{number}.patch"),
    });
    payload["sender"]["login"] = serde_json::json!(login);
    payload["comment"]["id"] = serde_json::json!(id);
    payload["comment"]["body"] = serde_json::json!(body);
    Ok(serde_json::to_vec(&payload)?)
}

/// `/approve` delivered → the approvals gate's decision written.
async fn approvals_gate(env: &Env<'_>, addr: SocketAddr, runs: usize) -> Result<Table> {
    // The repository and its pull requests, one per run, opened by someone
    // who is not the approver.
    let git_server = GitServer::start(&env.scratch.join("git"))?;
    let bare = git_server.create("apps", &[("README.md", "apps\n")])?;
    for k in 0..runs {
        git(&bare, &["branch", &format!("feat-{k}"), "HEAD"])?;
    }
    let github = GitHubDouble::start("acme", "apps", TOKEN, &bare).await?;
    for k in 0..runs {
        let number = github.open_pull(&format!("feat-{k}"), "main", AUTHOR, &format!("feat: app {k}"));
        if number != k as u64 + 1 {
            bail!("the GitHub double numbered pull request {k} as #{number}");
        }
    }
    for (name, key, value) in [
        ("github-webhook", "secret", SECRET),
        ("github-token", "token", TOKEN),
    ] {
        env.apply::<Secret>(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {key: value},
        }))
        .await?;
    }
    // Suspended: it only names the repository (approvals are read from it)
    // and takes the webhook's deliveries.
    env.apply::<GitSource>(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "GitSource", "metadata": {"name": "apps"},
        "spec": {
            "url": git_server.url("apps"), "branch": "main", "path": "deploy", "suspend": true,
            "webhook": {"secretRef": {"name": "github-webhook", "key": "secret"}},
            "github": {"owner": "acme", "repo": "apps", "apiUrl": github.url(),
                       "tokenSecretRef": {"name": "github-token", "key": "token"}},
        },
    }))
    .await?;
    let policy_name = format!("{}-approvals", env.ns);
    env.policy(
        &policy_name,
        serde_json::json!({
            "approvers": {"logins": [APPROVER]},
            "stages": [
                {"name": OBSERVED, "namespace": OBSERVED_NAMESPACE, "autoPromote": true},
                {"name": "production", "autoPromote": true, "gates": {"approvals": {"count": 1}}},
            ],
        }),
    )
    .await?;
    let hook = format!("http://{addr}/hooks/github/{}/apps", env.ns);

    let (mut answered, mut counted, mut promoted, mut replied) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in 0..runs {
        eprint!("\rpromotion: /approve run {}/{runs}", k + 1);
        let app = format!("approve-{k}");
        let number = k as u64 + 1;
        env.apply::<App>(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App",
            "metadata": {"name": app, "annotations": {
                GIT_SOURCE_ANNOTATION: format!("{}/apps", env.ns),
                PULL_REQUEST_ANNOTATION: number.to_string(),
                GIT_COMMIT_ANNOTATION: format!("{number:040x}"),
            }},
            "spec": {"image": format!("{app}:1"), "port": 8080, "policy": policy_name},
        }))
        .await?;
        let waiting = env
            .promotion_where(&app, "production", "awaiting approval", SETUP_TIMEOUT, |p| {
                phase(p) == Phase::AwaitingApproval
            })
            .await?;
        let name = name_of(&waiting)?;
        tokio::time::sleep(COMMENT_SETTLE).await;

        let id = github.add_comment(number, APPROVER, "/approve");
        let body = comment_payload(number, id, APPROVER, "/approve")?;
        let url = hook.clone();
        let sent = Instant::now();
        // The delivery's blocking I/O on the blocking pool: the operator keeps the workers.
        let answer =
            tokio::task::spawn_blocking(move || deliver(&url, SECRET.as_bytes(), "issue_comment", &body))
                .await??;
        let t0 = Instant::now();
        if answer.status != 202 {
            bail!("the webhook answered {answer:?}");
        }
        answered.push(t0 - sent);

        let marker = format!("<!-- winky:reply:{id} -->");
        let (mut at_counted, mut at_promoted, mut at_replied) = (None, None, None);
        while at_counted.is_none() || at_promoted.is_none() || at_replied.is_none() {
            let p = env.promotions().get(&name).await?;
            let now = Instant::now();
            let status = p.status.clone().unwrap_or_default();
            let approved = status
                .approvals
                .iter()
                .any(|a| a.login == APPROVER && a.counted.as_deref() == Some("counted"))
                && gate(&p, "approvals").is_some_and(|g| g.state == GateState::Passed);
            if approved {
                at_counted.get_or_insert(now);
            }
            match status.phase {
                Phase::Promoted => {
                    at_promoted.get_or_insert(now);
                }
                Phase::AwaitingApproval | Phase::Promoting => {}
                other => bail!(
                    "the production Promotion {name} went {other:?}, not Promoted: {}",
                    serde_json::to_string(&status)?
                ),
            }
            if at_replied.is_none() && github.comments(number).iter().any(|c| c.body.contains(&marker)) {
                at_replied = Some(Instant::now());
            }
            if t0.elapsed() > DECISION_TIMEOUT {
                bail!(
                    "within {DECISION_TIMEOUT:?} of /approve on #{number}: counted {}, promoted {}, replied {}; \
                     the Promotion {name}: {}",
                    at_counted.is_some(),
                    at_promoted.is_some(),
                    at_replied.is_some(),
                    serde_json::to_string(&status)?
                );
            }
            tokio::time::sleep(POLL).await;
        }
        for (samples, at) in [
            (&mut counted, at_counted),
            (&mut promoted, at_promoted),
            (&mut replied, at_replied),
        ] {
            samples.push(at.expect("the loop waits for all three") - t0);
        }
    }
    eprintln!();

    let mut table = Table::new(
        format!(
            "winky-bench: `/approve` delivered → approvals gate decision written, {runs} runs, {} build, times in ms",
            profile()
        ),
        &["n", "min", "p50", "p95", "max"],
    );
    let quantiles = [0.0, 0.5, 0.95, 1.0];
    for (name, samples) in [
        ("202 answered → approval counted in status", &counted),
        ("202 answered → Promoted", &promoted),
        ("202 answered → reply on the pull request", &replied),
        ("  delivery sent → 202 answered", &answered),
    ] {
        table.row(name, Stats::new(samples).cells(&quantiles));
    }
    table.note(
        "One App per run, annotated with its own pull request (opened by another login) on the GitHub double \
         and a suspended GitSource naming the double, with spec.webhook; policy preview → production, \
         production needing 1 approval by alice. Once production is AwaitingApproval (and 1.1 s later, not \
         timed), alice's `/approve` is written on the double and the signed `issue_comment` delivery sent.",
    );
    table.note(format!(
        "t0: the webhook receiver answered 202. Then the bench GETs the Promotion every {} ms: \"counted\" is \
         status.approvals holding alice's approval counted and the approvals gate Passed; \"reply\" is the \
         operator's answer to the comment appearing on the double. Without the delivery, approvals are read every APPROVALS_POLL = {} s.",
        POLL.as_millis(),
        winky_operator::promotion::APPROVALS_POLL.as_secs()
    ));
    Ok(table)
}
