use super::*;
use winky_crds::policy::{ApprovalGate, Gates, SloGate};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn revision(id: &str) -> RevisionRef {
    RevisionRef {
        id: id.into(),
        git_commit: Some(format!("{id}-commit")),
        pull_request: Some(7),
        image: "notes:1".into(),
    }
}

fn stage(name: &str, auto: bool, gates: Gates) -> Stage {
    Stage {
        name: name.into(),
        namespace: None,
        auto_promote: auto,
        gates,
        rollback: None,
    }
}

/// preview (auto, emulator) → staging (auto, emulator + soak 10m) → production (2 approvals, slo).
fn stages() -> Vec<Stage> {
    vec![
        stage(
            "preview",
            true,
            Gates {
                emulator: true,
                ..Default::default()
            },
        ),
        stage(
            "staging",
            true,
            Gates {
                emulator: true,
                soak: Some("10m".into()),
                ..Default::default()
            },
        ),
        stage(
            "production",
            false,
            Gates {
                approvals: Some(ApprovalGate {
                    count: 2,
                    eligible: None,
                }),
                slo: Some(SloGate {
                    observe: Some("staging".into()),
                    window: "10m".into(),
                    availability: Some("99.5".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ]
}

fn emulator(revision: &str, passed: bool) -> EmulatorSummary {
    EmulatorSummary {
        revision: revision.into(),
        passed,
        checks: 11,
        failed: if passed { 0 } else { 2 },
        ..Default::default()
    }
}

/// Applies a decision to the Promotions, as the operator's writes would.
fn apply(promotions: &mut Vec<Promotion>, decision: &Decision) {
    for (name, status) in &decision.statuses {
        let p = promotions
            .iter_mut()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .unwrap();
        p.status = Some(status.clone());
    }
    promotions.extend(decision.create.iter().cloned());
}

struct World {
    stages: Vec<Stage>,
    promotions: Vec<Promotion>,
    approvals: BTreeMap<String, ApprovalsFound>,
    slo: BTreeMap<String, GateResult>,
    watch: BTreeMap<String, GateResult>,
}

impl World {
    fn new() -> Self {
        World {
            stages: stages(),
            promotions: Vec::new(),
            approvals: BTreeMap::new(),
            slo: BTreeMap::new(),
            watch: BTreeMap::new(),
        }
    }

    fn step(
        &mut self,
        rev: Option<&RevisionRef>,
        emu: Option<&EmulatorSummary>,
        commands: &[Given],
        now: Timestamp,
    ) -> Decision {
        let inputs = Inputs {
            app: AppView {
                name: "notes",
                revision: rev,
                emulator: emu,
            },
            stages: &self.stages,
            promotions: &self.promotions,
            approvals: &self.approvals,
            slo: &self.slo,
            watch: &self.watch,
            commands,
            now,
        };
        let decision = decide(&inputs);
        apply(&mut self.promotions, &decision);
        decision
    }

    fn phase(&self, stage: &str, rev: &str) -> Option<Phase> {
        self.promotions
            .iter()
            .find(|p| p.spec.stage == stage && p.spec.revision.id == rev)
            .map(|p| p.status.as_ref().map(|s| s.phase).unwrap_or_default())
    }

    fn events(&self, stage: &str, rev: &str) -> Vec<String> {
        self.promotions
            .iter()
            .find(|p| p.spec.stage == stage && p.spec.revision.id == rev)
            .map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.history.iter())
                    .map(|h| h.event.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn given(command: Command, by: &str, t: i64) -> Given {
    Given {
        command,
        by: by.into(),
        at: at(t),
        comment: None,
        revision: None,
    }
}

#[test]
fn a_revision_moves_through_the_stages_as_its_gates_hold() {
    let mut w = World::new();
    let r1 = revision("r-1");
    // The emulator has not reported yet: preview waits.
    let d = w.step(Some(&r1), None, &[], at(0));
    assert_eq!(d.create.len(), 1);
    assert_eq!(d.create[0].metadata.name.as_deref(), Some("notes-preview-r-1"));
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Verifying));

    // Emulator passed: preview promoted at once, staging opens and soaks.
    let d = w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(10));
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Promoted));
    assert_eq!(w.phase("staging", "r-1"), Some(Phase::Verifying));
    assert_eq!(
        d.recheck_in,
        Some(Duration::from_secs(600)),
        "the soak ends in 10m"
    );
    let staging = w.promotions.iter().find(|p| p.spec.stage == "staging").unwrap();
    let soak = staging
        .status
        .as_ref()
        .unwrap()
        .gates
        .iter()
        .find(|g| g.name == "soak")
        .unwrap();
    assert_eq!(
        soak.evidence.as_deref(),
        Some(format!("needs 10m in preview, since {}", at(10)).as_str())
    );
    // Halfway through the soak nothing changed: nothing to write (a write
    // would wake the next decision).
    let halfway = w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(300));
    assert!(
        halfway.statuses.is_empty() && halfway.create.is_empty(),
        "{halfway:?}"
    );
    assert_eq!(halfway.recheck_in, Some(Duration::from_secs(310)));

    // 10 minutes later: staging promoted; production waits for approvals and SLOs.
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(610));
    assert_eq!(w.phase("staging", "r-1"), Some(Phase::Promoted));
    assert_eq!(w.phase("production", "r-1"), Some(Phase::Verifying));

    // SLOs hold and one approval: still waiting for approvals.
    w.slo.insert(
        "notes-production-r-1".into(),
        GateResult {
            name: "slo".into(),
            state: GateState::Passed,
            evidence: Some("availability 99.9".into()),
            ..Default::default()
        },
    );
    w.approvals.insert(
        "notes-production-r-1".into(),
        ApprovalsFound {
            have: 1,
            records: vec![],
        },
    );
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(700));
    assert_eq!(w.phase("production", "r-1"), Some(Phase::AwaitingApproval));

    // Two approvals: every gate holds, but production is not autoPromote.
    w.approvals.insert(
        "notes-production-r-1".into(),
        ApprovalsFound {
            have: 2,
            records: vec![],
        },
    );
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(710));
    assert_eq!(w.phase("production", "r-1"), Some(Phase::AwaitingApproval));
    let events = w.events("production", "r-1");
    assert_eq!(events.last().map(String::as_str), Some("GatesPassed"));

    // /promote production.
    let d = w.step(
        Some(&r1),
        Some(&emulator("r-1", true)),
        &[given(Command::Promote("production".into()), "alice", 720)],
        at(720),
    );
    assert_eq!(w.phase("production", "r-1"), Some(Phase::Promoted));
    assert!(d.replies[0].contains("production"), "{:?}", d.replies);
    let history = &w
        .promotions
        .iter()
        .find(|p| p.spec.stage == "production")
        .unwrap()
        .status
        .as_ref()
        .unwrap()
        .history;
    let promoted = history.iter().find(|h| h.event == "Promoted").unwrap();
    assert_eq!(promoted.actor, "alice");

    // Nothing changes on a quiet step: no writes.
    let quiet = w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(730));
    assert!(quiet.statuses.is_empty() && quiet.create.is_empty(), "{quiet:?}");
}

