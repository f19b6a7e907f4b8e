//! What the pipeline needs from outside the cluster: the approvals people
//! gave on GitHub, tallied per Promotion by `winky_promotion::approvals`;
//! the ChatOps commands they gave, with who may give them; the SLO readings
//! of the gates and of the stages watched after a promotion.
//!
//! Approvals and commands are read from GitHub each time (level-triggered: a
//! lost webhook or a restart loses nothing): the comments and reviews of the
//! pull requests that merged the revisions (commands are in comments only).
//! A command is acted on once: its record in a Promotion's history names its
//! comment (`winky_promotion::pipeline::recorded_comments`). GitHub is
//! reached through the GitSource that applied the App (its
//! `winky.dev/gitsource` annotation) and that GitSource's token.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::{Api, ResourceExt};
use tracing::warn;
use winky_crds::keys::GIT_SOURCE_ANNOTATION;
use winky_crds::promotion::{Approval, ApprovalSource, Phase, Promotion};
use winky_crds::{App, GitSource, PromotionPolicy};
use winky_policies::eligibility::{Eligibility, PullRequest};
use winky_promotion::approvals::{self, Comment, Event, Gate, Review, ReviewState, Revision, Tally};
use winky_promotion::chatops::{self, Parsed};
use winky_promotion::pipeline::{self, ApprovalsFound, Command, Given};

use super::PromotionContext;
use crate::github::GitHub;

/// What GitHub said, and when to try again if it could not be asked.
#[derive(Debug, Default)]
pub struct Found {
    /// Approvals per Promotion name.
    pub approvals: BTreeMap<String, ApprovalsFound>,
    /// The commands not on record yet, in the order they were written.
    pub commands: Vec<Given>,
    /// The comments those commands came from: each gets one reply.
    pub replies: Vec<Reply>,
    /// The repository, to reply, comment and set commit statuses.
    pub github: Option<GitHub>,
    /// Whether an eligible person asked for the emulator to run again (`/retest`).
    pub retest: bool,
    /// Set when GitHub could not be asked: the gates keep what they said and
    /// are asked again.
    pub retry: Option<Duration>,
    /// Why GitHub could not be asked, for a Warning Event on the App.
    pub problem: Option<String>,
}

/// The SLO gate of every Promotion of `app` that waits in a stage with one:
/// the observed stage's readings from the policy's Prometheus, judged by
/// `winky_promotion::slo::evaluate`. No Prometheus, no data and no answer
/// all wait; none passes.
pub async fn slo(
    app: &App,
    app_namespace: &str,
    policy: &PromotionPolicy,
    promotions: &[Promotion],
    now: jiff::Timestamp,
) -> BTreeMap<String, winky_crds::promotion::GateResult> {
    let mut out = BTreeMap::new();
    let stages = &policy.spec.stages;
    for promotion in promotions
        .iter()
        .filter(|p| !p.status.as_ref().map(|s| s.phase).unwrap_or_default().is_final())
    {
        let Some(k) = stages.iter().position(|s| s.name == promotion.spec.stage) else {
            continue;
        };
        let Some(gate) = &stages[k].gates.slo else {
            continue;
        };
        // The stage observed: the gate's `observe`, else the previous stage.
        let observed = gate
            .observe
            .as_deref()
            .and_then(|name| stages.iter().find(|s| s.name == name))
            .or_else(|| k.checked_sub(1).map(|p| &stages[p]))
            .unwrap_or(&stages[k]);
        let namespace =
            crate::naming::stage_namespace(observed.namespace.as_deref(), app_namespace, &app.name_any());
        let readings = match &policy.spec.prometheus {
            Some(prometheus) => {
                let window =
                    winky_promotion::slo::parse_duration(&gate.window).unwrap_or(Duration::from_secs(600));
                let queries =
                    winky_promotion::slo::queries(&app.name_any(), &namespace, &observed.name, window);
                super::prometheus::readings(&prometheus.url, &queries).await
            }
            None => winky_promotion::slo::Readings::unavailable(
                "the PromotionPolicy names no Prometheus (spec.prometheus.url)",
            ),
        };
        let verdict = winky_promotion::slo::evaluate(gate, &readings);
        let mut result = verdict.gate_result(&now.to_string());
        if let Some(evidence) = &mut result.evidence {
            *evidence = crate::events::truncate(
                &format!("{} in {} ({namespace}): {evidence}", gate.window, observed.name),
                1000,
            );
        }
        out.insert(promotion.name_any(), result);
    }
    out
}

/// The shortest stretch of traffic a watched stage is judged on: less than
/// that is too few scrapes to be a reading.
const MIN_WATCH_WINDOW: Duration = Duration::from_secs(30);

