//! The approvals gate of one Promotion: which approvals count for one
//! revision moving into one stage, and why the others do not.
//!
//! Pure: [`tally`] replays the pull request's [`Event`]s, in the order GitHub
//! reported them, against a [`Gate`] and returns every approval with its
//! [`Reason`] and the number of distinct eligible approvers. Time is an
//! input, never read from a clock.
//!
//! The rules, and the decisions behind them:
//!
//! - **Who.** An approval counts when the policy's eligibility expression
//!   says so ([`Eligibility`]) — but never the pull request's author's, and
//!   never an agent's, whatever the expression says. An agent is a login of
//!   the policy's agents, or any GitHub App (a login ending in `[bot]`): an
//!   app is never a person. Logins are compared case-insensitively, as
//!   GitHub does, and the expression sees them in lower case (the login,
//!   the author and the policy's approvers), so `alice` in a policy matches
//!   `Alice` on GitHub.
//! - **Which revision.** An approval belongs to the revision it was given
//!   for; a new revision needs new approvals. A review is made on a commit,
//!   so it belongs to that commit: it counts when the commit is the
//!   revision's head (or merge) commit, even if it was given before the
//!   revision appeared — approving the pull request, then merging it, is the
//!   normal flow. A comment names no commit, so it belongs to the revision
//!   current when it was written: an `/approve` written before the
//!   revision's `since` was for an earlier revision (or for none: the pull
//!   request was not merged yet) and does not count.
//! - **Which stage.** `/approve production` approves production only, at any
//!   time after the revision appeared (approving ahead is allowed). A bare
//!   `/approve` approves the stage awaiting approval when it was written:
//!   this gate's stage only if written after [`Gate::stage_since`], so an
//!   `/approve` given for staging is not carried over to production. An
//!   approving review approves the commit, so it counts for every stage.
//! - **Edits.** An edit never creates a command: a comment that had no
//!   `/approve` when it was created does not count when edited into one. An
//!   edit can only withdraw: when the edited comment no longer approves this
//!   gate, its approval is withdrawn, and a later edit does not restore it.
//! - **Withdrawals.** A deleted comment withdraws its approval; so does a
//!   dismissed review, and so does a later review requesting changes from
//!   the same person (as on GitHub, where a person's latest review is their
//!   verdict). A review that only comments changes nothing.
//! - **Duplicates.** A comment or review seen twice (a redelivered webhook)
//!   counts once; an edit, deletion or dismissal of one never seen is
//!   ignored (there is nothing it could withdraw, and an edit cannot add).
//!   One person approving twice (two comments, or a comment and a review)
//!   is one approver.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use winky_crds::promotion::{Approval, ApprovalSource};
use winky_policies::eligibility::{Approver, Eligibility, PullRequest, Verdict};

use crate::chatops::{self, Command};

/// Longest `counted` text a record may carry (the CRD's limit).
const MAX_REASON: usize = 256;

/// A comment on the pull request, as it was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// GitHub's id of the comment.
    pub id: u64,
    /// Login of who wrote it.
    pub login: String,
    /// Its text, where ChatOps commands are.
    pub body: String,
    /// When it was written.
    pub at: Timestamp,
    /// Its web address, for the audit trail.
    pub url: Option<String>,
}

/// The verdict of a pull-request review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewState {
    /// The reviewer approves.
    Approved,
    /// The reviewer wants changes.
    ChangesRequested,
    /// The reviewer only comments.
    Commented,
}

impl ReviewState {
    /// The state GitHub names `state` (`approved`, `APPROVED`,
    /// `changes_requested`, `commented`, any case); `None` for the others
    /// (`dismissed`, `pending`), which are not a submitted verdict.
    pub fn from_github(state: &str) -> Option<Self> {
        match state.to_ascii_lowercase().as_str() {
            "approved" => Some(ReviewState::Approved),
            "changes_requested" => Some(ReviewState::ChangesRequested),
            "commented" => Some(ReviewState::Commented),
            _ => None,
        }
    }
}

/// A submitted pull-request review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Review {
    /// GitHub's id of the review.
    pub id: u64,
    /// Login of the reviewer.
    pub login: String,
    /// The verdict.
    pub state: ReviewState,
    /// The commit the review was made on (`commit_id`).
    pub commit: String,
    /// When it was submitted.
    pub at: Timestamp,
    /// Its web address, for the audit trail.
    pub url: Option<String>,
}

