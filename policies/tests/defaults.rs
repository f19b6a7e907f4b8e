//! The default policies in `policies/defaults/` parse as the API types,
//! compile, and their own tests pass.

use std::path::Path;

use winky_crds::{PromotionPolicy, Rule};
use winky_policies::eligibility::{Approver, Eligibility, PullRequest, Verdict};
use winky_policies::rules::RuleSet;

fn defaults() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/defaults"))
}

#[test]
fn every_default_rule_compiles_and_passes_its_tests() {
    let mut count = 0;
    for entry in std::fs::read_dir(defaults().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        let rule: Rule = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let set = RuleSet::compile(&rule.spec).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let summary = set.run_tests(&rule.spec.tests);
        assert!(summary.passed >= 3, "{}: a default needs tests", path.display());
        assert_eq!(summary.failed, 0, "{}: {:#?}", path.display(), summary.results);
        count += 1;
    }
    assert!(count >= 2);
}

#[test]
fn the_default_promotion_policy_compiles_and_never_counts_authors_or_agents() {
    let text = std::fs::read_to_string(defaults().join("promotion-policy.yaml")).unwrap();
    let policy: PromotionPolicy = serde_saphyr::from_str(&text).unwrap();
    let stages: Vec<&str> = policy.spec.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages, ["preview", "staging", "production"]);
    // serde skips unknown fields: check the file's spelling reached the types.
    let production = &policy.spec.stages[2];
    assert!(
        production.rollback.as_ref().is_some_and(|r| r.on_slo_breach),
        "rollback.onSLOBreach"
    );
    assert_eq!(
        production.gates.slo.as_ref().and_then(|s| s.observe.as_deref()),
        Some("staging")
    );
    let pattern = &policy.spec.agents.branch_pattern;
    assert_eq!(pattern, winky_crds::policy::DEFAULT_BRANCH_PATTERN);

    let approvers = vec!["alice".to_string(), "bob".to_string()];
    let pr = PullRequest {
        author: "alice",
        number: 42,
    };
    for stage in &policy.spec.stages {
        let Some(gate) = &stage.gates.approvals else {
            continue;
        };
        let eligibility = Eligibility::compile(gate.eligible.as_deref(), &stage.name).unwrap();
        let check = |login, is_agent| eligibility.check(&Approver { login, is_agent }, &pr, &approvers);
        assert_eq!(check("bob", false), Verdict::Counts, "{}", stage.name);
        assert_eq!(check("alice", false), Verdict::Author, "{}", stage.name);
        assert_eq!(
            check("ALICE", false),
            Verdict::Author,
            "logins are case-insensitive"
        );
        assert_eq!(check("winky-agent[bot]", true), Verdict::Agent, "{}", stage.name);
        assert_eq!(check("mallory", false), Verdict::NotEligible, "{}", stage.name);
    }
}