/// The SLO readings of every Promoted Promotion of `app` still watched
/// after its promotion (`rollback.onSLOBreach`), in its own stage, over the
/// time since it was promoted (at most the stage's SLO window): a Failed
/// one is a breach. The stage's SLO gate sets the objectives, else
/// `winky_promotion::slo::default_objectives`. No reading is never a
/// breach, and never a pass.
pub async fn watch(
    app: &App,
    app_namespace: &str,
    policy: &PromotionPolicy,
    promotions: &[Promotion],
    now: jiff::Timestamp,
) -> (BTreeMap<String, winky_crds::promotion::GateResult>, bool) {
    let mut out = BTreeMap::new();
    let watched = pipeline::watched(&policy.spec.stages, promotions, now);
    let watching = !watched.is_empty();
    let Some(prometheus) = &policy.spec.prometheus else {
        return (out, watching);
    };
    for w in watched {
        if w.elapsed < MIN_WATCH_WINDOW {
            continue;
        }
        let Some(stage) = policy.spec.stages.iter().find(|s| s.name == w.stage) else {
            continue;
        };
        let objectives = stage
            .gates
            .slo
            .clone()
            .unwrap_or_else(|| winky_promotion::slo::default_objectives("5m"));
        let window = winky_promotion::slo::parse_duration(&objectives.window)
            .unwrap_or(Duration::from_secs(300))
            .min(w.elapsed);
        let gate = winky_crds::policy::SloGate {
            window: format!("{}s", window.as_secs()),
            ..objectives
        };
        let namespace =
            crate::naming::stage_namespace(stage.namespace.as_deref(), app_namespace, &app.name_any());
        let queries = winky_promotion::slo::queries(&app.name_any(), &namespace, &stage.name, window);
        let readings = super::prometheus::readings(&prometheus.url, &queries).await;
        let verdict = winky_promotion::slo::evaluate(&gate, &readings);
        let mut result = verdict.gate_result(&now.to_string());
        if let Some(evidence) = &mut result.evidence {
            *evidence =
                crate::events::truncate(&format!("in {namespace} since {}: {evidence}", w.since), 1000);
        }
        out.insert(w.name, result);
    }
    (out, watching)
}

/// What GitHub says about the pull requests of an App's revisions: the
/// approvals of every Promotion waiting in a stage with an approvals gate,
/// and the ChatOps commands not acted on yet.
pub async fn github(
    app: &App,
    policy: &PromotionPolicy,
    promotions: &[Promotion],
    ctx: &PromotionContext,
) -> Found {
    let mut found = Found::default();
    let threads = revisions_with_pulls(promotions);
    if threads.is_empty() {
        return found;
    }
    if let Err(problem) = read_github(app, policy, promotions, &threads, ctx, &mut found).await {
        warn!(app = %app.name_any(), %problem, "GitHub could not be read; the gates wait");
        found.retry = Some(Duration::from_secs(30));
        found.problem = Some(problem);
    }
    found
}

/// A revision whose pull request is read: one with a Promotion still
/// moving, or running in a stage (a `/rollback` is given on its pull request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// The pull request that merged it.
    pub number: u64,
    /// The revision.
    pub revision: String,
    /// When it entered the pipeline: comments written before were not
    /// about it.
    pub since: jiff::Timestamp,
}

/// The revisions whose pull requests are read, one per pull request.
pub fn revisions_with_pulls(promotions: &[Promotion]) -> Vec<Thread> {
    let mut threads: BTreeMap<u64, Thread> = BTreeMap::new();
    let live = promotions.iter().filter(|p| {
        let phase = p.status.as_ref().map(|s| s.phase).unwrap_or_default();
        !phase.is_final() || phase == Phase::Promoted
    });
    for p in live {
        let Some(number) = p.spec.revision.pull_request.and_then(|n| u64::try_from(n).ok()) else {
            continue;
        };
        // Its first Promotion, live or not, is when the revision came.
        let since = promotions
            .iter()
            .filter(|q| q.spec.revision.id == p.spec.revision.id)
            .map(created_at)
            .min()
            .unwrap_or_else(|| created_at(p));
        let thread = threads.entry(number).or_insert_with(|| Thread {
            number,
            revision: p.spec.revision.id.clone(),
            since,
        });
        thread.since = thread.since.min(since);
    }
    threads.into_values().collect()
}

