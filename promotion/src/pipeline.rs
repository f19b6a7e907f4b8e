//! The pipeline of one App, decided purely: which Promotions exist, what
//! each gate says, which phase each Promotion is in and what its history
//! gains. The operator gathers the inputs (the App, its policy, its
//! Promotions, approvals tallied from GitHub, SLO verdicts from Prometheus,
//! the ChatOps commands people gave) and writes what [`decide`] returns.
//!
//! ```text
//!  new revision R ─▶ Promotion(R, stage 0) ─ gates hold ─▶ Promoted ─▶ Promotion(R, stage 1) ─▶ …
//!                      │  emulator · soak · approvals · slo          (the stage's previous
//!                      │  any gate failed ─▶ Rejected                  Promoted one: Retired)
//!                      │  a newer revision reached the stage before ─▶ Superseded
//!                      └  /hold: nothing automatic until /unhold
//! ```
//!
//! Statuses are append-only where the CRD says so: approvals and history
//! only grow, so every decision stays on record.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use winky_crds::app::EmulatorSummary;
use winky_crds::common::RevisionRef;
use winky_crds::policy::Stage;
use winky_crds::promotion::{
    Approval, GateResult, GateState, HistoryEntry, Phase, Promotion, PromotionSpec, PromotionStatus,
    promotion_name,
};

/// The most history entries a Promotion keeps (the CRD's bound): the last
/// slot says the record was cut.
pub const MAX_HISTORY: usize = 128;
/// The most approvals a Promotion keeps (the CRD's bound).
pub const MAX_APPROVALS: usize = 64;

/// The App, as the pipeline needs it.
#[derive(Clone, Debug)]
pub struct AppView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its current revision, once the App controller has computed it.
    pub revision: Option<&'a RevisionRef>,
    /// The emulator's latest result.
    pub emulator: Option<&'a EmulatorSummary>,
}

/// What the approvals gate of one Promotion found (tallied from GitHub).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApprovalsFound {
    /// Distinct eligible approvers.
    pub have: i32,
    /// Every approval seen, counted or not, with why.
    pub records: Vec<Approval>,
}

/// A ChatOps command someone gave, already found to be theirs to give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Nothing automatic happens until `/unhold`.
    Hold,
    /// Automatic steps resume.
    Unhold,
    /// Promote the revision waiting in `stage` (its gates must hold).
    Promote(String),
    /// Put back the revision the stage ran before.
    Rollback(String),
    /// A command already handled before the decision (an `/approve`, which
    /// the approvals gate counts or not; a `/retest`) or refused (its giver
    /// may not give it): only recorded, and `outcome` is the reply.
    Noted {
        /// The command as typed (`/approve production`).
        text: String,
        /// What became of it.
        outcome: String,
    },
}

impl Command {
    /// The command as typed.
    pub fn text(&self) -> String {
        match self {
            Command::Hold => "/hold".into(),
            Command::Unhold => "/unhold".into(),
            Command::Promote(stage) => format!("/promote {stage}"),
            Command::Rollback(stage) => format!("/rollback {stage}"),
            Command::Noted { text, .. } => text.clone(),
        }
    }

    /// The stage the command names, if it names one.
    pub fn stage(&self) -> Option<&str> {
        match self {
            Command::Promote(stage) | Command::Rollback(stage) => Some(stage),
            _ => None,
        }
    }
}

/// One command and who gave it, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Given {
    /// The command.
    pub command: Command,
    /// GitHub login.
    pub by: String,
    /// When it was given.
    pub at: Timestamp,
    /// The comment it was given in, and its line there. Its record in the
    /// history names both, so a comment is acted on once (see
    /// [`recorded_comments`]) and its reply can be written again from the
    /// record (see [`recorded_answers`]).
    pub comment: Option<(u64, usize)>,
    /// The revision whose pull request it was given on: one of its
    /// Promotions gets the record.
    pub revision: Option<String>,
}

/// The history event that records a command.
pub const COMMAND_EVENT: &str = "Command";

/// The comments whose commands are on record in `promotions`' histories:
/// they were acted on, and never are again.
pub fn recorded_comments(promotions: &[Promotion]) -> std::collections::BTreeSet<u64> {
    promotions
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.history.iter())
        .filter(|h| h.event == COMMAND_EVENT)
        .filter_map(|h| record_of(&h.message).map(|(id, _, _)| id))
        .collect()
}

/// The answers on record for comment `id`, by line, in line order.
pub fn recorded_answers(promotions: &[Promotion], id: u64) -> Vec<(usize, String)> {
    let mut answers: Vec<(usize, String)> = promotions
        .iter()
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.history.iter())
        .filter(|h| h.event == COMMAND_EVENT)
        .filter_map(|h| record_of(&h.message))
        .filter(|(comment, _, _)| *comment == id)
        .map(|(_, line, answer)| (line, answer.to_string()))
        .collect();
    answers.sort_by_key(|(line, _)| *line);
    answers.dedup_by_key(|(line, _)| *line);
    answers
}