/// Something that happened on the pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A comment was written.
    CommentCreated(Comment),
    /// A comment was edited: it now reads `body`.
    CommentEdited {
        /// The comment's id.
        id: u64,
        /// Its new text.
        body: String,
        /// When it was edited.
        at: Timestamp,
    },
    /// A comment was deleted.
    CommentDeleted {
        /// The comment's id.
        id: u64,
        /// When it was deleted.
        at: Timestamp,
    },
    /// A review was submitted.
    ReviewSubmitted(Review),
    /// A review was dismissed.
    ReviewDismissed {
        /// The review's id.
        id: u64,
        /// When it was dismissed.
        at: Timestamp,
    },
}

/// The revision being approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The pull request's head commit that was merged: what reviews are made
    /// on.
    pub head: String,
    /// The merge commit on the protected branch, when known.
    pub merge: Option<String>,
    /// When the revision appeared: comments written before were for an
    /// earlier revision.
    pub since: Timestamp,
}

/// The approvals gate of one Promotion: a revision moving into a stage.
#[derive(Debug)]
pub struct Gate<'a> {
    /// The stage the revision moves into.
    pub stage: &'a str,
    /// When this stage began awaiting the revision (the Promotion's
    /// creation): a bare `/approve` written before was for an earlier stage.
    pub stage_since: Timestamp,
    /// Distinct eligible approvers needed (the policy's `count`).
    pub need: i32,
    /// The revision.
    pub revision: &'a Revision,
    /// The pull request that merged the revision: its author never approves.
    pub pull_request: PullRequest<'a>,
    /// The policy's agent logins: they never approve.
    pub agents: &'a [String],
    /// The policy's approver logins, which the expression sees.
    pub approvers: &'a [String],
    /// The stage's compiled eligibility expression.
    pub eligibility: &'a Eligibility,
}

/// Whether an approval counts, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It counts.
    Counted,
    /// The approver opened the pull request.
    Author,
    /// The approver is an agent.
    Agent,
    /// The policy's expression says no.
    NotEligible,
    /// The policy's expression failed; a failure never approves.
    PolicyError(String),
    /// A comment edited into an approval: an edit never adds one.
    AddedByEdit,
    /// Given before the revision appeared, or on another commit.
    EarlierRevision,
    /// A bare `/approve` written while an earlier stage was current.
    EarlierStage,
    /// An `/approve` naming another stage (the first one named).
    OtherStage(String),
    /// The comment was deleted.
    Deleted,
    /// The comment was edited and no longer approves.
    EditedAway,
    /// The review was dismissed.
    Dismissed,
    /// The reviewer requested changes afterwards.
    ChangesRequested,
}

impl Reason {
    /// Whether the approval counts.
    pub fn counts(&self) -> bool {
        matches!(self, Reason::Counted)
    }
}

impl fmt::Display for Reason {
    /// The `counted` text of the approval record, addressed to the approver.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Counted => f.write_str("counted"),
            Reason::Author => f.write_str("not counted: you opened this pull request"),
            Reason::Agent => f.write_str("not counted: agents never approve"),
            Reason::NotEligible => f.write_str("not counted: not eligible under the policy"),
            Reason::PolicyError(error) => {
                write!(
                    f,
                    "not counted: the policy's eligibility expression failed: {error}"
                )
            }
            Reason::AddedByEdit => f.write_str("not counted: an edit never adds an approval"),
            Reason::EarlierRevision => f.write_str("not counted: given for an earlier revision"),
            Reason::EarlierStage => {
                f.write_str("not counted: given for an earlier stage; name the stage: /approve <stage>")
            }
            Reason::OtherStage(stage) => write!(f, "not counted: given for stage {stage}"),
            Reason::Deleted => f.write_str("withdrawn: the comment was deleted"),
            Reason::EditedAway => f.write_str("withdrawn: the comment was edited"),
            Reason::Dismissed => f.write_str("withdrawn: the review was dismissed"),
            Reason::ChangesRequested => f.write_str("withdrawn: changes were requested afterwards"),
        }
    }
}

/// One approval and its verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The comment's or review's id (see `approval.source`), so the reply to
    /// a comment can say what became of it.
    pub id: u64,
    /// Why it counts or not.
    pub reason: Reason,
    /// The record for the Promotion's status.
    pub approval: Approval,
}

/// The state of the approvals gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Every approval given, in the order given, counted or not.
    pub records: Vec<Record>,
    /// Distinct eligible approvers (logins compared case-insensitively).
    pub have: i32,
    /// Approvers needed.
    pub need: i32,
}

impl Tally {
    /// Whether the gate holds.
    pub fn met(&self) -> bool {
        self.have >= self.need
    }

    /// The approval records for the Promotion's status, in order.
    pub fn approvals(&self) -> Vec<Approval> {
        self.records.iter().map(|r| r.approval.clone()).collect()
    }

    /// The record of comment `id`'s approval, if it gave one.
    pub fn for_comment(&self, id: u64) -> Option<&Record> {
        self.find(ApprovalSource::Comment, id)
    }