async fn read_github(
    app: &App,
    policy: &PromotionPolicy,
    promotions: &[Promotion],
    threads: &[Thread],
    ctx: &PromotionContext,
    found: &mut Found,
) -> Result<(), String> {
    let Some(github) = connect(app, ctx).await? else {
        return Ok(());
    };
    let agents = policy.spec.agents.logins.clone();
    let approvers = policy.spec.approvers.logins.clone();
    let judges = Judges::compile(policy)?;
    let recorded = pipeline::recorded_comments(promotions);
    let mut tallies: BTreeMap<String, (String, Tally)> = BTreeMap::new();
    for thread in threads {
        let pull = github.pull(thread.number).await.map_err(|e| e.to_string())?;
        let author = pull.author;
        let comments = github.comments(thread.number).await.map_err(|e| e.to_string())?;
        let reviews = github.reviews(thread.number).await.map_err(|e| e.to_string())?;
        let waiting = promotions.iter().filter(|p| {
            p.spec.revision.pull_request == Some(thread.number as i64)
                && !p.status.as_ref().map(|s| s.phase).unwrap_or_default().is_final()
        });
        for promotion in waiting {
            let Some(gate) = stage_gate(policy, &promotion.spec.stage) else {
                continue;
            };
            let since = created_at(promotion);
            let eligibility = judges.of(&promotion.spec.stage);
            // Reviews are made on the pull request's head commit; the
            // revision is its merge commit on the protected branch.
            let revision = Revision {
                head: pull.head_sha.clone(),
                merge: promotion.spec.revision.git_commit.clone(),
                since,
            };
            let events = events_of(
                &comments,
                &reviews,
                promotion
                    .status
                    .as_ref()
                    .map(|s| s.approvals.as_slice())
                    .unwrap_or_default(),
            );
            let tally = approvals::tally(
                &Gate {
                    stage: &promotion.spec.stage,
                    stage_since: since,
                    need: gate.count,
                    revision: &revision,
                    pull_request: PullRequest {
                        author: &author,
                        number: thread.number as i64,
                    },
                    agents: &agents,
                    approvers: &approvers,
                    eligibility,
                },
                &events,
            );
            found.approvals.insert(
                promotion.name_any(),
                ApprovalsFound {
                    have: tally.have,
                    records: tally.approvals(),
                },
            );
            tallies.insert(promotion.name_any(), (promotion.spec.stage.clone(), tally));
        }
        let people = People {
            author: &author,
            number: thread.number,
            agents: &agents,
            approvers: &approvers,
            judges: &judges,
        };
        commands_of(thread, &comments, &recorded, &people, &tallies, found);
        unanswered(thread, &comments, &recorded, promotions, found);
    }
    found.github = Some(github);
    Ok(())
}

/// The GitHub repository the App was applied from, with its GitSource's
/// token; `None` when the App was not applied from a repository on GitHub
/// (then there is no pull request, and nobody can approve or command).
pub async fn connect(app: &App, ctx: &PromotionContext) -> Result<Option<GitHub>, String> {
    let Some(source) = app.annotations().get(GIT_SOURCE_ANNOTATION) else {
        return Ok(None);
    };
    let (source_namespace, source_name) = source
        .split_once('/')
        .ok_or("a malformed winky.dev/gitsource annotation")?;
    let sources: Api<GitSource> = Api::namespaced(ctx.core.client.clone(), source_namespace);
    let source = sources
        .get_opt(source_name)
        .await
        .map_err(|e| format!("reading GitSource {source_namespace}/{source_name}: {e}"))?
        .ok_or_else(|| format!("GitSource {source_namespace}/{source_name} is gone"))?;
    let Some(github) = &source.spec.github else {
        return Ok(None);
    };
    GitHub::connect(&ctx.core.client, source_namespace, github)
        .await
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Every stage's compiled eligibility: its approvals gate's expression, or
/// the policy's default (`approver.login in policy.approvers`) for a stage
/// with no approvals gate. Who may give a command follows the same rules as
/// who may approve.
#[derive(Debug)]
pub struct Judges {
    stages: Vec<(String, Eligibility)>,
    default: Eligibility,
}

impl Judges {
    /// Compiles the expressions of `policy`.
    pub fn compile(policy: &PromotionPolicy) -> Result<Self, String> {
        let mut stages = Vec::new();
        for stage in &policy.spec.stages {
            let source = stage.gates.approvals.as_ref().and_then(|g| g.eligible.as_deref());
            let eligibility = Eligibility::compile(source, &format!("stage {}", stage.name))
                .map_err(|e| format!("the eligibility of stage {}: {e}", stage.name))?;
            stages.push((stage.name.clone(), eligibility));
        }
        let default = Eligibility::compile(None, "the policy").map_err(|e| e.to_string())?;
        Ok(Self { stages, default })
    }

    fn of(&self, stage: &str) -> &Eligibility {
        self.stages
            .iter()
            .find(|(name, _)| name == stage)
            .map_or(&self.default, |(_, e)| e)
    }
}

/// Who is who on one pull request.
#[derive(Debug)]
pub struct People<'a> {
    /// Its author: never eligible.
    pub author: &'a str,
    /// Its number.
    pub number: u64,
    /// The policy's agents: never eligible.
    pub agents: &'a [String],
    /// The policy's approvers.
    pub approvers: &'a [String],
    /// The stages' eligibility.
    pub judges: &'a Judges,
}

