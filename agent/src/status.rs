//! `winky status <app>`: an App's promotion pipeline, stage by stage, read
//! from the cluster.
//!
//! ```text
//!   App ─spec.policy─▶ PromotionPolicy (stages, gates, approvers)
//!    │                         │
//!    └─ Promotions (spec.app) ─┴─▶ view() ─▶ StatusView ─▶ render_text() / JSON
//! ```
//!
//! [`view`] and [`render_text`] are pure: they see only the objects the
//! cluster returned, so what a person reads is tested without a cluster.
//! [`connect`] and [`load`] do the reading, and turn the ways it fails into
//! errors that say what to do.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use winky_crds::common::RevisionRef;
use winky_crds::policy::Stage;
use winky_crds::promotion::{Approval, ApprovalSource, GateResult, GateState, HistoryEntry, Phase};
use winky_crds::{App, Promotion, PromotionPolicy};
use winky_policies::eligibility::DEFAULT_ELIGIBLE;

/// History entries shown per Promotion; `kubectl get wpromo NAME -o yaml`
/// has them all.
pub const HISTORY_SHOWN: usize = 5;

/// Length of a commit as shown in text, as elsewhere in `winky`.
const SHORT_SHA: usize = 8;

/// The pipeline of one App: what `winky status <app> -o json` prints.
///
/// Field names are camelCase and stable within `v1alpha1`; optional fields
/// are `null` when unknown, lists are empty rather than absent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The App's name.
    pub app: String,
    /// The App's namespace, where its Promotions live.
    pub namespace: String,
    /// The PromotionPolicy the App follows (`spec.policy`), if any.
    pub policy: Option<String>,
    /// The revision the App's spec describes now (`status.revision`).
    pub revision: Option<RevisionView>,
    /// One object per stage, in the policy's order.
    pub stages: Vec<StageView>,
    /// Names of the App's Promotions into stages the policy no longer has.
    pub other_promotions: Vec<String>,
}

/// A revision of the App.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionView {
    /// Revision id (`r-323b2c0ecb`).
    pub id: String,
    /// The full commit it was applied from, when a GitSource applied it.
    pub commit: Option<String>,
    /// The pull request that merged the commit, when known.
    pub pull_request: Option<i64>,
    /// Its container image.
    pub image: Option<String>,
}

impl From<&RevisionRef> for RevisionView {
    fn from(r: &RevisionRef) -> Self {
        Self {
            id: r.id.clone(),
            commit: r.git_commit.clone().filter(|c| !c.is_empty()),
            pull_request: r.pull_request,
            image: Some(r.image.clone()).filter(|i| !i.is_empty()),
        }
    }
}

/// One stage of the policy and where the App stands in it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StageView {
    /// Stage name.
    pub name: String,
    /// Namespace the stage runs in.
    pub namespace: String,
    /// Whether a revision is promoted as soon as its gates hold (otherwise
    /// `/promote <stage>` promotes it).
    pub auto_promote: bool,
    /// The gates the policy configures, such as `emulator`, `soak 10m`,
    /// `approvals 2`, `slo 10m`.
    pub gates: Vec<String>,
    /// `Progressing`, `Available` or `Degraded`, from the App's status.
    pub health: Option<String>,
    /// Ready replicas over desired (`1/2`), from the App's status.
    pub replicas: Option<String>,
    /// The Promotion `Promoted` into the stage: what runs there.
    pub running: Option<PromotionView>,
    /// The newest Promotion not decided yet (`Pending`, `Verifying`,
    /// `AwaitingApproval`, `Promoting`): what waits to enter.
    pub waiting: Option<PromotionView>,
    /// The stage's newest Promotion, when it was `Rejected` or `RolledBack`.
    pub rejected: Option<PromotionView>,
    /// Who may approve, when the stage has an approvals gate.
    pub approvers: Option<ApproversView>,
}

/// One Promotion of a revision into a stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionView {
    /// The Promotion's name.
    pub name: String,
    /// The revision.
    pub revision: RevisionView,
    /// Its phase.
    pub phase: Phase,
    /// Whether `/hold` holds it.
    pub held: bool,
    /// When it reached its phase (RFC 3339), from its history.
    pub since: Option<String>,
    /// The latest result of each gate, as the Promotion records it.
    pub gates: Vec<GateResult>,
    /// Approvals, when the stage has an approvals gate.
    pub approvals: Option<ApprovalsView>,
    /// The last entries of its history, oldest first (at most
    /// [`HISTORY_SHOWN`]).
    pub history: Vec<HistoryEntry>,
    /// How many history entries it has in all.
    pub history_total: usize,
}

/// The approvals gate of one Promotion.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalsView {
    /// Distinct eligible approvers counted.
    pub have: i32,
    /// Approvers needed.
    pub need: i32,
    /// Every approval seen, each with its latest verdict, in the order given.
    pub records: Vec<ApprovalView>,
}

/// One approval and whether it counts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalView {
    /// GitHub login.
    pub login: String,
    /// `comment` or `review`.
    pub source: ApprovalSource,
    /// When it was given (RFC 3339).
    pub at: String,
    /// Link to the comment or review.
    pub url: Option<String>,
    /// Whether it counts.
    pub counted: bool,
    /// The operator's verdict: `counted`, or why not
    /// (`not counted: you opened this pull request`, `withdrawn: …`).
    pub verdict: String,
}

/// Who may approve a stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApproversView {
    /// Distinct eligible approvers needed.
    pub need: i32,
    /// The CEL expression deciding eligibility.
    pub eligible: String,
    /// Whether `eligible` is the default (the stage sets none).
    pub default_expression: bool,
    /// The policy's approvers (`policy.approvers` in the expression).
    pub logins: Vec<String>,
    /// The policy's agents: they never count, nor does any GitHub App
    /// (`*[bot]`), nor the pull request's author.
    pub agents: Vec<String>,
}