#[test]
fn a_failed_emulator_rejects_and_a_new_revision_supersedes() {
    let mut w = World::new();
    let (r1, r2) = (revision("r-1"), revision("r-2"));
    w.step(Some(&r1), Some(&emulator("r-1", false)), &[], at(0));
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Rejected));
    // r-2 arrives while r-1 is rejected; r-3 arrives while r-2 still waits: r-2 is superseded.
    w.step(Some(&r2), None, &[], at(5));
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::Verifying));
    let r3 = revision("r-3");
    w.step(Some(&r3), None, &[], at(6));
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::Superseded));
    assert_eq!(
        w.phase("preview", "r-1"),
        Some(Phase::Rejected),
        "a final phase stays"
    );
}

#[test]
fn hold_blocks_every_automatic_step_until_unhold() {
    let mut w = World::new();
    let r1 = revision("r-1");
    // The revision entering preview is held at once.
    let d = w.step(Some(&r1), None, &[given(Command::Hold, "bob", 0)], at(0));
    assert_eq!(
        d.replies,
        ["held 1 promotion(s): nothing automatic happens until /unhold"]
    );
    let d = w.step(Some(&r1), None, &[given(Command::Hold, "bob", 1)], at(1));
    assert_eq!(
        d.replies,
        ["already held: nothing automatic happens until /unhold"]
    );
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(2));
    assert_eq!(
        w.phase("preview", "r-1"),
        Some(Phase::AwaitingApproval),
        "held: not promoted"
    );
    let d = w.step(
        Some(&r1),
        Some(&emulator("r-1", true)),
        &[given(Command::Unhold, "bob", 3)],
        at(3),
    );
    assert_eq!(d.replies, ["released 1 promotion(s)"]);
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Promoted));
    let events = w.events("preview", "r-1");
    assert!(
        events.contains(&"Held".to_string()) && events.contains(&"Unheld".to_string()),
        "{events:?}"
    );
}