/// The comment, line and answer of a command's record
/// (`comment <id>, line <n>: <command> — <answer>`).
fn record_of(message: &str) -> Option<(u64, usize, &str)> {
    let rest = message.strip_prefix("comment ")?;
    let (id, rest) = rest.split_once(", line ")?;
    let (line, rest) = rest.split_once(": ")?;
    let (_, answer) = rest.split_once(" — ")?;
    Some((id.parse().ok()?, line.parse().ok()?, answer))
}

/// A Promotion whose stage's SLOs are watched after it was promoted
/// (`rollback.onSLOBreach`), and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The Promotion's name.
    pub name: String,
    /// Its stage.
    pub stage: String,
    /// When it entered the stage (promoted or restored).
    pub since: Timestamp,
    /// How long it has been there, at most the watch.
    pub elapsed: Duration,
}

/// The Promoted Promotions still inside their stage's `rollback.watch`
/// (default 30m) at `now`, in stages that roll back on a breach.
pub fn watched(stages: &[Stage], promotions: &[Promotion], now: Timestamp) -> Vec<Watched> {
    let mut out = Vec::new();
    for stage in stages {
        let Some(rollback) = stage.rollback.as_ref().filter(|r| r.on_slo_breach) else {
            continue;
        };
        let watch = rollback
            .watch
            .as_deref()
            .and_then(crate::slo::parse_duration)
            .unwrap_or(DEFAULT_WATCH);
        for p in promotions {
            let Some(status) = p.status.as_ref() else {
                continue;
            };
            if p.spec.stage != stage.name || status.phase != Phase::Promoted {
                continue;
            }
            // A revision put back by a rollback is not watched: a breach it
            // shares with the revision before is not its doing, and rolling
            // back again would cascade.
            let last = status
                .history
                .iter()
                .rev()
                .find(|h| h.event == "Promoted" || h.event == "Restored");
            let Some(since) = last
                .filter(|h| h.event == "Promoted")
                .and_then(|h| h.at.parse::<Timestamp>().ok())
            else {
                continue;
            };
            let elapsed = Duration::from_secs(now.duration_since(since).as_secs().max(0) as u64);
            if elapsed < watch {
                out.push(Watched {
                    name: p.metadata.name.clone().unwrap_or_default(),
                    stage: stage.name.clone(),
                    since,
                    elapsed,
                });
            }
        }
    }
    out
}

/// How long a stage's SLOs are watched after a promotion when its
/// `rollback` names no `watch`.
pub const DEFAULT_WATCH: Duration = Duration::from_secs(30 * 60);

/// When a Promoted Promotion entered its stage: its latest `Promoted` or
/// `Restored` entry.
fn entered(status: &PromotionStatus) -> Option<Timestamp> {
    status
        .history
        .iter()
        .rev()
        .find(|h| h.event == "Promoted" || h.event == "Restored")
        .and_then(|h| h.at.parse().ok())
}

/// The most revision snapshots an App keeps beyond the ones still needed.
pub const SNAPSHOT_HISTORY: usize = 10;

/// The snapshots (revision ids, oldest first) an App no longer needs: all
/// but the newest [`SNAPSHOT_HISTORY`], never one a stage runs, one still
/// moving through the stages, or one a stage would go back to on a
/// rollback (its latest retired revision).
pub fn snapshots_to_prune<'a>(snapshots: &[&'a str], promotions: &[Promotion]) -> Vec<&'a str> {
    let mut needed: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let mut latest_retired: BTreeMap<&str, (Option<Timestamp>, &str)> = BTreeMap::new();
    for p in promotions {
        let Some(status) = p.status.as_ref() else {
            needed.insert(&p.spec.revision.id);
            continue;
        };
        match status.phase {
            Phase::Retired => {
                let retired = status
                    .history
                    .iter()
                    .rev()
                    .find(|h| h.event == "Retired")
                    .and_then(|h| h.at.parse::<Timestamp>().ok());
                let entry = latest_retired
                    .entry(p.spec.stage.as_str())
                    .or_insert((retired, &p.spec.revision.id));
                if retired > entry.0 {
                    *entry = (retired, &p.spec.revision.id);
                }
            }
            phase if phase == Phase::Promoted || !phase.is_final() => {
                needed.insert(&p.spec.revision.id);
            }
            _ => {}
        }
    }
    needed.extend(latest_retired.values().map(|(_, id)| *id));
    let keep_from = snapshots.len().saturating_sub(SNAPSHOT_HISTORY);
    snapshots[..keep_from]
        .iter()
        .copied()
        .filter(|id| !needed.contains(id))
        .collect()
}

/// A rollback the decision made, for the operator to report (a pull-request
/// comment, a metric, the commit status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledBack {
    /// The stage.
    pub stage: String,
    /// The Promotion rolled back.
    pub from: String,
    /// The revision rolled back.
    pub from_revision: String,
    /// The revision running again.
    pub to_revision: String,
    /// Who or what rolled it back (`operator` on an SLO breach).
    pub by: String,
    /// Why.
    pub why: String,
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The App.
    pub app: AppView<'a>,
    /// Its policy's stages, in order.
    pub stages: &'a [Stage],
    /// Its Promotions, every stage and revision.
    pub promotions: &'a [Promotion],
    /// Approvals per Promotion name, for stages with an approvals gate.
    pub approvals: &'a BTreeMap<String, ApprovalsFound>,
    /// The SLO gate's result per Promotion name, for stages with one.
    pub slo: &'a BTreeMap<String, GateResult>,
    /// The SLO readings of the Promoted Promotions still watched
    /// ([`watched`]), by Promotion name: a failed one is a breach.
    pub watch: &'a BTreeMap<String, GateResult>,
    /// Commands given since the last decision, in order (none already
    /// recorded: see [`recorded_comments`]).
    pub commands: &'a [Given],
    /// Now.
    pub now: Timestamp,
}

