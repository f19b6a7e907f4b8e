//! `Promotion`: one revision of an App moving into one stage. The audit trail.

use std::collections::BTreeMap;

#[allow(unused_imports)] // used inside x_kube attributes
use kube::core::{ListMerge, Rule as CelRule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Condition, RevisionRef};

/// Name of the Promotion of revision `revision` of `app` into `stage`:
/// `<app>-<stage>-<revision>`.
pub fn promotion_name(app: &str, stage: &str, revision: &str) -> String {
    format!("{app}-{stage}-{revision}")
}

/// Name of the ControllerRevision that keeps revision `revision` of `app`:
/// `<app>-<revision>`. Its `data` is a [`RevisionSnapshot`].
pub fn snapshot_name(app: &str, revision: &str) -> String {
    format!("{app}-{revision}")
}

/// What the operator keeps of a revision, as the `data` of a
/// ControllerRevision owned by the App: enough to run the revision in a stage
/// while the App's spec moves on, and to roll a stage back to it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSnapshot {
    /// The revision.
    pub revision: RevisionRef,
    /// The App's spec at that revision.
    pub app: crate::app::AppSpec,
}

/// One revision of an App moving into one stage, created by the operator. Its
/// spec never changes and its history, gates and approvals are only appended
/// to: it is the record of every promotion decision.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "winky.dev",
    version = "v1alpha1",
    kind = "Promotion",
    namespaced,
    status = "PromotionStatus",
    shortname = "wpromo",
    category = "winky",
    doc = "One revision of an App moving into one stage; its record of gates, approvals and events is append-only.",
    printcolumn(name = "App", type_ = "string", json_path = ".spec.app"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".spec.stage"),
    printcolumn(name = "Revision", type_ = "string", json_path = ".spec.revision.id"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Gates", type_ = "string", json_path = ".status.gates[*].state"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = CelRule::new("self == oldSelf").message("a Promotion's spec is immutable; create a new Promotion instead"))]
#[serde(rename_all = "camelCase")]
pub struct PromotionSpec {
    /// Name of the App (same namespace).
    #[schemars(length(min = 1, max = 63))]
    pub app: String,
    /// Stage the revision moves into.
    #[schemars(length(min = 1, max = 32))]
    pub stage: String,
    /// The revision.
    pub revision: RevisionRef,
}

/// Where a Promotion stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Created, gates not evaluated yet.
    #[default]
    Pending,
    /// Gates are being evaluated.
    Verifying,
    /// Every automatic gate holds; approvals are missing.
    AwaitingApproval,
    /// The revision is being applied to the stage.
    Promoting,
    /// The revision runs in the stage.
    Promoted,
    /// A gate failed or someone rejected the revision.
    Rejected,
    /// The revision was promoted, then rolled back.
    RolledBack,
    /// A newer revision replaced this one before it was promoted.
    Superseded,
    /// The revision was promoted, then a newer revision was promoted into the
    /// stage after it; a rollback of the stage goes back to the latest one.
    Retired,
}

impl Phase {
    /// Whether nothing more happens to a Promotion in this phase except a
    /// later retirement or rollback of a promoted revision.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Promoted | Phase::Rejected | Phase::RolledBack | Phase::Superseded | Phase::Retired
        )
    }
}

/// Observed state and audit trail of a Promotion.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// Current phase: `Pending` (the default), `Verifying`,
    /// `AwaitingApproval`, `Promoting`, `Promoted`, `Rejected`, `RolledBack`,
    /// `Superseded` or `Retired`.
    #[serde(default)]
    pub phase: Phase,
    /// Whether promotion is on hold (`/hold`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Conditions, one per gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Latest result of each gate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 16))]
    pub gates: Vec<GateResult>,
    /// Every approval received, eligible or not. Append-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = CelRule::new("size(self) >= size(oldSelf) && oldSelf.all(a, a in self)").message("approvals are append-only"))]
    #[schemars(length(max = 64))]
    pub approvals: Vec<Approval>,
    /// Every event of the promotion, in order. Append-only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = CelRule::new("size(self) >= size(oldSelf) && oldSelf.all(h, h in self)").message("history is append-only"))]
    #[schemars(length(max = 128))]
    pub history: Vec<HistoryEntry>,
}

/// The result of one gate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    /// `emulator`, `approvals`, `slo` or `soak`.
    #[schemars(length(min = 1, max = 32))]
    pub name: String,
    /// Current state: `Pending`, `Waiting`, `Passed` or `Failed`.
    pub state: GateState,
    /// When the state was reached (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub at: Option<String>,
    /// What the state rests on (`12/12 checks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub evidence: Option<String>,
    /// Approvals counted so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub have: Option<i32>,
    /// Approvals needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need: Option<i32>,
    /// Measured values, such as `availability: "99.93"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub readings: BTreeMap<String, String>,
}

/// State of a gate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum GateState {
    /// Not evaluated yet.
    #[default]
    Pending,
    /// Evaluated; waiting for something (approvals, the soak time).
    Waiting,
    /// Holds.
    Passed,
    /// Does not hold.
    Failed,
}

/// An approval.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Approval {
    /// GitHub login of the approver.
    #[schemars(length(min = 1, max = 64))]
    pub login: String,
    /// Where it came from: `comment` (`/approve`) or `review`.
    pub source: ApprovalSource,
    /// Link to the comment or review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub url: Option<String>,
    /// When it was given (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
    /// Whether it counted, and if not, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub counted: Option<String>,
}

/// Source of an approval.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalSource {
    /// A ChatOps `/approve` comment.
    #[default]
    Comment,
    /// An approving pull-request review.
    Review,
}

/// One event in a Promotion's history.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct HistoryEntry {
    /// When it happened (RFC 3339).
    #[schemars(length(max = 64))]
    pub at: String,
    /// What happened (`GateWaiting`, `Approved`, `Promoted`, `RolledBack`).
    #[schemars(length(min = 1, max = 64))]
    pub event: String,
    /// Who did it: `operator` or a GitHub login.
    #[schemars(length(min = 1, max = 64))]
    pub actor: String,
    /// Details.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub message: String,
}
