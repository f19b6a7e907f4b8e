//! `PromotionPolicy`: the stages an App moves through and the gates between them.

#[allow(unused_imports)] // used inside x_kube attributes
use kube::core::{ListMerge, Rule as CelRule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Stages and their gates, who counts as an approver, and which identities are
/// agents (who may only open pull requests on branches matching the pattern,
/// and whose approvals never count).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "winky.dev",
    version = "v1alpha1",
    kind = "PromotionPolicy",
    shortname = "wpp",
    category = "winky",
    doc = "Stages an App is promoted through, the gates of each (emulator, approvals, SLOs, soak) and rollback on breach.",
    printcolumn(name = "Stages", type_ = "string", json_path = ".spec.stages[*].name"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PromotionPolicySpec {
    /// Identities of coding agents and the branches they must use.
    #[serde(default)]
    pub agents: AgentPolicy,
    /// People whose approvals may count. Logins, not teams: a team change
    /// leaves no audit trail.
    #[serde(default)]
    pub approvers: Approvers,
    /// Prometheus the SLO gates query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
    /// Stages in promotion order, unique by name.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = CelRule::new("self.all(s, !has(s.gates.slo) || !has(s.gates.slo.observe) || self.exists(o, o.name == s.gates.slo.observe))").message("gates.slo.observe must name a stage of this policy"))]
    #[schemars(length(min = 1, max = 8))]
    pub stages: Vec<Stage>,
}

/// Agent identities.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPolicy {
    /// GitHub logins of agents (`winky-agent[bot]`).
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(min = 1, max = 64)))]
    pub logins: Vec<String>,
    /// Regular expression every agent branch must match. It must be anchored
    /// and confine agents to `winky/` branches. Default
    /// `^winky/(feat|fix|chore|refactor|docs|test|perf)-[a-z0-9]+(-[a-z0-9]+){0,4}-[0-9a-f]{6,}$`.
    #[serde(default = "default_branch_pattern")]
    #[x_kube(validation = CelRule::new("self.startsWith('^winky/') && self.endsWith('$')").message("branchPattern must be anchored (^…$) and start with ^winky/"))]
    #[schemars(length(min = 9, max = 512))]
    pub branch_pattern: String,
}

impl Default for AgentPolicy {
    fn default() -> Self {
        Self {
            logins: Vec::new(),
            branch_pattern: default_branch_pattern(),
        }
    }
}

/// The branch pattern agents use unless a policy says otherwise.
pub const DEFAULT_BRANCH_PATTERN: &str =
    "^winky/(feat|fix|chore|refactor|docs|test|perf)-[a-z0-9]+(-[a-z0-9]+){0,4}-[0-9a-f]{6,}$";

fn default_branch_pattern() -> String {
    DEFAULT_BRANCH_PATTERN.into()
}

/// People who may approve.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Approvers {
    /// GitHub logins.
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(min = 1, max = 64)))]
    pub logins: Vec<String>,
}

/// A Prometheus server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PrometheusSpec {
    /// Base URL of the HTTP API.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://\S+$"))]
    pub url: String,
}

/// One stage.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Stage name (`preview`, `staging`, `production`).
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[a-z][a-z0-9-]*$"))]
    pub name: String,
    /// Namespace the stage runs in; `{app.namespace}` and `{app.name}` are
    /// substituted. The App's own namespace when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^([a-z0-9-]|\{app\.(namespace|name)\})+$")
    )]
    pub namespace: Option<String>,
    /// Promote as soon as the gates hold, without a `/promote` command.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_promote: bool,
    /// What must hold before a revision enters the stage.
    #[serde(default)]
    pub gates: Gates,
    /// What happens after a revision entered the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackSpec>,
}

/// Gates of a stage. All configured gates must pass.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    /// Require the emulator checks of the revision to pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub emulator: bool,
    /// Require human approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalGate>,
    /// Require SLOs to hold in an earlier stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<SloGate>,
    /// Time the revision must spend in the previous stage first (`10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub soak: Option<String>,
}

/// Approvals a revision needs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ApprovalGate {
    /// Number of distinct eligible approvers, 1 to 10.
    #[schemars(range(min = 1, max = 10))]
    pub count: i32,
    /// CEL expression deciding whether an approval counts. It sees `approver`
    /// (`login`, `isAgent`), `pr` (`author`, `number`) and `policy`
    /// (`approvers`). The pull-request author and agents never count,
    /// whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub eligible: Option<String>,
}

/// Service-level objectives that must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = CelRule::new("has(self.availability) || has(self.p95Latency) || has(self.errorRate)").message("an SLO gate needs at least one of availability, p95Latency or errorRate"))]
pub struct SloGate {
    /// Stage whose metrics are observed; the previous stage when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub observe: Option<String>,
    /// Window the objectives are measured over (`10m`).
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub window: String,
    /// Minimum availability in percent (`"99.5"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)$"))]
    pub availability: Option<String>,
    /// Maximum 95th-percentile latency (`2s`, `300ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub p95_latency: Option<String>,
    /// Maximum error rate in percent (`"0.5"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)$"))]
    pub error_rate: Option<String>,
}

/// Rollback after promotion.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSpec {
    /// Roll the stage back to the previous revision when an SLO is breached;
    /// default false.
    #[serde(default, rename = "onSLOBreach")]
    pub on_slo_breach: bool,
    /// How long after promotion the SLOs are watched (`30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub watch: Option<String>,
}