    /// The record of review `id`, if it approved.
    pub fn for_review(&self, id: u64) -> Option<&Record> {
        self.find(ApprovalSource::Review, id)
    }

    fn find(&self, source: ApprovalSource, id: u64) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.id == id && r.approval.source == source)
    }
}

/// The approvals gate `gate` after `events`, in the order GitHub reported
/// them. See the [module documentation](self) for the rules.
pub fn tally(gate: &Gate<'_>, events: &[Event]) -> Tally {
    let mut ledger = Ledger::default();
    for event in events {
        ledger.apply(gate, event);
    }
    ledger.finish(gate)
}

/// Why `login` may not act on `gate` — approve, or give the commands that
/// move the revision through its stage — if they may not: the same rules an
/// approval follows (never the author, never an agent, then the policy's
/// expression).
pub fn ineligible(gate: &Gate<'_>, login: &str) -> Option<Reason> {
    Judge::new(gate).ineligible(login)
}

/// An approval being accounted for.
#[derive(Debug)]
struct Given {
    id: u64,
    source: ApprovalSource,
    login: String,
    at: Timestamp,
    url: Option<String>,
    /// Whether it was for this gate's revision and stage.
    binding: Result<(), Reason>,
    /// Whether an edit, not the comment as written, made it an approval.
    added_by_edit: bool,
    /// What withdrew it, if anything did.
    withdrawn: Option<Reason>,
}

/// A comment seen, whether or not it approves.
#[derive(Debug)]
struct Seen {
    login: String,
    at: Timestamp,
    url: Option<String>,
    /// Index of its approval in `Ledger::given`.
    given: Option<usize>,
}

/// The events replayed so far.
#[derive(Debug, Default)]
struct Ledger {
    given: Vec<Given>,
    comments: BTreeMap<u64, Seen>,
    /// Reviews seen, with the index of their approval if they approved.
    reviews: BTreeMap<u64, Option<usize>>,
}

impl Ledger {
    fn apply(&mut self, gate: &Gate<'_>, event: &Event) {
        match event {
            Event::CommentCreated(comment) => self.comment_created(gate, comment),
            Event::CommentEdited { id, body, at } => self.comment_edited(gate, *id, body, *at),
            Event::CommentDeleted { id, .. } => self.withdraw_comment(*id, Reason::Deleted),
            Event::ReviewSubmitted(review) => self.review_submitted(gate, review),
            Event::ReviewDismissed { id, .. } => self.withdraw_review(*id, Reason::Dismissed),
        }
    }

    fn comment_created(&mut self, gate: &Gate<'_>, comment: &Comment) {
        if self.comments.contains_key(&comment.id) {
            return;
        }
        let stages = approvals_in(&comment.body);
        let given = (!stages.is_empty()).then(|| {
            self.push(Given {
                id: comment.id,
                source: ApprovalSource::Comment,
                login: comment.login.clone(),
                at: comment.at,
                url: comment.url.clone(),
                binding: bind_comment(gate, comment.at, &stages),
                added_by_edit: false,
                withdrawn: None,
            })
        });
        let seen = Seen {
            login: comment.login.clone(),
            at: comment.at,
            url: comment.url.clone(),
            given,
        };
        self.comments.insert(comment.id, seen);
    }

    fn comment_edited(&mut self, gate: &Gate<'_>, id: u64, body: &str, at: Timestamp) {
        let Some(seen) = self.comments.get(&id) else {
            return;
        };
        let stages = approvals_in(body);
        match seen.given {
            Some(index) => {
                let still = bind_comment(gate, seen.at, &stages).is_ok();
                if let Some(given) = self.given.get_mut(index) {
                    // Only an approval that held can be withdrawn, and a
                    // withdrawal stands: an edit never restores one.
                    if given.binding.is_ok() && !still {
                        given.withdrawn.get_or_insert(Reason::EditedAway);
                    }
                }
            }
            None if !stages.is_empty() => {
                // Recorded, so that the reply and the audit trail say why it
                // does not count.
                let given = Given {
                    id,
                    source: ApprovalSource::Comment,
                    login: seen.login.clone(),
                    at,
                    url: seen.url.clone(),
                    binding: bind_comment(gate, at, &stages),
                    added_by_edit: true,
                    withdrawn: None,
                };
                let index = self.push(given);
                if let Some(seen) = self.comments.get_mut(&id) {
                    seen.given = Some(index);
                }
            }
            None => {}
        }
    }