#[test]
fn a_rollback_puts_back_the_previous_revision_and_sticks() {
    let mut w = World::new();
    w.stages.truncate(1);
    let (r1, r2) = (revision("r-1"), revision("r-2"));
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(0));
    w.step(Some(&r2), Some(&emulator("r-2", true)), &[], at(10));
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Retired));
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::Promoted));
    let d = w.step(
        Some(&r2),
        Some(&emulator("r-2", true)),
        &[given(Command::Rollback("preview".into()), "alice", 20)],
        at(20),
    );
    assert_eq!(d.replies, ["preview rolled back from r-2 to r-1"]);
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::RolledBack));
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Promoted));
    // The App still says r-2: it is not promoted again automatically.
    let quiet = w.step(Some(&r2), Some(&emulator("r-2", true)), &[], at(30));
    assert!(quiet.create.is_empty() && quiet.statuses.is_empty(), "{quiet:?}");
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::RolledBack));
    // Nothing older to go back to.
    let d = w.step(
        Some(&r2),
        None,
        &[given(Command::Rollback("preview".into()), "alice", 40)],
        at(40),
    );
    assert_eq!(
        d.replies,
        ["nothing to roll back to: preview ran no revision before"]
    );
}

#[test]
fn approvals_are_recorded_append_only() {
    let mut w = World::new();
    w.stages = vec![stage(
        "production",
        true,
        Gates {
            approvals: Some(ApprovalGate {
                count: 1,
                eligible: None,
            }),
            ..Default::default()
        },
    )];
    let r1 = revision("r-1");
    let record = |login: &str, counted: &str| Approval {
        login: login.into(),
        source: Default::default(),
        url: None,
        at: at(1).to_string(),
        counted: Some(counted.into()),
    };
    w.approvals.insert(
        "notes-production-r-1".into(),
        ApprovalsFound {
            have: 0,
            records: vec![record("mallory", "not counted: you opened this pull request")],
        },
    );
    w.step(Some(&r1), None, &[], at(2));
    assert_eq!(w.phase("production", "r-1"), Some(Phase::AwaitingApproval));
    w.approvals.insert(
        "notes-production-r-1".into(),
        ApprovalsFound {
            have: 1,
            records: vec![record("alice", "counted")],
        },
    );
    w.step(Some(&r1), None, &[], at(3));
    assert_eq!(w.phase("production", "r-1"), Some(Phase::Promoted));
    let approvals = &w.promotions[0].status.as_ref().unwrap().approvals;
    let logins: Vec<&str> = approvals.iter().map(|a| a.login.as_str()).collect();
    assert_eq!(logins, ["mallory", "alice"], "the refused one stays on record");
}

#[test]
fn the_history_is_bounded_and_says_so() {
    let mut status = PromotionStatus::default();
    for i in 0..200 {
        push_history(&mut status, history(at(i), "GateWaiting", "operator", ""));
    }
    assert_eq!(status.history.len(), MAX_HISTORY);
    assert_eq!(status.history.last().unwrap().event, "HistoryFull");
}