/// The pipeline of `app`, which follows `policy` (`None`: it names none),
/// from its `promotions` (others' are ignored).
pub fn view(app: &App, policy: Option<&PromotionPolicy>, promotions: &[Promotion]) -> StatusView {
    let name = app.name_any();
    let namespace = app.namespace().unwrap_or_default();
    let status = app.status.as_ref();
    let mine: Vec<&Promotion> = promotions
        .iter()
        .filter(|p| p.spec.app == name && p.namespace().is_none_or(|n| n == namespace))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let stages: &[Stage] = policy.map(|p| p.spec.stages.as_slice()).unwrap_or_default();
    let other_promotions = mine
        .iter()
        .filter(|p| !stages.iter().any(|s| s.name == p.spec.stage))
        .map(|p| p.name_any())
        .collect();
    let stages = stages
        .iter()
        .map(|stage| {
            let observed = status.and_then(|s| s.stages.iter().find(|o| o.name == stage.name));
            let mut in_stage: Vec<&Promotion> = mine
                .iter()
                .copied()
                .filter(|p| p.spec.stage == stage.name)
                .collect();
            // Newest first, the way the App controller picks what runs.
            in_stage.sort_by_key(|p| std::cmp::Reverse(age_key(p)));
            let phase = |p: &Promotion| p.status.as_ref().map(|s| s.phase).unwrap_or_default();
            let running = in_stage.iter().find(|p| phase(p) == Phase::Promoted);
            let waiting = in_stage.iter().find(|p| !phase(p).is_final());
            let rejected = in_stage
                .iter()
                .find(|p| phase(p) != Phase::Superseded)
                .filter(|p| matches!(phase(p), Phase::Rejected | Phase::RolledBack));
            let promotion = |p: &&Promotion| promotion_view(p, stage);
            StageView {
                name: stage.name.clone(),
                namespace: observed
                    .map(|o| o.namespace.clone())
                    .unwrap_or_else(|| stage_namespace(stage.namespace.as_deref(), &namespace, &name)),
                auto_promote: stage.auto_promote,
                gates: configured_gates(stage),
                health: observed.and_then(|o| o.phase.clone()),
                replicas: observed.and_then(|o| o.replicas.clone()),
                running: running.map(promotion),
                waiting: waiting.map(promotion),
                rejected: rejected.map(promotion),
                approvers: stage.gates.approvals.as_ref().map(|gate| ApproversView {
                    need: gate.count,
                    eligible: gate
                        .eligible
                        .clone()
                        .unwrap_or_else(|| DEFAULT_ELIGIBLE.to_string()),
                    default_expression: gate.eligible.is_none(),
                    logins: policy
                        .map(|p| p.spec.approvers.logins.clone())
                        .unwrap_or_default(),
                    agents: policy.map(|p| p.spec.agents.logins.clone()).unwrap_or_default(),
                }),
            }
        })
        .collect();
    StatusView {
        app: name,
        namespace,
        policy: app.spec.policy.clone(),
        revision: status.and_then(|s| s.revision.as_ref()).map(RevisionView::from),
        stages,
        other_promotions,
    }
}

/// What orders a stage's Promotions by age: when it was created (else its
/// first history entry), then its name, as the App controller breaks ties.
fn age_key(p: &Promotion) -> (Option<Timestamp>, String) {
    let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0).or_else(|| {
        p.status
            .as_ref()
            .and_then(|s| s.history.first())
            .and_then(|h| h.at.parse().ok())
    });
    (created, p.name_any())
}

/// The namespace of a stage from its template, as the operator substitutes it.
fn stage_namespace(template: Option<&str>, app_namespace: &str, app: &str) -> String {
    match template {
        Some(t) => t
            .replace("{app.namespace}", app_namespace)
            .replace("{app.name}", app),
        None => app_namespace.to_string(),
    }
}

fn configured_gates(stage: &Stage) -> Vec<String> {
    let gates = &stage.gates;
    let mut out = Vec::new();
    if gates.emulator {
        out.push("emulator".to_string());
    }
    if let Some(soak) = &gates.soak {
        out.push(format!("soak {soak}"));
    }
    if let Some(approvals) = &gates.approvals {
        out.push(format!("approvals {}", approvals.count));
    }
    if let Some(slo) = &gates.slo {
        out.push(format!("slo {}", slo.window));
    }
    out
}

fn promotion_view(p: &Promotion, stage: &Stage) -> PromotionView {
    let status = p.status.clone().unwrap_or_default();
    let history_total = status.history.len();
    let history = status.history[history_total.saturating_sub(HISTORY_SHOWN)..].to_vec();
    let since = status
        .history
        .iter()
        .rev()
        .find(|h| phase_event(status.phase).contains(&h.event.as_str()))
        .map(|h| h.at.clone());
    let approvals = stage.gates.approvals.as_ref().map(|gate| {
        let recorded = status.gates.iter().find(|g| g.name == "approvals");
        let records = latest_verdicts(&status.approvals);
        let counted_logins = records
            .iter()
            .filter(|r| r.counted)
            .map(|r| r.login.to_lowercase())
            .collect::<std::collections::BTreeSet<_>>();
        ApprovalsView {
            // The gate's count is the operator's; the records are only a
            // stand-in before the gate was first evaluated.
            have: recorded
                .and_then(|g| g.have)
                .unwrap_or(counted_logins.len() as i32),
            need: recorded.and_then(|g| g.need).unwrap_or(gate.count),
            records,
        }
    });
    PromotionView {
        name: p.name_any(),
        revision: RevisionView::from(&p.spec.revision),
        phase: status.phase,
        held: status.held,
        since,
        gates: status.gates,
        approvals,
        history,
        history_total,
    }
}