    fn review_submitted(&mut self, gate: &Gate<'_>, review: &Review) {
        if self.reviews.contains_key(&review.id) {
            return;
        }
        let given = match review.state {
            ReviewState::Approved => Some(self.push(Given {
                id: review.id,
                source: ApprovalSource::Review,
                login: review.login.clone(),
                at: review.at,
                url: review.url.clone(),
                binding: bind_review(gate.revision, &review.commit),
                added_by_edit: false,
                withdrawn: None,
            })),
            ReviewState::ChangesRequested => {
                self.changes_requested(&review.login);
                None
            }
            ReviewState::Commented => None,
        };
        self.reviews.insert(review.id, given);
    }

    /// `login` requested changes: their earlier approving reviews no longer
    /// stand.
    fn changes_requested(&mut self, login: &str) {
        let earlier = self
            .given
            .iter_mut()
            .filter(|g| g.source == ApprovalSource::Review && g.login.eq_ignore_ascii_case(login));
        for given in earlier {
            given.withdrawn.get_or_insert(Reason::ChangesRequested);
        }
    }

    fn withdraw_comment(&mut self, id: u64, reason: Reason) {
        let index = self.comments.get(&id).and_then(|seen| seen.given);
        self.withdraw(index, reason);
    }

    fn withdraw_review(&mut self, id: u64, reason: Reason) {
        let index = self.reviews.get(&id).copied().flatten();
        self.withdraw(index, reason);
    }

    /// Withdraws approval `index`. The first cause is the one recorded: it
    /// is what took the approval away.
    fn withdraw(&mut self, index: Option<usize>, reason: Reason) {
        if let Some(given) = index.and_then(|i| self.given.get_mut(i)) {
            given.withdrawn.get_or_insert(reason);
        }
    }

    fn push(&mut self, given: Given) -> usize {
        self.given.push(given);
        self.given.len() - 1
    }

    fn finish(self, gate: &Gate<'_>) -> Tally {
        let judge = Judge::new(gate);
        let mut counted = BTreeSet::new();
        let records: Vec<Record> = self
            .given
            .into_iter()
            .map(|given| {
                let reason = judge.reason(&given);
                if reason.counts() {
                    counted.insert(given.login.to_ascii_lowercase());
                }
                record(given, reason)
            })
            .collect();
        Tally {
            records,
            have: i32::try_from(counted.len()).unwrap_or(i32::MAX),
            need: gate.need,
        }
    }
}

/// The stages the `/approve` commands of `body` name (`None`: no stage
/// named), as the ChatOps parser reads them: commands in code or quotes,
/// and malformed ones (`/approve Prod`), are not approvals.
fn approvals_in(body: &str) -> Vec<Option<String>> {
    chatops::parse(body)
        .into_iter()
        .filter_map(|parsed| match parsed.result {
            Ok(Command::Approve { stage }) => Some(stage),
            _ => None,
        })
        .collect()
}

/// Whether a comment written `at` with `/approve` commands naming `stages`
/// approves `gate`'s revision and stage.
fn bind_comment(gate: &Gate<'_>, at: Timestamp, stages: &[Option<String>]) -> Result<(), Reason> {
    if stages.is_empty() {
        // Only an edit that removed every `/approve` gets here.
        return Err(Reason::EditedAway);
    }
    if at < gate.revision.since {
        return Err(Reason::EarlierRevision);
    }
    if stages.iter().any(|s| s.as_deref() == Some(gate.stage)) {
        return Ok(());
    }
    if stages.iter().any(Option::is_none) {
        return if at >= gate.stage_since {
            Ok(())
        } else {
            Err(Reason::EarlierStage)
        };
    }
    let named = stages.iter().flatten().next().cloned().unwrap_or_default();
    Err(Reason::OtherStage(named))
}

/// Whether a review made on `commit` approves `revision`.
fn bind_review(revision: &Revision, commit: &str) -> Result<(), Reason> {
    let ours = std::iter::once(revision.head.as_str()).chain(revision.merge.as_deref());
    let mut ours = ours.filter(|c| !c.is_empty());
    if !commit.is_empty() && ours.any(|c| c.eq_ignore_ascii_case(commit)) {
        Ok(())
    } else {
        Err(Reason::EarlierRevision)
    }
}

/// Who may approve, with the logins the expression sees in lower case.
#[derive(Debug)]
struct Judge<'g, 'a> {
    gate: &'g Gate<'a>,
    author: String,
    approvers: Vec<String>,
}

impl<'g, 'a> Judge<'g, 'a> {
    fn new(gate: &'g Gate<'a>) -> Self {
        Judge {
            gate,
            author: gate.pull_request.author.to_ascii_lowercase(),
            approvers: gate.approvers.iter().map(|a| a.to_ascii_lowercase()).collect(),
        }
    }