/// What to write.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    /// Promotions to create (their status included).
    pub create: Vec<Promotion>,
    /// New statuses of existing Promotions, by name (only those that changed).
    pub statuses: Vec<(String, PromotionStatus)>,
    /// What a person should hear about each command, in order: one per
    /// command of [`Inputs::commands`].
    pub replies: Vec<String>,
    /// Stages rolled back, by a command or an SLO breach.
    pub rollbacks: Vec<RolledBack>,
    /// When to look again at the latest (a soak ends), if nothing else happens first.
    pub recheck_in: Option<Duration>,
}

fn history(at: Timestamp, event: &str, actor: &str, message: impl Into<String>) -> HistoryEntry {
    HistoryEntry {
        at: at.to_string(),
        event: event.into(),
        actor: actor.into(),
        message: message.into(),
    }
}

/// Appends `entry` unless the history is full; the last free slot records
/// that the rest was cut (the Events keep it).
fn push_history(status: &mut PromotionStatus, entry: HistoryEntry) {
    match status.history.len() {
        n if n + 1 < MAX_HISTORY => status.history.push(entry),
        n if n + 1 == MAX_HISTORY => status.history.push(HistoryEntry {
            event: "HistoryFull".into(),
            message: "the history is full; later events are only Kubernetes Events".into(),
            ..entry
        }),
        _ => {}
    }
}

fn new_promotion(
    app: &str,
    stage: &str,
    revision: &RevisionRef,
    now: Timestamp,
    message: String,
) -> Promotion {
    let mut promotion = Promotion::new(
        &promotion_name(app, stage, &revision.id),
        PromotionSpec {
            app: app.into(),
            stage: stage.into(),
            revision: revision.clone(),
        },
    );
    let mut status = PromotionStatus::default();
    push_history(&mut status, history(now, "Created", "operator", message));
    promotion.status = Some(status);
    promotion
}

/// The history events that say which phase a Promotion is in and why.
const PHASE_EVENTS: [&str; 10] = [
    "Created",
    "Verifying",
    "AwaitingApproval",
    "GatesPassed",
    "Promoted",
    "Rejected",
    "Superseded",
    "Retired",
    "RolledBack",
    "Restored",
];

/// The working set: every Promotion with the status it will have.
struct Book {
    items: Vec<(Promotion, bool)>,
}

impl Book {
    fn find(&self, stage: &str, revision: &str) -> Option<usize> {
        self.items
            .iter()
            .position(|(p, _)| p.spec.stage == stage && p.spec.revision.id == revision)
    }

    fn status(&mut self, index: usize) -> &mut PromotionStatus {
        self.items[index]
            .0
            .status
            .get_or_insert_with(PromotionStatus::default)
    }

    fn phase(&self, index: usize) -> Phase {
        self.items[index]
            .0
            .status
            .as_ref()
            .map(|s| s.phase)
            .unwrap_or_default()
    }

    /// Whether the App's latest `/hold` or `/unhold` was a hold: a
    /// Promotion created while it lasts is held from the start.
    fn app_held(&self) -> bool {
        self.items
            .iter()
            .filter_map(|(p, _)| p.status.as_ref())
            .flat_map(|s| s.history.iter())
            .filter(|h| h.event == "Held" || h.event == "Unheld")
            .filter_map(|h| Some((h.at.parse::<Timestamp>().ok()?, h.event == "Held")))
            .max_by_key(|(at, _)| *at)
            .is_some_and(|(_, held)| held)
    }

    /// Adds a new Promotion, held if the App is.
    fn open(&mut self, mut promotion: Promotion) {
        if self.app_held()
            && let Some(status) = promotion.status.as_mut()
        {
            status.held = true;
        }
        self.items.push((promotion, true));
    }

    fn in_stage(&self, stage: &str) -> impl Iterator<Item = usize> + '_ {
        let stage = stage.to_string();
        (0..self.items.len()).filter(move |&i| self.items[i].0.spec.stage == stage)
    }

    /// The time of the latest `event` in a Promotion's history.
    fn when(&self, index: usize, event: &str) -> Option<Timestamp> {
        self.items[index]
            .0
            .status
            .as_ref()?
            .history
            .iter()
            .rev()
            .find(|h| h.event == event)
            .and_then(|h| h.at.parse().ok())
    }

    /// Moves Promotion `index` to `phase`, recording `event` unless it is
    /// what the history already says of the current phase (so a quiet
    /// decision writes nothing, but "waiting for approvals" then "every
    /// gate holds" are both on record).
    fn set_phase(
        &mut self,
        index: usize,
        phase: Phase,
        at: Timestamp,
        actor: &str,
        event: &str,
        message: String,
    ) {
        let status = self.status(index);
        let last_phase_event = status
            .history
            .iter()
            .rev()
            .find(|h| PHASE_EVENTS.contains(&h.event.as_str()))
            .map(|h| h.event.as_str());
        if status.phase != phase || last_phase_event != Some(event) {
            status.phase = phase;
            push_history(status, history(at, event, actor, message));
        }
    }
}