/// The history events that can put a Promotion in `phase`.
fn phase_event(phase: Phase) -> &'static [&'static str] {
    match phase {
        Phase::Pending => &["Created"],
        Phase::Verifying => &["Verifying"],
        Phase::AwaitingApproval => &["AwaitingApproval", "GatesPassed"],
        Phase::Promoting | Phase::Promoted => &["Promoted", "Restored"],
        Phase::Rejected => &["Rejected"],
        Phase::RolledBack => &["RolledBack"],
        Phase::Superseded => &["Superseded"],
        Phase::Retired => &["Retired"],
    }
}

/// The approval records with each approval's latest verdict. The list is
/// append-only, so an approval later withdrawn appears twice (same login,
/// source, time and link; first `counted`, then `withdrawn: …`): the later
/// record is the verdict that stands.
fn latest_verdicts(records: &[Approval]) -> Vec<ApprovalView> {
    let mut out: Vec<ApprovalView> = Vec::new();
    for r in records {
        let verdict = r.counted.clone().unwrap_or_else(|| "no verdict recorded".into());
        let view = ApprovalView {
            login: r.login.clone(),
            source: r.source,
            at: r.at.clone(),
            url: r.url.clone(),
            counted: r.counted.as_deref() == Some("counted"),
            verdict,
        };
        match out
            .iter_mut()
            .find(|o| o.login == r.login && o.source == r.source && o.at == r.at && o.url == r.url)
        {
            Some(existing) => *existing = view,
            None => out.push(view),
        }
    }
    out
}

/// What `winky status` says of an App that follows no policy.
pub fn no_policy_message(view: &StatusView) -> String {
    format!(
        "App {} in namespace {} follows no PromotionPolicy (spec.policy is empty): it runs its \
         current spec in its own namespace, with no stages and no gates.",
        view.app, view.namespace
    )
}

/// The pipeline as text: a header, then a block per stage in policy order.
/// Plain text, no colour, so it reads the same in a terminal, a pipe or a log.
pub fn render_text(view: &StatusView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "App       {} (namespace {})", view.app, view.namespace);
    match &view.policy {
        Some(policy) => {
            let order: Vec<&str> = view.stages.iter().map(|s| s.name.as_str()).collect();
            let _ = writeln!(out, "Policy    {policy}: {}", order.join(" → "));
        }
        None => {
            let _ = writeln!(out, "{}", no_policy_message(view));
            return out;
        }
    }
    let _ = writeln!(
        out,
        "Revision  {}",
        view.revision
            .as_ref()
            .map(revision_text)
            .unwrap_or_else(|| "not computed yet".into())
    );
    for stage in &view.stages {
        out.push('\n');
        render_stage(&mut out, stage);
    }
    if !view.other_promotions.is_empty() {
        let _ = writeln!(
            out,
            "\nPromotions into stages the policy no longer has: {}",
            view.other_promotions.join(", ")
        );
    }
    out
}

fn render_stage(out: &mut String, stage: &StageView) {
    let mut about = vec![format!("namespace {}", stage.namespace)];
    about.push(if stage.gates.is_empty() {
        "no gates".to_string()
    } else {
        format!("gates: {}", stage.gates.join(", "))
    });
    about.push(if stage.auto_promote {
        "auto-promote".into()
    } else {
        format!("/promote {}", stage.name)
    });
    let _ = writeln!(out, "{}  ({})", stage.name, about.join("; "));

    let mut running = match &stage.running {
        Some(p) => {
            let mut line = revision_text(&p.revision);
            if let Some(since) = &p.since {
                let _ = write!(line, "  since {}", short_time(since));
            }
            line
        }
        None => "nothing".into(),
    };
    if let Some(health) = &stage.health {
        let _ = write!(running, "  {health}");
        if let Some(replicas) = &stage.replicas {
            let _ = write!(running, " {replicas}");
        }
    }
    let _ = writeln!(out, "  running   {running}");
    if let Some(approved) = stage
        .running
        .as_ref()
        .and_then(|p| p.approvals.as_ref())
        .map(counted_logins)
        .filter(|l| !l.is_empty())
    {
        let _ = writeln!(out, "            approved by {}", approved.join(", "));
    }

    match &stage.waiting {
        Some(p) => {
            let _ = writeln!(
                out,
                "  waiting   {}  {:?}{}",
                revision_text(&p.revision),
                p.phase,
                if p.held {
                    "  HELD (/unhold releases it)"
                } else {
                    "  not held"
                }
            );
            render_promotion(out, p, stage);
        }
        None => {
            let _ = writeln!(out, "  waiting   nothing");
        }
    }
    if let Some(p) = &stage.rejected {
        let _ = writeln!(
            out,
            "  {:<9} {}",
            format!("{:?}", p.phase),
            revision_text(&p.revision)
        );
        render_promotion(out, p, stage);
    }
}