    /// Why `given` counts or not. Who gave it comes first (it holds for all
    /// their approvals), then whether an edit made it, then what it was
    /// given for, then whether it was withdrawn.
    fn reason(&self, given: &Given) -> Reason {
        if let Some(reason) = self.ineligible(&given.login) {
            return reason;
        }
        if given.added_by_edit {
            return Reason::AddedByEdit;
        }
        if let Err(reason) = &given.binding {
            return reason.clone();
        }
        given.withdrawn.clone().unwrap_or(Reason::Counted)
    }

    /// Why `login` may not approve, if they may not.
    fn ineligible(&self, login: &str) -> Option<Reason> {
        let login = login.to_ascii_lowercase();
        let is_agent = self.is_agent(&login);
        // Checked here too, so these two rules do not rest on the
        // expression engine alone.
        if login == self.author {
            return Some(Reason::Author);
        }
        if is_agent {
            return Some(Reason::Agent);
        }
        let approver = Approver {
            login: &login,
            is_agent,
        };
        let pr = PullRequest {
            author: &self.author,
            number: self.gate.pull_request.number,
        };
        match self.gate.eligibility.check(&approver, &pr, &self.approvers) {
            Verdict::Counts => None,
            Verdict::Author => Some(Reason::Author),
            Verdict::Agent => Some(Reason::Agent),
            Verdict::NotEligible => Some(Reason::NotEligible),
            Verdict::Error(error) => Some(Reason::PolicyError(error)),
        }
    }

    /// Whether `login` (lower case) is an agent: one of the policy's, or a
    /// GitHub App.
    fn is_agent(&self, login: &str) -> bool {
        login.ends_with("[bot]") || self.gate.agents.iter().any(|a| a.eq_ignore_ascii_case(login))
    }
}