/// Decides what the pipeline of `inputs.app` does now.
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let now = inputs.now;
    let app = inputs.app.name;
    let mut book = Book {
        items: inputs.promotions.iter().map(|p| (p.clone(), false)).collect(),
    };
    // A Promotion whose first status write was lost (the operator stopped
    // between creating it and writing its status) gets its record late.
    for i in 0..book.items.len() {
        let created = book.items[i].0.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let unrecorded = book.items[i]
            .0
            .status
            .as_ref()
            .is_none_or(|s| s.history.is_empty());
        if let (true, Some(at)) = (unrecorded, created) {
            let message = "created; recorded late (the status write after the creation was lost)";
            push_history(book.status(i), history(at, "Created", "operator", message));
        }
    }
    let before: BTreeMap<String, Option<PromotionStatus>> = inputs
        .promotions
        .iter()
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p.status.clone()))
        .collect();
    let mut replies = Vec::new();
    let mut recheck_in: Option<Duration> = None;

    // A new revision enters the first stage, and supersedes whatever older
    // revision still waits there.
    if let (Some(revision), Some(first)) = (inputs.app.revision, inputs.stages.first())
        && book.find(&first.name, &revision.id).is_none()
    {
        for i in book.in_stage(&first.name).collect::<Vec<_>>() {
            if !book.phase(i).is_final() {
                book.set_phase(
                    i,
                    Phase::Superseded,
                    now,
                    "operator",
                    "Superseded",
                    format!("revision {} came", revision.id),
                );
            }
        }
        let message = format!(
            "revision {} (commit {}) enters {}",
            revision.id,
            revision.git_commit.as_deref().unwrap_or("unknown"),
            first.name
        );
        book.open(new_promotion(app, &first.name, revision, now, message));
    }

    // A breach of a watched stage's SLOs rolls it back before anything else
    // is decided: nothing should build on a revision failing its users.
    let mut rollbacks = Vec::new();
    for stage in inputs
        .stages
        .iter()
        .filter(|s| s.rollback.as_ref().is_some_and(|r| r.on_slo_breach))
    {
        let Some(current) = book
            .in_stage(&stage.name)
            .find(|&i| book.phase(i) == Phase::Promoted)
        else {
            continue;
        };
        let name = book.items[current].0.metadata.name.clone().unwrap_or_default();
        let Some(reading) = inputs.watch.get(&name).filter(|g| g.state == GateState::Failed) else {
            continue;
        };
        let why = format!(
            "SLO breached in {}: {}",
            stage.name,
            reading.evidence.clone().unwrap_or_default()
        );
        match roll_back(&mut book, &stage.name, current, now, "operator", &why) {
            Ok(done) => rollbacks.push(done),
            Err(nothing) => {
                let status = book.status(current);
                if !status.history.iter().any(|h| h.event == "SLOBreached") {
                    push_history(
                        status,
                        history(now, "SLOBreached", "operator", format!("{why}; {nothing}")),
                    );
                }
            }
        }
    }

    // Commands next: they change what the gates may do. A `/promote` is
    // answered after the gates are read, when it is known whether it happened.
    let mut answers: Vec<Option<String>> = Vec::new();
    let mut promote_requests: Vec<Request> = Vec::new();
    for (n, given) in inputs.commands.iter().enumerate() {
        let known = |stage: &str| inputs.stages.iter().any(|s| s.name == stage);
        let answer = match &given.command {
            Command::Noted { outcome, .. } => Some(outcome.clone()),
            Command::Hold | Command::Unhold => Some(hold(&mut book, given)),
            Command::Promote(stage) | Command::Rollback(stage) if !known(stage) => Some(format!(
                "nothing done: the policy has no stage {stage} (its stages: {})",
                inputs
                    .stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Command::Promote(stage) => match promote_again(&mut book, stage, given, now) {
                Some(answer) => Some(answer),
                None => {
                    promote_requests.push(Request {
                        command: n,
                        stage: stage.clone(),
                        by: given.by.clone(),
                        at: given.at,
                        done: None,
                    });
                    None
                }
            },
            Command::Rollback(stage) => Some(match rollback_command(&mut book, stage, given, now) {
                Ok(done) => {
                    let answer = format!(
                        "{stage} rolled back from {} to {}",
                        done.from_revision, done.to_revision
                    );
                    rollbacks.push(done);
                    answer
                }
                Err(nothing) => nothing,
            }),
        };
        answers.push(answer);
    }

    // Gates and phases, stage by stage, so a promotion in one stage can open the next.
    for (k, stage) in inputs.stages.iter().enumerate() {
        // Level-triggered: the revision running in the stage before has its
        // Promotion here, even if the write that should have created it
        // failed after the promotion was recorded.
        if let Some(previous) = k.checked_sub(1).and_then(|p| inputs.stages.get(p)) {
            let running = book
                .in_stage(&previous.name)
                .find(|&i| book.phase(i) == Phase::Promoted)
                .map(|i| book.items[i].0.spec.revision.clone());
            if let Some(revision) = running
                && book.find(&stage.name, &revision.id).is_none()
            {
                open_next_stage(&mut book, app, stage, &revision, now);
            }
        }
        let waiting: Vec<usize> = book
            .in_stage(&stage.name)
            .filter(|&i| !book.phase(i).is_final())
            .collect();
        for i in waiting {
            let name = book.items[i].0.metadata.name.clone().unwrap_or_default();
            let revision = book.items[i].0.spec.revision.id.clone();
            let mut gates = Vec::new();
            if stage.gates.emulator {
                gates.push(emulator_gate(&book, inputs, &revision, now));
            }
            if let Some(soak) = &stage.gates.soak {
                let (gate, left) = soak_gate(&book, inputs, k, &revision, soak, now, i);
                if let Some(left) = left {
                    recheck_in = Some(recheck_in.map_or(left, |r| r.min(left)));
                }
                gates.push(gate);
            }
            if let Some(approvals) = &stage.gates.approvals {
                // Not read this time (GitHub did not answer, or there is no pull
                // request to read): the gate keeps what it said.
                let previous = book
                    .status(i)
                    .gates
                    .iter()
                    .find(|g| g.name == "approvals")
                    .and_then(|g| g.have);
                let found = match inputs.approvals.get(&name) {
                    Some(found) => found.clone(),
                    None => ApprovalsFound {
                        have: previous.unwrap_or(0),
                        records: Vec::new(),
                    },
                };
                let state = if found.have >= approvals.count {
                    GateState::Passed
                } else {
                    GateState::Waiting
                };
                gates.push(GateResult {
                    name: "approvals".into(),
                    state,
                    have: Some(found.have),
                    need: Some(approvals.count),
                    evidence: Some(format!(
                        "{} of {} eligible approvals",
                        found.have, approvals.count
                    )),
                    ..Default::default()
                });
                record_approvals(book.status(i), &found.records);
            }
            if stage.gates.slo.is_some() {
                gates.push(inputs.slo.get(&name).cloned().unwrap_or_else(|| GateResult {
                    name: "slo".into(),
                    state: GateState::Waiting,
                    evidence: Some("no reading yet".into()),
                    ..Default::default()
                }));
            }
            record_gates(book.status(i), gates, now);
            let status = book.status(i).clone();
            let failed = status.gates.iter().find(|g| g.state == GateState::Failed);
            let all_passed = status.gates.iter().all(|g| g.state == GateState::Passed);
            // A /promote moves what waited when it was written, never a
            // revision that came after it.
            let created = book.when(i, "Created");
            let request = promote_requests
                .iter_mut()
                .find(|r| r.stage == stage.name && created.is_none_or(|c| !after(c, r.at)));
            let requested = request.as_ref().map(|r| r.by.clone());
            if let Some(gate) = failed {
                let message = format!(
                    "gate {} failed: {}",
                    gate.name,
                    gate.evidence.clone().unwrap_or_default()
                );
                book.set_phase(i, Phase::Rejected, now, "operator", "Rejected", message);
            } else if all_passed && status.held {
                book.set_phase(
                    i,
                    Phase::AwaitingApproval,
                    now,
                    "operator",
                    "GatesPassed",
                    "every gate holds; held by /hold".into(),
                );
            } else if all_passed && (stage.auto_promote || requested.is_some()) {
                let actor = requested.unwrap_or_else(|| "operator".into());
                if let Some(request) = request {
                    request.done = Some(revision.clone());
                }
                promote(&mut book, i, &stage.name, &revision, now, &actor);
                if let Some(next) = inputs.stages.get(k + 1) {
                    let promoted = book.items[i].0.spec.revision.clone();
                    open_next_stage(&mut book, app, next, &promoted, now);
                }
            } else if all_passed {
                book.set_phase(
                    i,
                    Phase::AwaitingApproval,
                    now,
                    "operator",
                    "GatesPassed",
                    format!("every gate holds; /promote {} promotes it", stage.name),
                );
            } else if status
                .gates
                .iter()
                .any(|g| g.name == "approvals" && g.state == GateState::Waiting)
                && status
                    .gates
                    .iter()
                    .all(|g| g.name == "approvals" || g.state == GateState::Passed)
            {
                book.set_phase(
                    i,
                    Phase::AwaitingApproval,
                    now,
                    "operator",
                    "AwaitingApproval",
                    "waiting for approvals".into(),
                );
            } else {
                book.set_phase(
                    i,
                    Phase::Verifying,
                    now,
                    "operator",
                    "Verifying",
                    "waiting for its gates".into(),
                );
            }
        }
    }

    // Every command gets its answer, and its record in the history.
    for (n, given) in inputs.commands.iter().enumerate() {
        let answer = match answers[n].take() {
            Some(answer) => answer,
            None => promote_answer(&book, promote_requests.iter().find(|r| r.command == n)),
        };
        if let Some(target) = record_target(&book, given.revision.as_deref(), given.command.stage()) {
            let message = match given.comment {
                Some((id, line)) => format!("comment {id}, line {line}: {} — {answer}", given.command.text()),
                None => format!("{} — {answer}", given.command.text()),
            };
            push_history(
                book.status(target),
                history(given.at, COMMAND_EVENT, &given.by, message),
            );
        }
        replies.push(answer);
    }

    let mut decision = Decision {
        replies,
        rollbacks,
        recheck_in,
        ..Default::default()
    };
    for (promotion, is_new) in book.items {
        if is_new {
            decision.create.push(promotion);
            continue;
        }
        let name = promotion.metadata.name.clone().unwrap_or_default();
        if before.get(&name) != Some(&promotion.status) {
            decision
                .statuses
                .push((name, promotion.status.unwrap_or_default()));
        }
    }
    decision
}

/// The emulator gate: the revision's emulator result, from the App while it
/// is current, else from the first stage's Promotion of the same revision.
fn emulator_gate(book: &Book, inputs: &Inputs<'_>, revision: &str, now: Timestamp) -> GateResult {
    let from_app = inputs.app.emulator.filter(|e| e.revision == revision).map(|e| {
        let state = if e.passed {
            GateState::Passed
        } else {
            GateState::Failed
        };
        (
            state,
            format!("{}/{} checks passed", e.checks - e.failed, e.checks),
        )
    });
    let from_first_stage = || {
        let first = inputs.stages.first()?;
        let i = book.find(&first.name, revision)?;
        let gate = book.items[i]
            .0
            .status
            .as_ref()?
            .gates
            .iter()
            .find(|g| g.name == "emulator")?
            .clone();
        (gate.state != GateState::Waiting && gate.state != GateState::Pending)
            .then(|| (gate.state, gate.evidence.unwrap_or_default()))
    };
    let (state, evidence) = from_app.or_else(from_first_stage).unwrap_or((
        GateState::Waiting,
        format!("waiting for the emulator's result for {revision}"),
    ));
    GateResult {
        name: "emulator".into(),
        state,
        at: Some(now.to_string()),
        evidence: Some(evidence),
        ..Default::default()
    }
}

/// The soak gate: time spent in the previous stage (for the first stage:
/// since the Promotion was created). Returns the time left, when waiting.
fn soak_gate(
    book: &Book,
    inputs: &Inputs<'_>,
    k: usize,
    revision: &str,
    soak: &str,
    now: Timestamp,
    this: usize,
) -> (GateResult, Option<Duration>) {
    let Some(need) = crate::slo::parse_duration(soak) else {
        // The schema admits digits without bound; a soak that is no duration
        // never passes.
        let gate = GateResult {
            name: "soak".into(),
            state: GateState::Waiting,
            evidence: Some(format!("{soak} is not a duration this operator can wait for")),
            ..Default::default()
        };
        return (gate, None);
    };
    let (since, place) = match k.checked_sub(1).and_then(|p| inputs.stages.get(p)) {
        Some(previous) => (
            book.find(&previous.name, revision)
                .and_then(|i| book.when(i, "Promoted")),
            previous.name.as_str(),
        ),
        // Its "Created" entry, else when the Promotion was created (a status
        // write after the create may have been lost).
        None => (
            book.when(this, "Created").or_else(|| {
                book.items[this]
                    .0
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0)
            }),
            "the pipeline",
        ),
    };
    let spent = since
        .map(|s| Duration::from_secs(now.duration_since(s).as_secs().max(0) as u64))
        .unwrap_or(Duration::ZERO);
    let passed = since.is_some() && spent >= need;
    let gate = GateResult {
        name: "soak".into(),
        state: if passed {
            GateState::Passed
        } else {
            GateState::Waiting
        },
        evidence: Some(match since {
            Some(s) if passed => format!("{} in {place} since {s}", human(need)),
            Some(s) => format!("needs {} in {place}, since {s}", human(need)),
            None => format!("needs {} in {place}, not started", human(need)),
        }),
        ..Default::default()
    };
    (
        gate,
        (!passed).then(|| need.saturating_sub(spent).max(Duration::from_secs(1))),
    )
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// Keeps each gate's `at` while its state holds, and records changes of state in history.
fn record_gates(status: &mut PromotionStatus, gates: Vec<GateResult>, now: Timestamp) {
    for mut gate in gates {
        let previous = status.gates.iter().find(|g| g.name == gate.name).cloned();
        match &previous {
            // While a gate's state holds, what it says stays as recorded
            // when the state was reached: readings that move a little at
            // every poll must not rewrite the status (each write would wake
            // the next decision). Approvals counted so far are the exception.
            Some(p) if p.state == gate.state && (gate.name != "approvals" || p.have == gate.have) => {
                gate = p.clone();
            }
            Some(p) if p.state == gate.state => gate.at = p.at.clone(),
            _ => {
                gate.at = Some(now.to_string());
                let event = match gate.state {
                    GateState::Passed => "GatePassed",
                    GateState::Failed => "GateFailed",
                    GateState::Waiting | GateState::Pending => "GateWaiting",
                };
                let message = format!("{}: {}", gate.name, gate.evidence.clone().unwrap_or_default());
                push_history(status, history(now, event, "operator", message));
            }
        }
        status.gates.retain(|g| g.name != gate.name);
        status.gates.push(gate);
    }
    status.gates.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Appends the approvals not on record yet (the list is append-only).
fn record_approvals(status: &mut PromotionStatus, records: &[Approval]) {
    for record in records {
        if status.approvals.len() >= MAX_APPROVALS {
            break;
        }
        if !status.approvals.contains(record) {
            status.approvals.push(record.clone());
        }
    }
}

/// Promotes Promotion `i` into `stage`; the stage's previous Promoted one is Retired.
fn promote(book: &mut Book, i: usize, stage: &str, revision: &str, now: Timestamp, actor: &str) {
    for j in book.in_stage(stage).collect::<Vec<_>>() {
        if j != i && book.phase(j) == Phase::Promoted {
            book.set_phase(
                j,
                Phase::Retired,
                now,
                actor,
                "Retired",
                format!("{revision} was promoted into {stage}"),
            );
        }
    }
    let message = if actor == "operator" {
        format!("every gate holds: {revision} runs in {stage}")
    } else {
        format!("every gate holds; {actor} asked: {revision} runs in {stage}")
    };
    book.set_phase(i, Phase::Promoted, now, actor, "Promoted", message);
}

/// Opens `next` for `revision` after it was promoted into the stage before,
/// superseding what older revision still waits there.
fn open_next_stage(book: &mut Book, app: &str, next: &Stage, revision: &RevisionRef, now: Timestamp) {
    if book.find(&next.name, &revision.id).is_some() {
        return;
    }
    for j in book.in_stage(&next.name).collect::<Vec<_>>() {
        if !book.phase(j).is_final() {
            book.set_phase(
                j,
                Phase::Superseded,
                now,
                "operator",
                "Superseded",
                format!("revision {} came", revision.id),
            );
        }
    }
    let message = format!("revision {} enters {}", revision.id, next.name);
    book.open(new_promotion(app, &next.name, revision, now, message));
}

/// Whether `a` is after `b`, to the second: GitHub gives a comment's time in
/// whole seconds, so a command written in the second something happened
/// counts as written after it.
fn after(a: Timestamp, b: Timestamp) -> bool {
    a.as_second() > b.as_second()
}

/// A `/promote` waiting for the gates to be read.
struct Request {
    /// Its index in the commands.
    command: usize,
    stage: String,
    by: String,
    at: Timestamp,
    /// The revision it promoted, once it did.
    done: Option<String>,
}

/// What became of a `/promote` after the gates were read.
fn promote_answer(book: &Book, request: Option<&Request>) -> String {
    let Some(request) = request else {
        return "nothing done".into();
    };
    let stage = &request.stage;
    if let Some(revision) = &request.done {
        return format!("promoted {revision} into {stage}");
    }
    let waiting = book
        .in_stage(stage)
        .filter(|&i| !book.phase(i).is_final())
        .find(|&i| book.when(i, "Created").is_none_or(|c| !after(c, request.at)));
    let Some(i) = waiting else {
        return format!("nothing done: no revision waits for {stage}");
    };
    let p = &book.items[i].0;
    let status = p.status.clone().unwrap_or_default();
    if status.phase == Phase::Rejected {
        return format!("nothing done: {} was rejected for {stage}", p.spec.revision.id);
    }
    let open: Vec<String> = status
        .gates
        .iter()
        .filter(|g| g.state != GateState::Passed)
        .map(|g| format!("{} ({})", g.name, g.evidence.clone().unwrap_or_default()))
        .collect();
    if status.held && open.is_empty() {
        return format!(
            "not yet: {} is held; /unhold, then /promote {stage}",
            p.spec.revision.id
        );
    }
    format!(
        "not yet: {} enters {stage} when every gate holds; waiting for {}. Give /promote {stage} again then",
        p.spec.revision.id,
        open.join(", ")
    )
}

/// `/hold` or `/unhold`: every Promotion of the App not yet final is held
/// or released, and so is every Promotion created while the hold lasts.
fn hold(book: &mut Book, given: &Given) -> String {
    let hold = given.command == Command::Hold;
    let (event, message) = if hold {
        ("Held", "nothing automatic happens until /unhold")
    } else {
        ("Unheld", "automatic steps resume")
    };
    let mut touched = 0;
    for i in 0..book.items.len() {
        if book.phase(i).is_final() || book.status(i).held == hold {
            continue;
        }
        let status = book.status(i);
        status.held = hold;
        push_history(status, history(given.at, event, &given.by, message));
        touched += 1;
    }
    let already = touched == 0 && book.app_held() == hold;
    if touched == 0
        && !already
        && let Some(target) = record_target(book, given.revision.as_deref(), None)
    {
        // Nothing waits now, but what comes next is held (or not).
        push_history(book.status(target), history(given.at, event, &given.by, message));
    }
    match (hold, touched) {
        (true, 0) if already => "already held: nothing automatic happens until /unhold".to_string(),
        (false, 0) if already => "nothing was held".to_string(),
        (true, 0) => {
            "held: nothing waits now, and nothing that comes moves on its own until /unhold".to_string()
        }
        (false, 0) => "released: what comes next moves on its own".to_string(),
        (true, n) => format!("held {n} promotion(s): nothing automatic happens until /unhold"),
        (false, n) => format!("released {n} promotion(s)"),
    }
}

/// The Promotion that records a command given on `revision`'s pull
/// request: its Promotion into the stage the command names, else its latest
/// one still moving, else one running, else its latest; the App's latest
/// when the revision has none.
fn record_target(book: &Book, revision: Option<&str>, stage: Option<&str>) -> Option<usize> {
    let of = |i: &usize| revision.is_none_or(|r| book.items[*i].0.spec.revision.id == r);
    // Latest created first (a revision's Promotions are created stage by
    // stage); new ones, not created yet, are the latest.
    let mut order: Vec<usize> = (0..book.items.len()).collect();
    order.sort_by_key(|&i| {
        let (p, new) = &book.items[i];
        let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        std::cmp::Reverse((*new, created.or_else(|| book.when(i, "Created")), i))
    });
    let all = || order.iter().copied().filter(of);
    all()
        .find(|&i| stage.is_some_and(|s| book.items[i].0.spec.stage == s))
        .or_else(|| all().find(|&i| !book.phase(i).is_final()))
        .or_else(|| all().find(|&i| book.phase(i) == Phase::Promoted))
        .or_else(|| all().next())
        .or_else(|| order.first().copied())
}

/// `/promote <stage>` when the stage's newest decision was a rollback and
/// nothing newer waits: the rolled-back revision runs again, because a
/// person said so (a rollback is never undone automatically). `None` when
/// that is not the case: the request waits for the gates.
fn promote_again(book: &mut Book, stage: &str, given: &Given, now: Timestamp) -> Option<String> {
    if book.in_stage(stage).any(|i| !book.phase(i).is_final()) {
        return None;
    }
    let i = book
        .in_stage(stage)
        .filter(|&i| book.phase(i) == Phase::RolledBack)
        .max_by_key(|&i| book.when(i, "RolledBack"))?;
    let rolled_back = book.when(i, "RolledBack")?;
    let newer = book
        .in_stage(stage)
        .filter_map(|j| book.when(j, "Promoted").max(book.when(j, "Restored")))
        .any(|t| t > rolled_back);
    if newer || after(rolled_back, given.at) {
        return None;
    }
    let revision = book.items[i].0.spec.revision.id.clone();
    promote(book, i, stage, &revision, now, &given.by);
    Some(format!(
        "promoted {revision} into {stage} again after its rollback"
    ))
}

/// `/rollback <stage>`: the revision the stage ran when the command was
/// written is rolled back (so a command read twice rolls back once). The
/// rollback happens `now`, after the command was written.
fn rollback_command(
    book: &mut Book,
    stage: &str,
    given: &Given,
    now: Timestamp,
) -> Result<RolledBack, String> {
    let current = book.in_stage(stage).find(|&i| book.phase(i) == Phase::Promoted);
    let Some(current) = current else {
        return Err(format!("nothing to roll back: no revision runs in {stage}"));
    };
    let entered = book.items[current].0.status.as_ref().and_then(entered);
    if entered.is_some_and(|t| after(t, given.at)) {
        return Err(format!(
            "nothing done: {} entered {stage} after this command was written",
            book.items[current].0.spec.revision.id
        ));
    }
    let why = format!("{} asked", given.by);
    roll_back(book, stage, current, now, &given.by, &why)
}

/// Rolls `stage` back from Promotion `current` to the stage's latest
/// Retired one. Sticky: the rolled-back revision's Promotion stays, so the
/// pipeline never promotes it into the stage again on its own.
fn roll_back(
    book: &mut Book,
    stage: &str,
    current: usize,
    at: Timestamp,
    by: &str,
    why: &str,
) -> Result<RolledBack, String> {
    let previous = book
        .in_stage(stage)
        .filter(|&i| book.phase(i) == Phase::Retired)
        .max_by_key(|&i| book.when(i, "Retired"));
    let Some(previous) = previous else {
        return Err(format!("nothing to roll back to: {stage} ran no revision before"));
    };
    let (from, to) = (
        book.items[current].0.spec.revision.id.clone(),
        book.items[previous].0.spec.revision.id.clone(),
    );
    book.set_phase(
        current,
        Phase::RolledBack,
        at,
        by,
        "RolledBack",
        format!("{why}: {stage} goes back to {to}"),
    );
    book.set_phase(
        previous,
        Phase::Promoted,
        at,
        by,
        "Restored",
        format!("{stage} runs {to} again, instead of {from}"),
    );
    Ok(RolledBack {
        stage: stage.to_string(),
        from_revision: from,
        to_revision: to,
        from: book.items[current].0.metadata.name.clone().unwrap_or_default(),
        by: by.to_string(),
        why: why.to_string(),
    })
}

#[cfg(test)]
mod tests;