impl People<'_> {
    /// Why `login` may not give a command about `stage` (any stage when
    /// `None`), if they may not.
    fn refuses(&self, login: &str, stage: Option<&str>) -> Option<String> {
        let revision = Revision {
            head: String::new(),
            merge: None,
            since: jiff::Timestamp::UNIX_EPOCH,
        };
        let judge = |eligibility: &Eligibility| {
            approvals::ineligible(
                &Gate {
                    stage: stage.unwrap_or_default(),
                    stage_since: jiff::Timestamp::UNIX_EPOCH,
                    need: 1,
                    revision: &revision,
                    pull_request: PullRequest {
                        author: self.author,
                        number: self.number as i64,
                    },
                    agents: self.agents,
                    approvers: self.approvers,
                    eligibility,
                },
                login,
            )
        };
        let reason = match stage {
            Some(stage) => judge(self.judges.of(stage)),
            None => {
                let mut reasons = self
                    .judges
                    .stages
                    .iter()
                    .map(|(_, e)| judge(e))
                    .chain(std::iter::once(judge(&self.judges.default)));
                let first = reasons.next().flatten();
                if first.is_none() || reasons.any(|r| r.is_none()) {
                    None
                } else {
                    first
                }
            }
        }?;
        Some(reason.to_string().replacen("not counted", "not done", 1))
    }
}

/// One comment with commands, and where its commands' answers will be.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The pull request.
    pub number: u64,
    /// The comment.
    pub comment: u64,
    /// Who wrote it.
    pub login: String,
    /// Its command lines.
    pub parsed: Vec<Parsed>,
    /// For each command line, its index in [`Found::commands`] (or in
    /// `recorded`).
    pub commands: Vec<usize>,
    /// The answers on record, when the comment was acted on before and only
    /// its reply is missing.
    pub recorded: Option<Vec<String>>,
}

impl Reply {
    /// The reply's text, given the decision's answers (aligned with the commands).
    pub fn text(&self, answers: &[String]) -> Option<String> {
        let answers = self.recorded.as_deref().unwrap_or(answers);
        let mut index = self.commands.iter();
        let mut lines = self.parsed.iter().map(|p| (p, index.next()));
        // chatops::reply asks for the commands' answers in order; problems it words itself.
        let body = chatops::reply(&self.parsed, |_| {
            lines
                .find(|(p, _)| p.result.is_ok())
                .and_then(|(_, i)| i.and_then(|i| answers.get(*i)).cloned())
                .unwrap_or_default()
        })?;
        Some(format!("@{}\n\n{body}", self.login))
    }

    /// The marker of the one reply to this comment.
    pub fn marker(&self) -> String {
        format!("<!-- winky:reply:{} -->", self.comment)
    }
}

/// The commands of `thread`'s comments not on record yet, with what the
/// operator knows before deciding: who may give them, and what became of an
/// `/approve`.
pub fn commands_of(
    thread: &Thread,
    comments: &[crate::github::PullComment],
    recorded: &BTreeSet<u64>,
    people: &People<'_>,
    tallies: &BTreeMap<String, (String, Tally)>,
    found: &mut Found,
) {
    for c in comments {
        if c.created_at < thread.since || recorded.contains(&c.id) {
            continue;
        }
        let parsed = chatops::parse(&c.body);
        if parsed.is_empty() {
            continue;
        }
        let mut indices = Vec::new();
        for line in &parsed {
            let command = match &line.result {
                // A comment changed after it was written is not what was
                // written: nothing in it is acted on.
                Ok(command) if c.edited => Command::Noted {
                    text: command.to_string(),
                    outcome: "not done: an edited comment is never read as a command; write a new comment"
                        .into(),
                },
                Ok(command) => {
                    let (given, retest) =
                        to_command(command, &c.login, &thread.revision, c.id, people, tallies);
                    found.retest |= retest;
                    given
                }
                Err(problem) => Command::Noted {
                    text: format!("line {}", line.line),
                    outcome: problem.to_string(),
                },
            };
            indices.push(found.commands.len());
            found.commands.push(Given {
                command,
                by: c.login.clone(),
                at: c.created_at,
                comment: Some((c.id, line.line)),
                revision: Some(thread.revision.clone()),
            });
        }
        found.replies.push(Reply {
            number: thread.number,
            comment: c.id,
            login: c.login.clone(),
            parsed,
            commands: indices,
            recorded: None,
        });
    }
}