/// The record of `given` with its `reason`.
fn record(given: Given, reason: Reason) -> Record {
    let counted: String = reason.to_string().chars().take(MAX_REASON).collect();
    let approval = Approval {
        login: given.login,
        source: given.source,
        url: given.url,
        at: given.at.to_string(),
        counted: Some(counted),
    };
    Record {
        id: given.id,
        reason,
        approval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "4f2a9c0d1e2b3a4f5c6d7e8f9a0b1c2d3e4f5a6b";
    const MERGE: &str = "9c1e0000aaaabbbbccccddddeeeeffff00001111";
    const OLD_HEAD: &str = "1111111111111111111111111111111111111111";

    /// Minute `m` of a fixed day: the revision appears at 10, production
    /// starts awaiting it at 20.
    fn t(minute: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + minute * 60).expect("in range")
    }

    struct Fixture {
        revision: Revision,
        eligibility: Eligibility,
        agents: Vec<String>,
        approvers: Vec<String>,
    }

    fn fixture(eligible: Option<&str>) -> Fixture {
        Fixture {
            revision: Revision {
                head: HEAD.into(),
                merge: Some(MERGE.into()),
                since: t(10),
            },
            eligibility: Eligibility::compile(eligible, "test").expect("compiles"),
            agents: vec!["winky-agent[bot]".into(), "robo-coder".into()],
            approvers: ["alice", "bob", "carol", "dana", "robo-coder"]
                .map(String::from)
                .to_vec(),
        }
    }

    impl Fixture {
        fn gate(&self, need: i32) -> Gate<'_> {
            Gate {
                stage: "production",
                stage_since: t(20),
                need,
                revision: &self.revision,
                pull_request: PullRequest {
                    author: "dana",
                    number: 42,
                },
                agents: &self.agents,
                approvers: &self.approvers,
                eligibility: &self.eligibility,
            }
        }

        fn tally(&self, events: &[Event]) -> Tally {
            tally(&self.gate(2), events)
        }
    }

    fn comment(id: u64, login: &str, body: &str, minute: i64) -> Event {
        Event::CommentCreated(Comment {
            id,
            login: login.into(),
            body: body.into(),
            at: t(minute),
            url: Some(format!("https://github.com/o/r/pull/42#issuecomment-{id}")),
        })
    }

    fn review(id: u64, login: &str, state: ReviewState, commit: &str, minute: i64) -> Event {
        Event::ReviewSubmitted(Review {
            id,
            login: login.into(),
            state,
            commit: commit.into(),
            at: t(minute),
            url: Some(format!("https://github.com/o/r/pull/42#pullrequestreview-{id}")),
        })
    }

    fn edited(id: u64, body: &str, minute: i64) -> Event {
        Event::CommentEdited {
            id,
            body: body.into(),
            at: t(minute),
        }
    }

    /// The reasons of the records, in order.
    fn reasons(tally: &Tally) -> Vec<Reason> {
        tally.records.iter().map(|r| r.reason.clone()).collect()
    }

    #[test]
    fn an_eligible_comment_approval_counts() {
        let tally = fixture(None).tally(&[comment(1, "alice", "/approve production", 25)]);
        assert_eq!(reasons(&tally), [Reason::Counted]);
        assert_eq!((tally.have, tally.need), (1, 2));
        assert!(!tally.met());
    }

    #[test]
    fn the_gate_is_met_with_enough_distinct_approvers() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve", 25),
            review(7, "bob", ReviewState::Approved, HEAD, 5),
        ]);
        assert_eq!((tally.have, tally.need), (2, 2));
        assert!(tally.met());
    }

    #[test]
    fn records_carry_login_source_url_time_and_reason() {
        let tally = fixture(None).tally(&[comment(1, "Alice", "/approve", 25)]);
        let expected = Approval {
            login: "Alice".into(),
            source: ApprovalSource::Comment,
            url: Some("https://github.com/o/r/pull/42#issuecomment-1".into()),
            at: t(25).to_string(),
            counted: Some("counted".into()),
        };
        assert_eq!(tally.approvals(), [expected]);
        assert!(tally.approvals()[0].at.ends_with('Z'), "RFC 3339 in UTC");
        assert_eq!(tally.for_comment(1).map(|r| r.id), Some(1));
        assert_eq!(tally.for_review(1), None);
    }

    #[test]
    fn the_author_approving_by_comment_is_not_counted() {
        let tally = fixture(None).tally(&[comment(1, "dana", "/approve", 25)]);
        assert_eq!(reasons(&tally), [Reason::Author]);
        assert_eq!(
            tally.approvals()[0].counted.as_deref(),
            Some("not counted: you opened this pull request")
        );
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn the_author_approving_by_review_is_not_counted() {
        let tally = fixture(None).tally(&[review(7, "dana", ReviewState::Approved, HEAD, 5)]);
        assert_eq!(reasons(&tally), [Reason::Author]);
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn an_agent_approving_is_not_counted() {
        let tally = fixture(None).tally(&[
            comment(1, "robo-coder", "/approve", 25),
            review(7, "winky-agent[bot]", ReviewState::Approved, HEAD, 5),
            comment(2, "dependabot[bot]", "/approve", 26),
        ]);
        assert_eq!(reasons(&tally), [Reason::Agent, Reason::Agent, Reason::Agent]);
        assert_eq!(
            tally.approvals()[0].counted.as_deref(),
            Some("not counted: agents never approve")
        );
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn the_author_and_agents_never_count_whatever_the_policy_says() {
        let f = fixture(Some("true"));
        let tally = f.tally(&[
            comment(1, "dana", "/approve", 25),
            comment(2, "robo-coder", "/approve", 25),
            comment(3, "mallory", "/approve", 25),
        ]);
        assert_eq!(reasons(&tally), [Reason::Author, Reason::Agent, Reason::Counted]);
    }

    #[test]
    fn someone_the_policy_does_not_name_is_not_counted() {
        let tally = fixture(None).tally(&[comment(1, "mallory", "/approve", 25)]);
        assert_eq!(reasons(&tally), [Reason::NotEligible]);
        assert_eq!(
            tally.approvals()[0].counted.as_deref(),
            Some("not counted: not eligible under the policy")
        );
    }

    #[test]
    fn a_failing_policy_expression_never_approves() {
        let tally = fixture(Some("approver.login")).tally(&[comment(1, "alice", "/approve", 25)]);
        assert!(
            matches!(reasons(&tally)[..], [Reason::PolicyError(_)]),
            "{tally:?}"
        );
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn an_old_comment_edited_into_approve_is_not_counted() {
        let tally = fixture(None).tally(&[comment(1, "alice", "Looks fine.", 25), edited(1, "/approve", 30)]);
        assert_eq!(reasons(&tally), [Reason::AddedByEdit]);
        assert_eq!(tally.approvals()[0].at, t(30).to_string());
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn an_edit_that_keeps_the_approval_keeps_it() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve\nlgtm", 25),
            edited(1, "/approve\nLGTM, nice work", 30),
        ]);
        assert_eq!(reasons(&tally), [Reason::Counted]);
    }

    #[test]
    fn an_edit_that_removes_approve_withdraws_it_for_good() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve", 25),
            edited(1, "on second thought, no", 30),
            edited(1, "/approve", 35),
        ]);
        assert_eq!(reasons(&tally), [Reason::EditedAway]);
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn an_edit_moving_the_approval_to_another_stage_withdraws_it() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve production", 25),
            edited(1, "/approve staging", 30),
        ]);
        assert_eq!(reasons(&tally), [Reason::EditedAway]);
    }

    #[test]
    fn a_deleted_comment_withdraws_its_approval() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve", 25),
            Event::CommentDeleted { id: 1, at: t(30) },
        ]);
        assert_eq!(reasons(&tally), [Reason::Deleted]);
        assert_eq!(
            tally.approvals()[0].counted.as_deref(),
            Some("withdrawn: the comment was deleted")
        );
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn a_dismissed_review_withdraws_its_approval() {
        let tally = fixture(None).tally(&[
            review(7, "alice", ReviewState::Approved, HEAD, 5),
            Event::ReviewDismissed { id: 7, at: t(30) },
        ]);
        assert_eq!(reasons(&tally), [Reason::Dismissed]);
        assert_eq!(
            tally.approvals()[0].counted.as_deref(),
            Some("withdrawn: the review was dismissed")
        );
        assert_eq!(tally.have, 0);
    }

    #[test]
    fn requesting_changes_later_withdraws_an_approving_review() {
        let tally = fixture(None).tally(&[
            review(7, "alice", ReviewState::Approved, HEAD, 5),
            review(8, "Alice", ReviewState::ChangesRequested, HEAD, 6),
            review(9, "bob", ReviewState::Approved, HEAD, 7),
        ]);
        assert_eq!(reasons(&tally), [Reason::ChangesRequested, Reason::Counted]);
        assert_eq!(tally.have, 1);
    }

    #[test]
    fn approving_again_after_requesting_changes_counts() {
        let tally = fixture(None).tally(&[
            review(7, "alice", ReviewState::Approved, HEAD, 5),
            review(8, "alice", ReviewState::ChangesRequested, HEAD, 6),
            review(9, "alice", ReviewState::Approved, HEAD, 7),
        ]);
        assert_eq!(reasons(&tally), [Reason::ChangesRequested, Reason::Counted]);
        assert_eq!(tally.have, 1);
    }

    #[test]
    fn a_commenting_review_changes_nothing() {
        let tally = fixture(None).tally(&[
            review(7, "alice", ReviewState::Approved, HEAD, 5),
            review(8, "alice", ReviewState::Commented, HEAD, 6),
        ]);
        assert_eq!(reasons(&tally), [Reason::Counted]);
    }

    #[test]
    fn a_comment_approval_from_before_the_revision_is_not_counted() {
        // Written at minute 5, the revision appeared at 10: it was for the
        // revision before (or for the pull request before it merged).
        let tally = fixture(None).tally(&[comment(1, "alice", "/approve production", 5)]);
        assert_eq!(reasons(&tally), [Reason::EarlierRevision]);
        assert_eq!(
            tally.approvals()[0].counted.as_deref(),
            Some("not counted: given for an earlier revision")
        );
    }

    #[test]
    fn a_review_of_an_earlier_commit_is_not_counted() {
        let tally = fixture(None).tally(&[review(7, "alice", ReviewState::Approved, OLD_HEAD, 5)]);
        assert_eq!(reasons(&tally), [Reason::EarlierRevision]);
    }

    #[test]
    fn a_review_of_the_merged_commit_counts_though_given_before_the_merge() {
        let upper = HEAD.to_ascii_uppercase();
        let tally = fixture(None).tally(&[
            review(7, "alice", ReviewState::Approved, &upper, 1),
            review(8, "bob", ReviewState::Approved, MERGE, 30),
        ]);
        assert_eq!(reasons(&tally), [Reason::Counted, Reason::Counted]);
    }

    #[test]
    fn a_review_with_no_commit_never_matches() {
        let mut f = fixture(None);
        f.revision.head = String::new();
        f.revision.merge = None;
        let tally = f.tally(&[review(7, "alice", ReviewState::Approved, "", 30)]);
        assert_eq!(reasons(&tally), [Reason::EarlierRevision]);
    }

    #[test]
    fn an_approval_carried_over_to_a_new_revision_is_not_counted() {
        // Both approved revision one; revision two appears at minute 10.
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve production", 3),
            review(7, "bob", ReviewState::Approved, OLD_HEAD, 4),
            comment(2, "carol", "/approve production", 12),
        ]);
        assert_eq!(
            reasons(&tally),
            [Reason::EarlierRevision, Reason::EarlierRevision, Reason::Counted]
        );
        assert_eq!(tally.have, 1);
    }

    #[test]
    fn a_bare_approve_is_for_the_stage_awaiting_approval_when_written() {
        // Production began awaiting at minute 20; at 15 staging did.
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve", 15),
            comment(2, "bob", "/approve", 21),
        ]);
        assert_eq!(reasons(&tally), [Reason::EarlierStage, Reason::Counted]);
    }

    #[test]
    fn an_approve_naming_the_stage_may_come_early() {
        let tally = fixture(None).tally(&[comment(1, "alice", "/approve production", 15)]);
        assert_eq!(reasons(&tally), [Reason::Counted]);
    }

    #[test]
    fn an_approve_naming_another_stage_is_not_for_this_gate() {
        let tally = fixture(None).tally(&[comment(1, "alice", "/approve staging", 25)]);
        assert_eq!(reasons(&tally), [Reason::OtherStage("staging".into())]);
        assert_eq!(
            tally.approvals()[0].counted.as_deref(),
            Some("not counted: given for stage staging")
        );
    }

    #[test]
    fn two_approvals_by_the_same_person_count_once() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve", 25),
            comment(2, "alice", "/approve production", 26),
            review(7, "alice", ReviewState::Approved, HEAD, 5),
        ]);
        assert_eq!(
            reasons(&tally),
            [Reason::Counted, Reason::Counted, Reason::Counted]
        );
        assert_eq!(tally.have, 1);
    }

    #[test]
    fn logins_are_case_insensitive() {
        let tally = fixture(None).tally(&[
            comment(1, "ALICE", "/approve", 25),
            comment(2, "alice", "/approve", 26),
            comment(3, "Dana", "/approve", 27),
            comment(4, "Winky-Agent[bot]", "/approve", 28),
            comment(5, "Robo-Coder", "/approve", 29),
        ]);
        let expected = [
            Reason::Counted,
            Reason::Counted,
            Reason::Author,
            Reason::Agent,
            Reason::Agent,
        ];
        assert_eq!(reasons(&tally), expected);
        assert_eq!(tally.have, 1);
    }

    #[test]
    fn approvers_listed_in_another_case_are_eligible() {
        let mut f = fixture(None);
        f.approvers = vec!["Alice".into()];
        let tally = f.tally(&[comment(1, "aLiCe", "/approve", 25)]);
        assert_eq!(reasons(&tally), [Reason::Counted]);
    }

    #[test]
    fn commands_in_code_quotes_or_malformed_are_not_approvals() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "```\n/approve\n```", 25),
            comment(2, "bob", "> /approve", 25),
            comment(3, "carol", "/approve Production", 25),
            comment(4, "carol", "please /approve", 25),
        ]);
        assert!(tally.records.is_empty(), "{tally:?}");
    }

    #[test]
    fn comments_without_approve_and_other_commands_are_not_approvals() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/hold\n/retest", 25),
            comment(2, "bob", "nice", 25),
        ]);
        assert!(tally.records.is_empty());
    }

    #[test]
    fn redelivered_events_count_once() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve", 25),
            comment(1, "alice", "/approve", 25),
            review(7, "bob", ReviewState::Approved, HEAD, 5),
            review(7, "bob", ReviewState::Approved, HEAD, 5),
        ]);
        assert_eq!(tally.records.len(), 2);
        assert_eq!(tally.have, 2);
    }

    #[test]
    fn events_about_unseen_comments_and_reviews_are_ignored() {
        let tally = fixture(None).tally(&[
            edited(1, "/approve", 25),
            Event::CommentDeleted { id: 2, at: t(25) },
            Event::ReviewDismissed { id: 3, at: t(25) },
            comment(4, "alice", "/approve", 26),
        ]);
        assert_eq!(reasons(&tally), [Reason::Counted]);
    }

    #[test]
    fn the_first_withdrawal_is_the_one_recorded() {
        let tally = fixture(None).tally(&[
            comment(1, "alice", "/approve", 25),
            edited(1, "never mind", 26),
            Event::CommentDeleted { id: 1, at: t(27) },
        ]);
        assert_eq!(reasons(&tally), [Reason::EditedAway]);
    }

    #[test]
    fn who_approved_comes_before_when() {
        // The author's stale approval: being the author is the lasting reason.
        let tally = fixture(None).tally(&[comment(1, "dana", "/approve", 5)]);
        assert_eq!(reasons(&tally), [Reason::Author]);
    }

    #[test]
    fn review_states_from_github() {
        assert_eq!(ReviewState::from_github("APPROVED"), Some(ReviewState::Approved));
        assert_eq!(
            ReviewState::from_github("changes_requested"),
            Some(ReviewState::ChangesRequested)
        );
        assert_eq!(
            ReviewState::from_github("commented"),
            Some(ReviewState::Commented)
        );
        assert_eq!(ReviewState::from_github("dismissed"), None);
    }

    #[test]
    fn reasons_fit_the_record() {
        let long = Reason::PolicyError("x".repeat(1000));
        let given = Given {
            id: 1,
            source: ApprovalSource::Comment,
            login: "alice".into(),
            at: t(0),
            url: None,
            binding: Ok(()),
            added_by_edit: false,
            withdrawn: None,
        };
        let record = record(given, long);
        assert_eq!(
            record.approval.counted.map(|c| c.chars().count()),
            Some(MAX_REASON)
        );
    }
}