#[test]
fn a_second_revision_opens_the_next_stage_after_the_first_ran_there() {
    let mut w = World::new();
    w.stages = vec![
        stage("preview", true, Gates::default()),
        stage(
            "production",
            true,
            Gates {
                slo: Some(SloGate {
                    observe: Some("preview".into()),
                    window: "1m".into(),
                    availability: Some("99.5".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ),
    ];
    let (r1, r2) = (revision("r-1"), revision("r-2"));
    w.step(Some(&r1), None, &[], at(0));
    w.slo.insert(
        "notes-production-r-1".into(),
        GateResult {
            name: "slo".into(),
            state: GateState::Passed,
            ..Default::default()
        },
    );
    w.step(Some(&r1), None, &[], at(1));
    assert_eq!(w.phase("production", "r-1"), Some(Phase::Promoted));
    let d = w.step(Some(&r2), None, &[], at(2));
    let created: Vec<_> = d
        .create
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(created, ["notes-preview-r-2", "notes-production-r-2"]);
    assert_eq!(w.phase("production", "r-2"), Some(Phase::Verifying));
}

#[test]
fn a_next_stage_whose_creation_was_lost_is_opened_again() {
    let mut w = World::new();
    w.stages.truncate(2);
    let r1 = revision("r-1");
    // The step that promotes preview opens staging; pretend that create failed.
    let d = w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(0));
    assert_eq!(d.create.len(), 2);
    w.promotions.retain(|p| p.spec.stage != "staging");
    let again = w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(1));
    let created: Vec<_> = again
        .create
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(created, ["notes-staging-r-1"]);
}

#[test]
fn a_soak_that_is_no_duration_never_passes() {
    let mut w = World::new();
    w.stages = vec![stage(
        "preview",
        true,
        Gates {
            soak: Some("99999999999999999999h".into()),
            ..Default::default()
        },
    )];
    let r1 = revision("r-1");
    w.step(Some(&r1), None, &[], at(0));
    w.step(Some(&r1), None, &[], at(1_000_000));
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Verifying));
}

#[test]
fn approvals_not_read_this_time_keep_what_the_gate_said() {
    let mut w = World::new();
    w.stages = vec![stage(
        "production",
        false,
        Gates {
            approvals: Some(ApprovalGate {
                count: 1,
                eligible: None,
            }),
            ..Default::default()
        },
    )];
    let r1 = revision("r-1");
    w.approvals.insert(
        "notes-production-r-1".into(),
        ApprovalsFound {
            have: 1,
            records: vec![],
        },
    );
    w.step(Some(&r1), None, &[], at(0));
    let gate = |w: &World| {
        w.promotions[0]
            .status
            .as_ref()
            .unwrap()
            .gates
            .iter()
            .find(|g| g.name == "approvals")
            .unwrap()
            .state
    };
    assert_eq!(gate(&w), GateState::Passed);
    // GitHub did not answer: no entry. The gate stays Passed.
    w.approvals.clear();
    let d = w.step(Some(&r1), None, &[], at(1));
    assert_eq!(gate(&w), GateState::Passed);
    assert!(d.statuses.is_empty(), "{d:?}");
}

fn from_comment(command: Command, by: &str, t: i64, comment: u64, rev: &str) -> Given {
    Given {
        comment: Some((comment, 1)),
        revision: Some(rev.into()),
        ..given(command, by, t)
    }
}

fn breach() -> GateResult {
    GateResult {
        name: "slo".into(),
        state: GateState::Failed,
        evidence: Some("error rate 12.5% > 0.5%".into()),
        ..Default::default()
    }
}

/// One stage, preview (auto, emulator), watched for 30m after a promotion.
fn watched_world() -> World {
    let mut w = World::new();
    w.stages.truncate(1);
    w.stages[0].rollback = Some(winky_crds::policy::RollbackSpec {
        on_slo_breach: true,
        watch: Some("30m".into()),
    });
    w
}

#[test]
fn every_command_is_recorded_once_with_its_comment_and_answer() {
    let mut w = World::new();
    let r1 = revision("r-1");
    w.step(Some(&r1), None, &[], at(0));
    let noted = Command::Noted {
        text: "/approve production".into(),
        outcome: "not counted: you opened this pull request".into(),
    };
    let d = w.step(
        Some(&r1),
        None,
        &[
            from_comment(noted, "dana", 5, 901, "r-1"),
            from_comment(Command::Promote("qa".into()), "alice", 6, 902, "r-1"),
        ],
        at(7),
    );
    assert_eq!(
        d.replies,
        [
            "not counted: you opened this pull request",
            "nothing done: the policy has no stage qa (its stages: preview, staging, production)"
        ]
    );
    let history = &w.promotions[0].status.as_ref().unwrap().history;
    let commands: Vec<_> = history.iter().filter(|h| h.event == COMMAND_EVENT).collect();
    assert_eq!(commands.len(), 2, "{history:?}");
    assert_eq!(commands[0].actor, "dana");
    assert_eq!(
        commands[0].message,
        "comment 901, line 1: /approve production — not counted: you opened this pull request"
    );
    assert_eq!(commands[1].at, at(6).to_string());
    assert_eq!(recorded_comments(&w.promotions), [901, 902].into_iter().collect());
}