/// The comments acted on whose reply is not on GitHub (the operator stopped
/// between the record and the reply): their reply, written again from the
/// answers on record, so every command comment gets its one reply.
pub fn unanswered(
    thread: &Thread,
    comments: &[crate::github::PullComment],
    recorded: &BTreeSet<u64>,
    promotions: &[Promotion],
    found: &mut Found,
) {
    let answered: BTreeSet<u64> = comments.iter().filter_map(|c| replied_to(&c.body)).collect();
    for c in comments {
        if c.created_at < thread.since || !recorded.contains(&c.id) || answered.contains(&c.id) {
            continue;
        }
        let parsed = chatops::parse(&c.body);
        let answers = pipeline::recorded_answers(promotions, c.id);
        // Edited since it was acted on: what it says now is not what was answered.
        let lines: Vec<usize> = parsed.iter().map(|p| p.line).collect();
        if parsed.is_empty() || lines != answers.iter().map(|(l, _)| *l).collect::<Vec<_>>() {
            continue;
        }
        found.replies.push(Reply {
            number: thread.number,
            comment: c.id,
            login: c.login.clone(),
            commands: (0..parsed.len()).collect(),
            parsed,
            recorded: Some(answers.into_iter().map(|(_, a)| a).collect()),
        });
    }
}

/// The comment a reply answers, from its marker.
fn replied_to(body: &str) -> Option<u64> {
    let start = body.find("<!-- winky:reply:")? + "<!-- winky:reply:".len();
    let rest = &body[start..];
    rest[..rest.find(" -->")?].parse().ok()
}

/// The pipeline's command for `command`, and whether it asks for the
/// emulator to run again.
fn to_command(
    command: &chatops::Command,
    login: &str,
    revision: &str,
    comment: u64,
    people: &People<'_>,
    tallies: &BTreeMap<String, (String, Tally)>,
) -> (Command, bool) {
    let noted = |outcome: String| Command::Noted {
        text: command.to_string(),
        outcome,
    };
    if let chatops::Command::Approve { .. } = command {
        return (noted(approve_answer(revision, comment, tallies)), false);
    }
    if let Some(refused) = people.refuses(login, command.stage()) {
        return (noted(refused), false);
    }
    let command = match command {
        chatops::Command::Hold => Command::Hold,
        chatops::Command::Unhold => Command::Unhold,
        chatops::Command::Promote { stage } => Command::Promote(stage.clone()),
        chatops::Command::Rollback { stage } => Command::Rollback(stage.clone()),
        chatops::Command::Retest | chatops::Command::Approve { .. } => {
            let outcome =
                format!("the emulator runs again for {revision}; its result decides the emulator gates");
            return (noted(outcome), true);
        }
    };
    (command, false)
}

/// What became of an `/approve`: its record in the tallies of the
/// revision's waiting Promotions, a counted one first.
fn approve_answer(revision: &str, comment: u64, tallies: &BTreeMap<String, (String, Tally)>) -> String {
    let records: Vec<(&str, &approvals::Record)> = tallies
        .values()
        .filter_map(|(stage, tally)| Some((stage.as_str(), tally.for_comment(comment)?)))
        .collect();
    if let Some((stage, _)) = records.iter().find(|(_, r)| r.reason.counts()) {
        return format!("counted for {stage}");
    }
    match records.first() {
        Some((stage, record)) => format!("{} ({stage})", record.reason),
        None => format!("not counted: nothing of {revision} waits for approvals"),
    }
}

fn stage_gate<'a>(policy: &'a PromotionPolicy, stage: &str) -> Option<&'a winky_crds::policy::ApprovalGate> {
    policy
        .spec
        .stages
        .iter()
        .find(|s| s.name == stage)
        .and_then(|s| s.gates.approvals.as_ref())
}