fn render_promotion(out: &mut String, p: &PromotionView, stage: &StageView) {
    const INDENT: &str = "    ";
    if p.gates.is_empty() {
        let _ = writeln!(out, "{INDENT}gates not evaluated yet");
    } else {
        let mut rows = vec![vec!["GATE".to_string(), "STATE".into(), "EVIDENCE".into()]];
        for g in &p.gates {
            let mut evidence = g.evidence.clone().unwrap_or_default();
            if !g.readings.is_empty() {
                let readings: Vec<String> = g.readings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(evidence, " ({})", readings.join(", "));
            }
            rows.push(vec![g.name.clone(), gate_state(g.state).into(), evidence]);
        }
        table(out, INDENT, &rows);
    }
    if let Some(approvals) = &p.approvals {
        let _ = writeln!(out, "{INDENT}approvals {} of {}", approvals.have, approvals.need);
        if approvals.records.is_empty() {
            let _ = writeln!(out, "{INDENT}  none given yet");
        } else {
            let rows: Vec<Vec<String>> = approvals
                .records
                .iter()
                .map(|r| {
                    let source = match r.source {
                        ApprovalSource::Comment => "comment",
                        ApprovalSource::Review => "review",
                    };
                    vec![
                        r.login.clone(),
                        source.into(),
                        short_time(&r.at),
                        r.verdict.clone(),
                    ]
                })
                .collect();
            table(out, &format!("{INDENT}  "), &rows);
        }
    }
    if !p.phase.is_final()
        && let Some(approvers) = &stage.approvers
    {
        let default = if approvers.default_expression {
            " (the default)"
        } else {
            ""
        };
        let _ = writeln!(out, "{INDENT}may approve  {}{default}", approvers.eligible);
        let logins = if approvers.logins.is_empty() {
            "none listed".to_string()
        } else {
            approvers.logins.join(", ")
        };
        let _ = writeln!(out, "{INDENT}             policy approvers: {logins}");
        let agents = if approvers.agents.is_empty() {
            String::new()
        } else {
            format!(", the agents {}", approvers.agents.join(", "))
        };
        let _ = writeln!(
            out,
            "{INDENT}             never: the pull request's author{agents}, any GitHub App (*[bot])"
        );
    }
    if !p.history.is_empty() {
        let shown = if p.history_total > p.history.len() {
            format!(" (last {} of {})", p.history.len(), p.history_total)
        } else {
            String::new()
        };
        let _ = writeln!(out, "{INDENT}history{shown}");
        let rows: Vec<Vec<String>> = p
            .history
            .iter()
            .map(|h| {
                vec![
                    short_time(&h.at),
                    h.event.clone(),
                    h.actor.clone(),
                    h.message.clone(),
                ]
            })
            .collect();
        table(out, &format!("{INDENT}  "), &rows);
    }
}

fn counted_logins(approvals: &ApprovalsView) -> Vec<String> {
    let mut logins: Vec<String> = Vec::new();
    for r in approvals.records.iter().filter(|r| r.counted) {
        if !logins.iter().any(|l| l.eq_ignore_ascii_case(&r.login)) {
            logins.push(r.login.clone());
        }
    }
    logins
}

fn gate_state(state: GateState) -> &'static str {
    match state {
        GateState::Pending => "Pending",
        GateState::Waiting => "Waiting",
        GateState::Passed => "Passed",
        GateState::Failed => "Failed",
    }
}

/// `r-323b2c0ecb  commit 1a2b3c4d  PR #12`, leaving out what is unknown.
fn revision_text(r: &RevisionView) -> String {
    let mut text = r.id.clone();
    if let Some(commit) = &r.commit {
        let short: String = commit.chars().take(SHORT_SHA).collect();
        let _ = write!(text, "  commit {short}");
    }
    if let Some(pr) = r.pull_request {
        let _ = write!(text, "  PR #{pr}");
    }
    text
}

/// An RFC 3339 time to the second, in UTC: `2025-05-01 12:03:04Z`.
fn short_time(at: &str) -> String {
    match at.parse::<Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        Err(_) => at.to_string(),
    }
}

/// Rows as columns padded to their widest cell; the last column is not padded.
fn table(out: &mut String, indent: &str, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

// ---------------------------------------------------------------------------
// Reading from the cluster.

/// Why `winky status` could not read the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No usable kubeconfig.
    #[error("cannot load the kubeconfig: {0} (set KUBECONFIG, or pass --kubeconfig)")]
    Kubeconfig(String),
    /// The apiserver did not answer.
    #[error(
        "cannot reach the Kubernetes API server at {server}: {reason}\n  is the cluster up, and is \
         this the right kubeconfig (--kubeconfig, KUBECONFIG) and context (--context)?"
    )]
    Unreachable {
        /// The apiserver's URL.
        server: String,
        /// What went wrong, with its causes.
        reason: String,
    },
    /// The App does not exist.
    #[error("{}", app_not_found(.app, .namespace, .server, .others))]
    AppNotFound {
        /// The App asked for.
        app: String,
        /// The namespace looked in.
        namespace: String,
        /// The apiserver's URL.
        server: String,
        /// The Apps that namespace has.
        others: Vec<String>,
    },
    /// The `winky.dev` CRDs are not installed.
    #[error(
        "the winky.dev API is not installed on {server}: apply the CRDs first \
         (kubectl apply --server-side -f crds/manifests/)"
    )]
    ApiMissing {
        /// The apiserver's URL.
        server: String,
    },
    /// The App names a policy that does not exist.
    #[error(
        "App {app} in namespace {namespace} follows PromotionPolicy {policy:?}, which does not exist \
         on {server}; `kubectl get wpp` lists the policies"
    )]
    PolicyMissing {
        /// The App.
        app: String,
        /// Its namespace.
        namespace: String,
        /// The policy it names.
        policy: String,
        /// The apiserver's URL.
        server: String,
    },
    /// The apiserver refused a request (authentication, RBAC, …).
    #[error("{server} refused to {action}: {message} ({code})")]
    Refused {
        /// The apiserver's URL.
        server: String,
        /// What was asked.
        action: String,
        /// The apiserver's message.
        message: String,
        /// The HTTP status.
        code: u16,
    },
}

fn app_not_found(app: &str, namespace: &str, server: &str, others: &[String]) -> String {
    let mut message = format!("App {app:?} not found in namespace {namespace:?} on {server}");
    if others.is_empty() {
        message.push_str("; that namespace has no App");
    } else {
        let _ = write!(message, "; Apps in {namespace}: {}", others.join(", "));
    }
    message.push_str(
        "\n  `kubectl get apps -A` lists every App; pass -n/--namespace to look in another namespace",
    );
    message
}