#[test]
fn a_promote_never_moves_a_revision_that_came_after_it() {
    let mut w = World::new();
    w.stages[0].auto_promote = false;
    let (r1, r2) = (revision("r-1"), revision("r-2"));
    w.step(Some(&r1), None, &[], at(0));
    // r-2 supersedes r-1 at 20; a /promote written at 10 meant r-1.
    w.step(Some(&r2), Some(&emulator("r-2", true)), &[], at(20));
    let d = w.step(
        Some(&r2),
        Some(&emulator("r-2", true)),
        &[from_comment(
            Command::Promote("preview".into()),
            "alice",
            10,
            7,
            "r-1",
        )],
        at(30),
    );
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::AwaitingApproval));
    assert_eq!(d.replies, ["nothing done: no revision waits for preview"]);
    // Written after r-2 came, it promotes r-2.
    let d = w.step(
        Some(&r2),
        Some(&emulator("r-2", true)),
        &[from_comment(
            Command::Promote("preview".into()),
            "alice",
            40,
            8,
            "r-2",
        )],
        at(41),
    );
    assert_eq!(d.replies, ["promoted r-2 into preview"]);
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::Promoted));
}

#[test]
fn a_promote_whose_gates_do_not_hold_says_which_and_waits() {
    let mut w = World::new();
    w.stages[0].auto_promote = false;
    let r1 = revision("r-1");
    w.step(Some(&r1), None, &[], at(0));
    let d = w.step(
        Some(&r1),
        None,
        &[given(Command::Promote("preview".into()), "alice", 5)],
        at(5),
    );
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Verifying));
    assert!(
        d.replies[0].starts_with("not yet: r-1 enters preview when every gate holds; waiting for emulator ("),
        "{:?}",
        d.replies
    );
}

#[test]
fn a_rollback_read_twice_rolls_back_once() {
    let mut w = World::new();
    w.stages.truncate(1);
    let (r0, r1, r2) = (revision("r-0"), revision("r-1"), revision("r-2"));
    w.step(Some(&r0), Some(&emulator("r-0", true)), &[], at(0));
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(10));
    w.step(Some(&r2), Some(&emulator("r-2", true)), &[], at(20));
    let rollback = from_comment(Command::Rollback("preview".into()), "alice", 30, 11, "r-2");
    let d = w.step(Some(&r2), None, std::slice::from_ref(&rollback), at(31));
    assert_eq!(d.replies, ["preview rolled back from r-2 to r-1"]);
    assert_eq!(d.rollbacks.len(), 1);
    assert_eq!(d.rollbacks[0].from, "notes-preview-r-2");
    // The same comment again (its record lost): r-1 came back after the
    // comment was written, so it stays.
    let d = w.step(Some(&r2), None, &[rollback], at(32));
    assert_eq!(
        d.replies,
        ["nothing done: r-1 entered preview after this command was written"]
    );
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Promoted));
    assert_eq!(w.phase("preview", "r-0"), Some(Phase::Retired));
}

#[test]
fn a_breach_while_watched_rolls_back_once_and_sticks() {
    let mut w = watched_world();
    let (r1, r2) = (revision("r-1"), revision("r-2"));
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(0));
    w.step(Some(&r2), Some(&emulator("r-2", true)), &[], at(100));
    // Both were promoted; only the latest runs, and it is watched.
    let watched = watched(&w.stages, &w.promotions, at(160));
    assert_eq!(watched.len(), 1);
    assert_eq!(watched[0].name, "notes-preview-r-2");
    assert_eq!(watched[0].elapsed, Duration::from_secs(60));
    // Past the watch, nothing is watched.
    assert!(super::watched(&w.stages, &w.promotions, at(100 + 1800)).is_empty());

    w.watch.insert("notes-preview-r-2".into(), breach());
    let d = w.step(Some(&r2), Some(&emulator("r-2", true)), &[], at(170));
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::RolledBack));
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Promoted));
    assert_eq!(d.rollbacks.len(), 1);
    assert_eq!(d.rollbacks[0].by, "operator");
    assert!(
        d.rollbacks[0].why.contains("error rate 12.5%"),
        "{:?}",
        d.rollbacks
    );
    // Sticky, and the restored revision is not watched (no cascade).
    assert!(super::watched(&w.stages, &w.promotions, at(180)).is_empty());
    let quiet = w.step(Some(&r2), Some(&emulator("r-2", true)), &[], at(180));
    assert!(quiet.create.is_empty() && quiet.statuses.is_empty(), "{quiet:?}");
    // A person may promote it again.
    let d = w.step(
        Some(&r2),
        None,
        &[given(Command::Promote("preview".into()), "alice", 200)],
        at(200),
    );
    assert_eq!(d.replies, ["promoted r-2 into preview again after its rollback"]);
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::Promoted));
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Retired));
}