/// When the Promotion was created: approvals written before belong to an
/// earlier revision or stage.
fn created_at(promotion: &Promotion) -> jiff::Timestamp {
    promotion
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The comments and reviews as approval events, in the order they were
/// written (a comment and a review of the same second: the comment first).
///
/// An edited comment is a creation with no command then an edit (an edit
/// never adds an approval), unless its approval was counted before it was
/// edited, which is on record. A dismissed review is listed `DISMISSED`, and
/// GitHub no longer says what it was: one whose approval is on record
/// (`recorded`) is that approval, then its dismissal; any other is read as
/// the verdict that approves nothing (a request for changes, dismissed),
/// so a dismissal never adds an approval nor brings one back.
fn events_of(
    comments: &[crate::github::PullComment],
    reviews: &[crate::github::PullReview],
    recorded: &[Approval],
) -> Vec<Event> {
    let mut timed: Vec<(jiff::Timestamp, Vec<Event>)> = Vec::new();
    for c in comments {
        let counted_before = recorded
            .iter()
            .any(|a| a.url.is_some() && a.url == c.url && a.counted.as_deref() == Some("counted"));
        let comment = Comment {
            id: c.id,
            login: c.login.clone(),
            body: if c.edited && !counted_before {
                String::new()
            } else {
                c.body.clone()
            },
            at: c.created_at,
            url: c.url.clone(),
        };
        let mut events = vec![Event::CommentCreated(comment)];
        if c.edited && !counted_before {
            events.push(Event::CommentEdited {
                id: c.id,
                body: c.body.clone(),
                at: c.created_at,
            });
        }
        timed.push((c.created_at, events));
    }
    for r in reviews {
        let review = |state| {
            Event::ReviewSubmitted(Review {
                id: r.id,
                login: r.login.clone(),
                state,
                commit: r.commit_id.clone(),
                at: r.submitted_at,
                url: r.url.clone(),
            })
        };
        let events = match ReviewState::from_github(&r.state) {
            Some(state) => vec![review(state)],
            None if r.state.eq_ignore_ascii_case("dismissed") => {
                let approved = recorded
                    .iter()
                    .any(|a| a.source == ApprovalSource::Review && a.url.is_some() && a.url == r.url);
                let state = if approved {
                    ReviewState::Approved
                } else {
                    ReviewState::ChangesRequested
                };
                vec![
                    review(state),
                    Event::ReviewDismissed {
                        id: r.id,
                        at: r.submitted_at,
                    },
                ]
            }
            None => continue,
        };
        timed.push((r.submitted_at, events));
    }
    // Stable: GitHub's order stands among events of the same second.
    timed.sort_by_key(|(at, _)| *at);
    timed.into_iter().flat_map(|(_, events)| events).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::PullComment;
    use winky_crds::policy::{AgentPolicy, ApprovalGate, Approvers, Gates, PromotionPolicySpec, Stage};

    fn policy() -> PromotionPolicy {
        let stage = |name: &str, approvals: Option<ApprovalGate>| Stage {
            name: name.into(),
            namespace: None,
            auto_promote: approvals.is_none(),
            gates: Gates {
                approvals,
                ..Default::default()
            },
            rollback: None,
        };
        PromotionPolicy::new(
            "default",
            PromotionPolicySpec {
                agents: AgentPolicy {
                    logins: vec!["winky-agent".into()],
                    branch_pattern: "^winky/.+$".into(),
                },
                approvers: Approvers {
                    logins: vec!["alice".into(), "bob".into(), "dana".into()],
                },
                prometheus: None,
                stages: vec![
                    stage("staging", None),
                    stage(
                        "production",
                        Some(ApprovalGate {
                            count: 1,
                            eligible: Some("approver.login == 'alice'".into()),
                        }),
                    ),
                ],
            },
        )
    }

    fn comment(id: u64, login: &str, body: &str, secs: i64) -> PullComment {
        PullComment {
            id,
            login: login.into(),
            body: body.into(),
            created_at: jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap(),
            edited: false,
            url: None,
        }
    }

    fn read(comments: &[PullComment], recorded: &[u64]) -> Found {
        let policy = policy();
        let judges = Judges::compile(&policy).unwrap();
        let people = People {
            author: "dana",
            number: 7,
            agents: &policy.spec.agents.logins,
            approvers: &policy.spec.approvers.logins,
            judges: &judges,
        };
        let thread = Thread {
            number: 7,
            revision: "r-1".into(),
            since: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        };
        let mut found = Found::default();
        let recorded = recorded.iter().copied().collect();
        commands_of(
            &thread,
            comments,
            &recorded,
            &people,
            &BTreeMap::new(),
            &mut found,
        );
        found
    }

    fn outcome(given: &Given) -> Option<&str> {
        match &given.command {
            Command::Noted { outcome, .. } => Some(outcome),
            _ => None,
        }
    }

    #[test]
    fn who_may_give_a_command_follows_the_approval_rules_of_its_stage() {
        let found = read(
            &[
                comment(1, "bob", "/promote production", 10),
                comment(2, "alice", "/promote production", 11),
                comment(3, "dana", "/hold", 12),
                comment(4, "winky-agent", "/rollback staging", 13),
                comment(5, "bob", "/hold", 14),
                comment(6, "mallory", "/unhold", 15),
            ],
            &[],
        );
        let c = &found.commands;
        assert_eq!(c.len(), 6);
        // Production's expression admits alice only.
        assert_eq!(outcome(&c[0]), Some("not done: not eligible under the policy"));
        assert_eq!(c[1].command, Command::Promote("production".into()));
        assert_eq!(c[1].comment, Some((2, 1)));
        assert_eq!(c[1].revision.as_deref(), Some("r-1"));
        // The author and an agent never, whatever the stage.
        assert_eq!(outcome(&c[2]), Some("not done: you opened this pull request"));
        assert_eq!(outcome(&c[3]), Some("not done: agents never approve"));
        // A /hold names no stage: eligible in any stage is enough.
        assert_eq!(c[4].command, Command::Hold);
        assert_eq!(outcome(&c[5]), Some("not done: not eligible under the policy"));
        assert!(!found.retest);
    }

    #[test]
    fn recorded_earlier_and_edited_comments_are_never_acted_on() {
        let mut edited = comment(3, "alice", "/rollback production", 12);
        edited.edited = true;
        let found = read(
            &[
                comment(1, "alice", "/hold", -5),
                comment(2, "alice", "/hold", 10),
                edited,
                comment(4, "alice", "thanks!\n/retest", 13),
            ],
            &[2],
        );
        let c = &found.commands;
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(
            outcome(&c[0]),
            Some("not done: an edited comment is never read as a command; write a new comment")
        );
        assert!(found.retest);
        assert_eq!(found.replies.len(), 2);
        assert_eq!(found.replies[1].comment, 4);
    }

    const HEAD: &str = "4f2a9c0d1e2b3a4f5c6d7e8f9a0b1c2d3e4f5a6b";
    const MERGE: &str = "9c1e0000aaaabbbbccccddddeeeeffff00001111";

    fn review(id: u64, login: &str, state: &str, commit: &str, secs: i64) -> crate::github::PullReview {
        crate::github::PullReview {
            id,
            login: login.into(),
            state: state.into(),
            commit_id: commit.into(),
            submitted_at: jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap(),
            url: Some(format!("https://github.com/o/r/pull/7#pullrequestreview-{id}")),
        }
    }

    /// Production's gate (count 1, alice only) for a revision whose pull
    /// request's head is HEAD, merged as MERGE at second 0.
    fn production_tally(events: &[Event]) -> Tally {
        let policy = policy();
        let judges = Judges::compile(&policy).unwrap();
        let revision = Revision {
            head: HEAD.into(),
            merge: Some(MERGE.into()),
            since: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        };
        approvals::tally(
            &Gate {
                stage: "production",
                stage_since: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
                need: 1,
                revision: &revision,
                pull_request: PullRequest {
                    author: "dana",
                    number: 7,
                },
                agents: &policy.spec.agents.logins,
                approvers: &policy.spec.approvers.logins,
                eligibility: judges.of("production"),
            },
            events,
        )
    }

    /// What each event is, by id, in order.
    fn kinds(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::CommentCreated(c) => format!("comment {}", c.id),
                Event::CommentEdited { id, .. } => format!("edit {id}"),
                Event::CommentDeleted { id, .. } => format!("delete {id}"),
                Event::ReviewSubmitted(r) => format!("review {} {:?}", r.id, r.state),
                Event::ReviewDismissed { id, .. } => format!("dismiss {id}"),
            })
            .collect()
    }

    #[test]
    fn reviews_and_comments_are_events_in_the_order_they_were_written() {
        let events = events_of(
            &[comment(1, "bob", "/approve", 20), comment(2, "bob", "nice", 5)],
            &[
                review(70, "alice", "APPROVED", HEAD, 10),
                review(71, "bob", "COMMENTED", HEAD, 20),
                review(72, "carol", "CHANGES_REQUESTED", HEAD, 30),
            ],
            &[],
        );
        assert_eq!(
            kinds(&events),
            [
                "comment 2",
                "review 70 Approved",
                "comment 1",
                "review 71 Commented",
                "review 72 ChangesRequested"
            ]
        );
        let Event::ReviewSubmitted(r) = &events[1] else {
            unreachable!()
        };
        assert_eq!((r.login.as_str(), r.commit.as_str()), ("alice", HEAD));
    }

    #[test]
    fn an_approving_review_counts_on_the_head_or_merge_commit_only() {
        let tally = production_tally(&events_of(&[], &[review(70, "alice", "APPROVED", HEAD, 10)], &[]));
        assert_eq!(
            (tally.have, tally.records[0].reason.clone()),
            (1, approvals::Reason::Counted)
        );
        assert_eq!(tally.records[0].approval.source, ApprovalSource::Review);
        let tally = production_tally(&events_of(
            &[],
            &[review(70, "alice", "APPROVED", MERGE, 10)],
            &[],
        ));
        assert_eq!(tally.have, 1);
        let tally = production_tally(&events_of(
            &[],
            &[review(
                70,
                "alice",
                "APPROVED",
                "1111111111111111111111111111111111111111",
                10,
            )],
            &[],
        ));
        assert_eq!(tally.records[0].reason, approvals::Reason::EarlierRevision);
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn the_authors_approving_review_does_not_count() {
        let tally = production_tally(&events_of(&[], &[review(70, "dana", "APPROVED", HEAD, 10)], &[]));
        assert_eq!(tally.records[0].reason, approvals::Reason::Author);
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn a_dismissed_review_on_record_withdraws_its_approval() {
        let counted = production_tally(&events_of(&[], &[review(70, "alice", "APPROVED", HEAD, 10)], &[]));
        assert_eq!(counted.have, 1);
        let recorded = counted.approvals();
        let events = events_of(&[], &[review(70, "alice", "DISMISSED", HEAD, 10)], &recorded);
        assert_eq!(kinds(&events), ["review 70 Approved", "dismiss 70"]);
        let tally = production_tally(&events);
        assert_eq!(tally.records[0].reason, approvals::Reason::Dismissed);
        assert_eq!(
            tally.approvals()[0].counted.as_deref(),
            Some("withdrawn: the review was dismissed")
        );
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn a_dismissed_review_never_on_record_approves_nothing() {
        // GitHub lists it DISMISSED only: it is read as a request for
        // changes, dismissed — it withdraws the reviewer's approving review
        // before it, and adds no approval of its own.
        let events = events_of(
            &[],
            &[
                review(70, "alice", "APPROVED", HEAD, 10),
                review(71, "alice", "DISMISSED", HEAD, 20),
            ],
            &[],
        );
        assert_eq!(
            kinds(&events),
            ["review 70 Approved", "review 71 ChangesRequested", "dismiss 71"]
        );
        let tally = production_tally(&events);
        assert_eq!(tally.records.len(), 1, "{tally:?}");
        assert_eq!(tally.records[0].reason, approvals::Reason::ChangesRequested);
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn reviews_in_other_states_are_not_events() {
        let events = events_of(&[], &[review(70, "alice", "PENDING", HEAD, 10)], &[]);
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn a_reply_lost_after_the_record_is_written_again_from_it() {
        let promotion: Promotion = serde_json::from_value(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "notes-production-r-1", "namespace": "n"},
            "spec": {"app": "notes", "stage": "production", "revision": {"id": "r-1", "image": "notes:1"}},
            "status": {"history": [
                {"at": "2027-01-15T08:00:10Z", "event": "Command", "actor": "alice",
                 "message": "comment 7, line 2: /promote production — promoted r-1 into production"},
                {"at": "2027-01-15T08:00:10Z", "event": "Command", "actor": "alice",
                 "message": "comment 7, line 1: /hold — held 1 promotion(s)"},
            ]},
        }))
        .unwrap();
        let thread = Thread {
            number: 7,
            revision: "r-1".into(),
            since: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
        };
        let asked = comment(7, "alice", "/hold\n/promote production", 10);
        let recorded: BTreeSet<u64> = [7].into();
        let mut found = Found::default();
        unanswered(
            &thread,
            std::slice::from_ref(&asked),
            &recorded,
            std::slice::from_ref(&promotion),
            &mut found,
        );
        assert_eq!(found.replies.len(), 1);
        assert!(found.commands.is_empty(), "nothing is acted on again");
        let text = found.replies[0].text(&[]).unwrap();
        assert!(text.contains("line 1, `/hold`: held 1 promotion(s)"), "{text}");
        assert!(
            text.contains("line 2, `/promote production`: promoted r-1 into production"),
            "{text}"
        );
        // Answered already: nothing to write.
        let reply = comment(8, "winky-bot", &format!("{text}\n\n<!-- winky:reply:7 -->"), 11);
        let mut found = Found::default();
        unanswered(
            &thread,
            &[asked.clone(), reply],
            &recorded,
            std::slice::from_ref(&promotion),
            &mut found,
        );
        assert!(found.replies.is_empty());
        // Edited since: what it says is not what was answered.
        let mut edited = asked;
        edited.body = "/hold".into();
        let mut found = Found::default();
        unanswered(&thread, &[edited], &recorded, &[promotion], &mut found);
        assert!(found.replies.is_empty());
    }

    #[test]
    fn a_reply_answers_every_line_in_order_and_never_reads_as_a_command() {
        let found = read(
            &[comment(9, "alice", "/hold\n/aprove\n/promote production", 10)],
            &[],
        );
        assert_eq!(found.commands.len(), 3);
        let answers = vec![
            "held 1 promotion(s)".to_string(),
            "ignored".to_string(),
            "promoted r-1 into production".to_string(),
        ];
        let text = found.replies[0].text(&answers).unwrap();
        assert!(text.starts_with("@alice\n\n"), "{text}");
        assert!(text.contains("line 1, `/hold`: held 1 promotion(s)"), "{text}");
        assert!(text.contains("line 2: unknown command"), "{text}");
        assert!(
            text.contains("line 3, `/promote production`: promoted r-1 into production"),
            "{text}"
        );
        assert!(winky_promotion::chatops::parse(&text).is_empty(), "{text}");
        assert_eq!(found.replies[0].marker(), "<!-- winky:reply:9 -->");
    }
}