/// A client and where it points.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// The apiserver's URL, for messages.
    pub server: String,
    /// The kubeconfig context's namespace (`default` when it sets none).
    pub default_namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("default_namespace", &self.default_namespace)
            .finish_non_exhaustive()
    }
}

/// Connects as kubectl would: `kubeconfig` when given, else `$KUBECONFIG`
/// or `~/.kube/config`, else the in-cluster service account; `context` picks
/// the kubeconfig's context.
pub async fn connect(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Cluster, StatusError> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| StatusError::Kubeconfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| StatusError::Kubeconfig(format!("{}: {e}", path.display())))?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| StatusError::Kubeconfig(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| StatusError::Kubeconfig(e.to_string()))?,
    };
    // A person is waiting: an apiserver that does not answer is an error
    // soon, not a hang.
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.reset_reader_on_write = true;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let default_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| StatusError::Unreachable {
        server: server.clone(),
        reason: chain(&e),
    })?;
    Ok(Cluster {
        client,
        server,
        default_namespace,
    })
}

/// The objects [`view`] needs.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The App.
    pub app: App,
    /// Its policy, when it names one.
    pub policy: Option<PromotionPolicy>,
    /// Its Promotions.
    pub promotions: Vec<Promotion>,
}

/// Reads the App `name` in `namespace`, its policy and its Promotions.
pub async fn load(cluster: &Cluster, namespace: &str, name: &str) -> Result<Loaded, StatusError> {
    let server = cluster.server.as_str();
    let apps: Api<App> = Api::namespaced(cluster.client.clone(), namespace);
    let app = match apps.get_opt(name).await {
        Ok(Some(app)) => app,
        Ok(None) => {
            // A 404 is also what a missing CRD answers: listing tells them apart.
            let others = apps
                .list(&ListParams::default().limit(50))
                .await
                .map_err(|e| api_error(e, server, &format!("list Apps in {namespace}")))?;
            return Err(StatusError::AppNotFound {
                app: name.into(),
                namespace: namespace.into(),
                server: server.into(),
                others: others.items.iter().map(|a| a.name_any()).collect(),
            });
        }
        Err(e) => return Err(api_error(e, server, &format!("get App {namespace}/{name}"))),
    };
    let policy = match &app.spec.policy {
        None => None,
        Some(policy) => {
            let policies: Api<PromotionPolicy> = Api::all(cluster.client.clone());
            match policies.get_opt(policy).await {
                Ok(Some(found)) => Some(found),
                Ok(None) => {
                    return Err(StatusError::PolicyMissing {
                        app: name.into(),
                        namespace: namespace.into(),
                        policy: policy.clone(),
                        server: server.into(),
                    });
                }
                Err(e) => return Err(api_error(e, server, &format!("get PromotionPolicy {policy}"))),
            }
        }
    };
    // By spec.app, not by the `winky.dev/app` label: the label is the
    // operator's habit, spec.app is the API (a hand-made Promotion has only it).
    let promotions = Api::<Promotion>::namespaced(cluster.client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(e, server, &format!("list Promotions in {namespace}")))?
        .items
        .into_iter()
        .filter(|p| p.spec.app == name)
        .collect();
    Ok(Loaded {
        app,
        policy,
        promotions,
    })
}

fn api_error(e: kube::Error, server: &str, action: &str) -> StatusError {
    match e {
        kube::Error::Api(status) if status.code == 404 => StatusError::ApiMissing {
            server: server.into(),
        },
        kube::Error::Api(status) => StatusError::Refused {
            server: server.into(),
            action: action.into(),
            message: status.message.clone(),
            code: status.code,
        },
        other => StatusError::Unreachable {
            server: server.into(),
            reason: chain(&other),
        },
    }
}