#[test]
fn a_breach_with_nothing_to_go_back_to_is_recorded_once() {
    let mut w = watched_world();
    let r1 = revision("r-1");
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(0));
    w.watch.insert("notes-preview-r-1".into(), breach());
    let d = w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(10));
    assert!(d.rollbacks.is_empty());
    assert_eq!(w.phase("preview", "r-1"), Some(Phase::Promoted));
    assert_eq!(
        w.events("preview", "r-1").last().map(String::as_str),
        Some("SLOBreached")
    );
    let again = w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(25));
    assert!(again.statuses.is_empty(), "{again:?}");
}

#[test]
fn a_hold_with_nothing_waiting_holds_what_comes_next() {
    let mut w = World::new();
    w.stages.truncate(1);
    let (r1, r2) = (revision("r-1"), revision("r-2"));
    w.step(Some(&r1), Some(&emulator("r-1", true)), &[], at(0));
    let d = w.step(Some(&r1), None, &[given(Command::Hold, "bob", 5)], at(5));
    assert_eq!(
        d.replies,
        ["held: nothing waits now, and nothing that comes moves on its own until /unhold"]
    );
    w.step(Some(&r2), Some(&emulator("r-2", true)), &[], at(10));
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::AwaitingApproval));
    w.step(
        Some(&r2),
        Some(&emulator("r-2", true)),
        &[given(Command::Unhold, "bob", 20)],
        at(20),
    );
    assert_eq!(w.phase("preview", "r-2"), Some(Phase::Promoted));
}

#[test]
fn a_promotion_whose_first_status_was_lost_is_recorded_late() {
    let mut w = World::new();
    let r1 = revision("r-1");
    w.step(Some(&r1), None, &[], at(0));
    // As if the operator stopped between the create and the status write.
    w.promotions[0].status = None;
    w.promotions[0].metadata = serde_json::from_value(serde_json::json!({
        "name": "notes-preview-r-1",
        "creationTimestamp": at(0).to_string(),
    }))
    .unwrap();
    let d = w.step(Some(&r1), None, &[], at(5));
    assert_eq!(d.statuses.len(), 1);
    let history = &w.promotions[0].status.as_ref().unwrap().history;
    assert_eq!(history[0].event, "Created");
    assert_eq!(history[0].at, at(0).to_string());
    assert!(history[0].message.contains("recorded late"), "{history:?}");
    // Once: the next decision writes nothing.
    let quiet = w.step(Some(&r1), None, &[], at(6));
    assert!(quiet.statuses.is_empty(), "{quiet:?}");
}

#[test]
fn old_snapshots_go_but_never_one_a_stage_runs_or_would_go_back_to() {
    let mut w = World::new();
    w.stages.truncate(1);
    let ids: Vec<String> = (0..14).map(|i| format!("r-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        w.step(
            Some(&revision(id)),
            Some(&emulator(id, true)),
            &[],
            at(i as i64 * 10),
        );
    }
    // r-13 runs, r-12 is the rollback target; r-0 is still being verified
    // in a stage of its own (as if a second stage held it).
    w.promotions[0].status.as_mut().unwrap().phase = Phase::Verifying;
    let snapshots: Vec<&str> = ids.iter().map(String::as_str).collect();
    let pruned = snapshots_to_prune(&snapshots, &w.promotions);
    assert_eq!(
        pruned,
        ["r-1", "r-2", "r-3"],
        "the 10 newest stay, and r-0 still moves"
    );
    // Fewer than the history: nothing goes.
    assert!(snapshots_to_prune(&snapshots[10..], &w.promotions).is_empty());
}