/// An error and its causes, `: `-separated, each said once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        // kube's variant names (`ServiceError: …`) say nothing to a person.
        let text = ["ServiceError: ", "HyperError: "]
            .iter()
            .find_map(|prefix| text.strip_prefix(prefix))
            .map(str::to_string)
            .unwrap_or(text);
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn app(policy: Option<&str>) -> App {
        serde_json::from_value(json!({
            "apiVersion": "winky.dev/v1alpha1",
            "kind": "App",
            "metadata": {"name": "notes", "namespace": "notes"},
            "spec": {"image": "registry.local/notes:2", "port": 8080, "policy": policy},
            "status": {
                "revision": {"id": "r-2", "gitCommit": "0123abcd4567ef890123abcd4567ef8901234567", "pullRequest": 12, "image": "registry.local/notes:2"},
                "stages": [
                    {"name": "preview", "namespace": "notes-preview", "revision": "r-2", "phase": "Available", "replicas": "1/1"},
                ],
            },
        }))
        .unwrap()
    }

    fn policy() -> PromotionPolicy {
        serde_json::from_value(json!({
            "apiVersion": "winky.dev/v1alpha1",
            "kind": "PromotionPolicy",
            "metadata": {"name": "default"},
            "spec": {
                "agents": {"logins": ["winky-agent[bot]"]},
                "approvers": {"logins": ["alice", "bob", "carol"]},
                "stages": [
                    {"name": "preview", "namespace": "{app.namespace}-preview", "autoPromote": true, "gates": {"emulator": true}},
                    {"name": "staging", "namespace": "{app.name}-staging", "gates": {"emulator": true, "approvals": {"count": 2, "eligible": "approver.login != 'mallory'"}}},
                    {"name": "production", "gates": {"soak": "10m", "approvals": {"count": 1}, "slo": {"window": "5m", "availability": "99.5"}}},
                ],
            },
        }))
        .unwrap()
    }

    fn promotion(app: &str, stage: &str, revision: &str, created: &str, status: Value) -> Promotion {
        serde_json::from_value(json!({
            "apiVersion": "winky.dev/v1alpha1",
            "kind": "Promotion",
            "metadata": {"name": format!("{app}-{stage}-{revision}"), "namespace": "notes", "creationTimestamp": created},
            "spec": {"app": app, "stage": stage, "revision": {"id": revision, "gitCommit": format!("{revision}-commit-0000000000"), "pullRequest": 10}},
            "status": status,
        }))
        .unwrap()
    }

    fn entry(at: &str, event: &str, message: &str) -> Value {
        json!({"at": at, "event": event, "actor": "operator", "message": message})
    }

    fn approval(login: &str, at: &str, id: u32, counted: &str) -> Value {
        json!({"login": login, "source": "comment", "at": at, "url": format!("https://github.com/acme/notes/pull/12#issuecomment-{id}"), "counted": counted})
    }

    /// The staging Promotion of r-2, waiting for its second approval and held.
    fn waiting_in_staging() -> Promotion {
        let mut p = promotion(
            "notes",
            "staging",
            "r-2",
            "2025-05-01T10:04:00Z",
            json!({
                "phase": "AwaitingApproval",
                "held": true,
                "gates": [
                    {"name": "approvals", "state": "Waiting", "have": 1, "need": 2, "evidence": "1 of 2 eligible approvals"},
                    {"name": "emulator", "state": "Passed", "evidence": "12/12 checks passed"},
                ],
                "approvals": [
                    approval("alice", "2025-05-01T10:05:00Z", 1, "counted"),
                    approval("bob", "2025-05-01T10:06:00Z", 2, "not counted: you opened this pull request"),
                    approval("carol", "2025-05-01T10:07:00Z", 3, "counted"),
                    approval("winky-agent[bot]", "2025-05-01T10:08:00Z", 4, "not counted: agents never approve"),
                    approval("carol", "2025-05-01T10:07:00Z", 3, "withdrawn: the comment was deleted"),
                ],
                "history": [
                    entry("2025-05-01T10:04:00Z", "Created", "revision r-2 enters staging"),
                    entry("2025-05-01T10:04:01Z", "GatePassed", "emulator: 12/12 checks passed"),
                    entry("2025-05-01T10:04:01Z", "GateWaiting", "approvals: 0 of 2 eligible approvals"),
                    entry("2025-05-01T10:04:01Z", "AwaitingApproval", "waiting for approvals"),
                    entry("2025-05-01T10:05:01Z", "GateWaiting", "approvals: 1 of 2 eligible approvals"),
                    {"at": "2025-05-01T10:06:30Z", "event": "Held", "actor": "dave", "message": "nothing automatic happens until /unhold"},
                    entry("2025-05-01T10:07:30Z", "GateWaiting", "approvals: 1 of 2 eligible approvals (carol withdrew)"),
                ],
            }),
        );
        // A Promotion made by hand carries no label; spec.app is what counts.
        p.metadata.labels = None;
        p
    }

    fn promotions() -> Vec<Promotion> {
        let promoted = |at: &str, stage: &str, r: &str| {
            json!({"phase": "Promoted", "history": [
                entry(at, "Created", &format!("revision {r} enters {stage}")),
                entry(at, "Promoted", &format!("every gate holds: {r} runs in {stage}")),
            ]})
        };
        vec![
            promotion(
                "notes",
                "preview",
                "r-1",
                "2025-05-01T09:00:00Z",
                json!({"phase": "Retired", "history": [entry("2025-05-01T10:01:00Z", "Retired", "r-2 was promoted into preview")]}),
            ),
            promotion(
                "notes",
                "preview",
                "r-2",
                "2025-05-01T10:00:00Z",
                promoted("2025-05-01T10:01:00Z", "preview", "r-2"),
            ),
            promotion(
                "notes",
                "staging",
                "r-0",
                "2025-05-01T08:00:00Z",
                json!({"phase": "Superseded"}),
            ),
            promotion("notes", "staging", "r-1", "2025-05-01T09:30:00Z", {
                let mut s = promoted("2025-05-01T09:40:00Z", "staging", "r-1");
                s["approvals"] = json!([
                    approval("alice", "2025-05-01T09:35:00Z", 9, "counted"),
                    approval("carol", "2025-05-01T09:36:00Z", 10, "counted")
                ]);
                s["gates"] = json!([{"name": "approvals", "state": "Passed", "have": 2, "need": 2}]);
                s
            }),
            waiting_in_staging(),
            promotion(
                "notes",
                "production",
                "r-1",
                "2025-05-01T09:50:00Z",
                json!({
                    "phase": "Rejected",
                    "gates": [{"name": "slo", "state": "Failed", "evidence": "availability 97.10 < 99.5", "readings": {"availability": "97.10"}}],
                    "history": [entry("2025-05-01T09:59:00Z", "Rejected", "gate slo failed: availability 97.10 < 99.5")],
                }),
            ),
            // Superseded after the rejection: it never ran and never waits.
            promotion(
                "notes",
                "production",
                "r-9",
                "2025-05-01T09:55:00Z",
                json!({"phase": "Superseded"}),
            ),
            // Another App's, in the same namespace and stage.
            promotion(
                "chat",
                "staging",
                "r-7",
                "2025-05-01T11:00:00Z",
                json!({"phase": "Verifying"}),
            ),
            // A stage the policy no longer has.
            promotion(
                "notes",
                "qa",
                "r-1",
                "2025-05-01T09:45:00Z",
                json!({"phase": "Promoted"}),
            ),
        ]
    }

    fn full_view() -> StatusView {
        view(&app(Some("default")), Some(&policy()), &promotions())
    }

    #[test]
    fn stages_come_in_the_policys_order_with_their_namespaces_and_gates() {
        let v = full_view();
        let names: Vec<&str> = v.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["preview", "staging", "production"]);
        let namespaces: Vec<&str> = v.stages.iter().map(|s| s.namespace.as_str()).collect();
        // preview from the App's status, the others from the templates.
        assert_eq!(namespaces, ["notes-preview", "notes-staging", "notes"]);
        assert_eq!(v.stages[0].gates, ["emulator"]);
        assert_eq!(v.stages[2].gates, ["soak 10m", "approvals 1", "slo 5m"]);
        assert!(v.stages[0].auto_promote && !v.stages[1].auto_promote);
        assert_eq!(v.stages[0].health.as_deref(), Some("Available"));
        assert_eq!(v.stages[1].health, None);
        assert_eq!(v.other_promotions, ["notes-qa-r-1"]);
        let current = v.revision.unwrap();
        assert_eq!((current.id.as_str(), current.pull_request), ("r-2", Some(12)));
    }

    #[test]
    fn what_runs_is_the_promoted_one_and_superseded_or_retired_are_never_current() {
        let v = full_view();
        let running: Vec<Option<&str>> = v
            .stages
            .iter()
            .map(|s| s.running.as_ref().map(|p| p.revision.id.as_str()))
            .collect();
        assert_eq!(running, [Some("r-2"), Some("r-1"), None]);
        assert_eq!(
            v.stages[0].running.as_ref().unwrap().since.as_deref(),
            Some("2025-05-01T10:01:00Z")
        );
        let waiting: Vec<Option<&str>> = v
            .stages
            .iter()
            .map(|s| s.waiting.as_ref().map(|p| p.name.as_str()))
            .collect();
        // staging's r-0 (Superseded) and chat's Verifying one are not waiting.
        assert_eq!(waiting, [None, Some("notes-staging-r-2"), None]);
        for stage in &v.stages {
            for p in [&stage.running, &stage.waiting, &stage.rejected]
                .into_iter()
                .flatten()
            {
                assert_ne!(p.phase, Phase::Superseded, "{}", p.name);
                assert_ne!(p.phase, Phase::Retired, "{}", p.name);
            }
        }
        // production's newest decision, past the later Superseded one, was a rejection.
        let rejected = v.stages[2].rejected.as_ref().unwrap();
        assert_eq!(
            (rejected.name.as_str(), rejected.phase),
            ("notes-production-r-1", Phase::Rejected)
        );
        assert_eq!(
            rejected.gates[0].evidence.as_deref(),
            Some("availability 97.10 < 99.5")
        );
        assert!(v.stages[1].rejected.is_none(), "staging's newest Promotion waits");
    }

    #[test]
    fn the_newest_of_two_promoted_runs_as_the_app_controller_decides() {
        let promoted = json!({"phase": "Promoted"});
        let both = [
            promotion(
                "notes",
                "preview",
                "r-5",
                "2025-05-01T12:00:00Z",
                promoted.clone(),
            ),
            promotion("notes", "preview", "r-4", "2025-05-01T11:00:00Z", promoted),
        ];
        let v = view(&app(Some("default")), Some(&policy()), &both);
        assert_eq!(v.stages[0].running.as_ref().unwrap().revision.id, "r-5");
    }

    #[test]
    fn the_waiting_promotion_shows_gates_approvals_with_latest_verdicts_and_hold() {
        let v = full_view();
        let staging = &v.stages[1];
        let waiting = staging.waiting.as_ref().unwrap();
        assert_eq!(waiting.phase, Phase::AwaitingApproval);
        assert!(waiting.held);
        assert_eq!(waiting.since.as_deref(), Some("2025-05-01T10:04:01Z"));
        let gates: Vec<(&str, GateState, Option<&str>)> = waiting
            .gates
            .iter()
            .map(|g| (g.name.as_str(), g.state, g.evidence.as_deref()))
            .collect();
        assert_eq!(
            gates,
            [
                ("approvals", GateState::Waiting, Some("1 of 2 eligible approvals")),
                ("emulator", GateState::Passed, Some("12/12 checks passed")),
            ]
        );
        let approvals = waiting.approvals.as_ref().unwrap();
        assert_eq!((approvals.have, approvals.need), (1, 2));
        let verdicts: Vec<(&str, bool, &str)> = approvals
            .records
            .iter()
            .map(|r| (r.login.as_str(), r.counted, r.verdict.as_str()))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("alice", true, "counted"),
                ("bob", false, "not counted: you opened this pull request"),
                // Withdrawn after it counted: the later record stands, in place.
                ("carol", false, "withdrawn: the comment was deleted"),
                ("winky-agent[bot]", false, "not counted: agents never approve"),
            ]
        );
        let approvers = staging.approvers.as_ref().unwrap();
        assert_eq!(approvers.eligible, "approver.login != 'mallory'");
        assert!(!approvers.default_expression);
        assert_eq!(approvers.need, 2);
        assert_eq!(approvers.logins, ["alice", "bob", "carol"]);
        assert_eq!(approvers.agents, ["winky-agent[bot]"]);
        let production = v.stages[2].approvers.as_ref().unwrap();
        assert_eq!(production.eligible, DEFAULT_ELIGIBLE);
        assert!(production.default_expression);
        assert!(v.stages[0].approvers.is_none(), "preview has no approvals gate");
    }

    #[test]
    fn only_the_last_history_entries_are_kept_oldest_first() {
        let v = full_view();
        let waiting = v.stages[1].waiting.as_ref().unwrap();
        assert_eq!(waiting.history_total, 7);
        let events: Vec<&str> = waiting.history.iter().map(|h| h.event.as_str()).collect();
        assert_eq!(
            events,
            [
                "GateWaiting",
                "AwaitingApproval",
                "GateWaiting",
                "Held",
                "GateWaiting"
            ]
        );
        assert_eq!(waiting.history[3].actor, "dave");
    }

    #[test]
    fn before_its_gate_is_evaluated_approvals_need_what_the_policy_says() {
        let fresh = [promotion(
            "notes",
            "production",
            "r-2",
            "2025-05-01T12:00:00Z",
            json!({"phase": "Pending", "approvals": [approval("alice", "2025-05-01T12:01:00Z", 5, "counted")]}),
        )];
        let v = view(&app(Some("default")), Some(&policy()), &fresh);
        let waiting = v.stages[2].waiting.as_ref().unwrap();
        let approvals = waiting.approvals.as_ref().unwrap();
        assert_eq!((approvals.have, approvals.need), (1, 1));
        assert!(waiting.gates.is_empty());
        assert!(render_text(&v).contains("gates not evaluated yet"));
    }

    #[test]
    fn text_shows_each_stage_in_order_with_what_runs_and_what_waits() {
        let text = render_text(&full_view());
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
        };
        assert!(text.starts_with("App       notes (namespace notes)\n"), "{text}");
        at("Policy    default: preview → staging → production");
        at("Revision  r-2  commit 0123abcd  PR #12");
        let (preview, staging, production) = (
            at("preview  (namespace notes-preview; gates: emulator; auto-promote)"),
            at("staging  (namespace notes-staging; gates: emulator, approvals 2; /promote staging)"),
            at("production  (namespace notes; gates: soak 10m, approvals 1, slo 5m; /promote production)"),
        );
        assert!(preview < staging && staging < production, "{text}");
        at("  running   r-2  commit r-2-comm  PR #10  since 2025-05-01 10:01:00Z  Available 1/1");
        at("            approved by alice, carol");
        at("  waiting   r-2  commit r-2-comm  PR #10  AwaitingApproval  HELD (/unhold releases it)");
        at(
            "    approvals  Waiting  1 of 2 eligible approvals\n    emulator   Passed   12/12 checks passed\n",
        );
        at("    approvals 1 of 2\n");
        at(
            "      bob               comment  2025-05-01 10:06:00Z  not counted: you opened this pull request\n",
        );
        at("      carol             comment  2025-05-01 10:07:00Z  withdrawn: the comment was deleted\n");
        at("    may approve  approver.login != 'mallory'\n");
        at("             policy approvers: alice, bob, carol\n");
        at("never: the pull request's author, the agents winky-agent[bot], any GitHub App (*[bot])");
        at("    history (last 5 of 7)\n");
        at(
            "      2025-05-01 10:06:30Z  Held              dave      nothing automatic happens until /unhold\n",
        );
        at("  Rejected  r-1  commit r-1-comm  PR #10");
        at("    slo   Failed  availability 97.10 < 99.5 (availability=97.10)");
        at("Promotions into stages the policy no longer has: notes-qa-r-1");
        // Production waits for nothing; staging's Superseded r-0 is nowhere.
        assert_eq!(text.matches("  waiting   nothing").count(), 2, "{text}");
        assert!(!text.contains("r-0"), "{text}");
        assert!(!text.contains("r-7"), "another App's Promotion: {text}");
        assert!(!text.contains('\x1b'), "no colour codes");
        assert!(text.lines().all(|l| l == l.trim_end()), "no trailing blanks");
    }

    #[test]
    fn json_is_one_object_per_stage_with_stable_field_names() {
        let json = serde_json::to_value(full_view()).unwrap();
        assert_eq!(json["app"], "notes");
        assert_eq!(json["policy"], "default");
        assert_eq!(json["revision"]["pullRequest"], 12);
        let stages = json["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 3);
        assert_eq!(stages[0]["autoPromote"], true);
        assert_eq!(stages[0]["running"]["revision"]["id"], "r-2");
        assert_eq!(stages[0]["waiting"], Value::Null);
        let waiting = &stages[1]["waiting"];
        assert_eq!(waiting["phase"], "AwaitingApproval");
        assert_eq!(waiting["held"], true);
        assert_eq!(waiting["historyTotal"], 7);
        assert_eq!(waiting["approvals"]["have"], 1);
        assert_eq!(
            waiting["approvals"]["records"][1]["verdict"],
            "not counted: you opened this pull request"
        );
        assert_eq!(waiting["approvals"]["records"][1]["source"], "comment");
        assert_eq!(stages[1]["approvers"]["defaultExpression"], false);
        assert_eq!(stages[2]["rejected"]["gates"][0]["state"], "Failed");
        assert_eq!(json["otherPromotions"][0], "notes-qa-r-1");
        // The view reads back as what it was: the struct is the contract.
        let back: StatusView = serde_json::from_value(json).unwrap();
        assert_eq!(back, full_view());
    }

    #[test]
    fn an_app_without_policy_has_no_stages_and_says_so() {
        let v = view(&app(None), None, &promotions());
        assert!(v.stages.is_empty());
        assert_eq!(v.policy, None);
        let text = render_text(&v);
        assert!(text.contains("follows no PromotionPolicy"), "{text}");
        assert!(!text.contains("preview"), "{text}");
    }

    #[test]
    fn an_app_not_found_names_the_namespace_and_how_to_look_elsewhere() {
        let e = StatusError::AppNotFound {
            app: "notes".into(),
            namespace: "shop".into(),
            server: "https://127.0.0.1:6443/".into(),
            others: vec!["cart".into()],
        };
        let message = e.to_string();
        assert!(
            message.starts_with("App \"notes\" not found in namespace \"shop\" on https://127.0.0.1:6443/"),
            "{message}"
        );
        assert!(message.contains("Apps in shop: cart"), "{message}");
        assert!(message.contains("kubectl get apps -A"), "{message}");
    }
}
