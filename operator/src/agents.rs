//! Agents held to their branches, decided purely: who counts as an agent, whether
//! a commit may be applied (it came from a pull request a person merged),
//! and whether an agent's pull request stays inside its lane.
//!
//! The rules come from every PromotionPolicy's `spec.agents`: a login listed
//! by any policy is an agent, and an agent's branch must match the pattern of
//! every policy that lists it (the strictest wins).

use std::collections::BTreeSet;

use regex::Regex;
use winky_crds::PromotionPolicy;

use crate::github::{ChangedFile, MergedPull};

/// Paths an agent's pull request may never touch: the policies that judge it
/// and the workflows that check it.
pub const PROTECTED_PATHS: [&str; 2] = ["policies/", ".github/"];
/// Kinds an agent's pull request may never add, change or remove.
pub const PROTECTED_KINDS: [&str; 2] = ["PromotionPolicy", "GitSource"];
/// An agent's pull request with more files than this is not checked file by
/// file: it is refused (GitHub's list is paged; an agent's change is small).
pub const MAX_FILES: usize = 99;

/// The agents and their branch patterns.
#[derive(Debug, Default)]
pub struct AgentRules {
    /// Lower-cased logins.
    logins: BTreeSet<String>,
    /// `(policy, its agents' lower-cased logins, branch pattern)`.
    patterns: Vec<(String, BTreeSet<String>, Result<Regex, String>)>,
}

impl AgentRules {
    /// The rules of `policies`.
    pub fn of<'a>(policies: impl IntoIterator<Item = &'a PromotionPolicy>) -> Self {
        let mut rules = AgentRules::default();
        for policy in policies {
            let logins: BTreeSet<String> = policy
                .spec
                .agents
                .logins
                .iter()
                .map(|l| l.to_lowercase())
                .collect();
            rules.logins.extend(logins.iter().cloned());
            let pattern = Regex::new(&policy.spec.agents.branch_pattern).map_err(|e| e.to_string());
            let name = policy.metadata.name.clone().unwrap_or_default();
            rules.patterns.push((name, logins, pattern));
        }
        rules
    }

    /// Whether `login` is an agent (case-insensitive, as GitHub logins are).
    pub fn is_agent(&self, login: &str) -> bool {
        self.logins.contains(&login.to_lowercase())
    }
}

/// Why a commit may not be applied: a condition reason and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// Whether `commit` may be applied, given the pull request that merged it.
pub fn provenance(commit: &str, merged: Option<&MergedPull>, rules: &AgentRules) -> Result<(), Refusal> {
    let short = &commit[..commit.len().min(12)];
    let Some(pull) = merged else {
        return Err(Refusal {
            reason: "NotMerged",
            message: format!(
                "commit {short} did not come from a merged pull request: a commit pushed straight \
                 to the branch is never applied"
            ),
        });
    };
    match pull.merged_by.as_deref() {
        None => Err(Refusal {
            reason: "NotMerged",
            message: format!("GitHub does not say who merged pull request #{}", pull.number),
        }),
        Some(login) if rules.is_agent(login) => Err(Refusal {
            reason: "MergedByAgent",
            message: format!(
                "pull request #{} was merged by the agent {login}: only people merge, agents propose",
                pull.number
            ),
        }),
        Some(_) => Ok(()),
    }
}

/// What the policy needs to know of a pull request.
#[derive(Clone, Debug)]
pub struct PullFacts<'a> {
    /// Who opened it.
    pub author: &'a str,
    /// Its head branch.
    pub head_ref: &'a str,
    /// The branch it wants to merge into.
    pub base_ref: &'a str,
}

/// What is wrong with an agent's pull request (empty: nothing). A person's
/// pull request is not the agents' policy's business: always empty.
pub fn check_pull(
    pull: &PullFacts<'_>,
    files: &[ChangedFile],
    rules: &AgentRules,
    protected_branch: &str,
) -> Vec<String> {
    if !rules.is_agent(pull.author) {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let author = pull.author.to_lowercase();
    for (policy, logins, pattern) in &rules.patterns {
        if !logins.contains(&author) {
            continue;
        }
        match pattern {
            Ok(regex) if regex.is_match(pull.head_ref) => {}
            Ok(regex) => problems.push(format!(
                "branch {} does not match the agents' branch pattern {} of PromotionPolicy {policy}",
                pull.head_ref,
                regex.as_str()
            )),
            Err(e) => problems.push(format!(
                "the branch pattern of PromotionPolicy {policy} is not a valid regular expression ({e}): nothing can match it"
            )),
        }
    }
    if pull.base_ref != protected_branch {
        problems.push(format!(
            "it targets {}, not the protected branch {protected_branch}",
            pull.base_ref
        ));
    }
    if files.len() > MAX_FILES {
        problems.push(format!(
            "it changes more than {MAX_FILES} files, more than an agent's change may"
        ));
    }
    for file in files {
        let paths = std::iter::once(file.filename.as_str()).chain(file.previous_filename.as_deref());
        for path in paths {
            if let Some(prefix) = PROTECTED_PATHS.iter().find(|p| path.starts_with(**p)) {
                problems.push(format!(
                    "it touches {path}: nothing under {prefix} is an agent's to change"
                ));
            }
        }
        if let Some(kind) = protected_kind(file) {
            problems.push(format!(
                "{} changes a {kind}: agents never change their own rules or sources",
                file.filename
            ));
        }
    }
    problems.dedup();
    problems
}

/// The protected kind an added or removed line of the file's diff declares.
fn protected_kind(file: &ChangedFile) -> Option<&'static str> {
    let patch = file.patch.as_deref()?;
    patch
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-')) && !l.starts_with("+++") && !l.starts_with("---")
        })
        .find_map(|l| {
            let line = l[1..].trim();
            let kind = line.strip_prefix("kind:")?.trim().trim_matches(['"', '\'']);
            PROTECTED_KINDS.iter().find(|k| **k == kind).copied()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AgentRules {
        let policy: PromotionPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "PromotionPolicy",
            "metadata": {"name": "default"},
            "spec": {
                "agents": {"logins": ["winky-agent[bot]"], "branchPattern": "^winky/(feat|fix)-[a-z0-9-]+-[0-9a-f]{6,}$"},
                "approvers": {"logins": ["alice"]},
                "stages": [{"name": "preview", "gates": {"emulator": true}}],
            },
        }))
        .unwrap();
        AgentRules::of([&policy])
    }

    fn file(name: &str, patch: Option<&str>) -> ChangedFile {
        ChangedFile {
            filename: name.into(),
            status: "modified".into(),
            previous_filename: None,
            patch: patch.map(str::to_string),
        }
    }

    fn pull(author: &'static str, head: &'static str) -> PullFacts<'static> {
        PullFacts {
            author,
            head_ref: head,
            base_ref: "main",
        }
    }

    #[test]
    fn only_commits_a_person_merged_may_be_applied() {
        let rules = rules();
        let merged = |by: Option<&str>| MergedPull {
            number: 7,
            author: "winky-agent[bot]".into(),
            merged_by: by.map(str::to_string),
            url: None,
        };
        assert_eq!(provenance("abc", Some(&merged(Some("alice"))), &rules), Ok(()));
        assert_eq!(provenance("abc", None, &rules).unwrap_err().reason, "NotMerged");
        let by_agent = provenance("abc", Some(&merged(Some("Winky-Agent[bot]"))), &rules).unwrap_err();
        assert_eq!(by_agent.reason, "MergedByAgent");
        assert!(by_agent.message.contains("#7"), "{}", by_agent.message);
        assert_eq!(
            provenance("abc", Some(&merged(None)), &rules).unwrap_err().reason,
            "NotMerged"
        );
    }

    #[test]
    fn an_agents_pull_request_stays_on_its_branch_and_off_the_rules() {
        let rules = rules();
        let ok = pull("winky-agent[bot]", "winky/feat-notes-tags-a1b2c3d4");
        assert!(
            check_pull(
                &ok,
                &[file("deploy/notes/app.yaml", Some("+  replicas: 3"))],
                &rules,
                "main"
            )
            .is_empty()
        );

        let off_branch = check_pull(&pull("winky-agent[bot]", "feature/tags"), &[], &rules, "main");
        assert_eq!(off_branch.len(), 1);
        assert!(off_branch[0].contains("does not match"), "{off_branch:?}");

        let base = PullFacts {
            base_ref: "release",
            ..ok.clone()
        };
        assert!(check_pull(&base, &[], &rules, "main")[0].contains("not the protected branch main"));

        let policies = check_pull(
            &ok,
            &[file("policies/defaults/promotion-policy.yaml", None)],
            &rules,
            "main",
        );
        assert!(policies[0].contains("nothing under policies/"), "{policies:?}");
        let workflow = check_pull(&ok, &[file(".github/workflows/ci.yml", None)], &rules, "main");
        assert!(workflow[0].contains(".github/"), "{workflow:?}");
        let sneaky = check_pull(
            &ok,
            &[file(
                "deploy/x.yaml",
                Some(
                    "@@ -0,0 +1,3 @@\n+apiVersion: winky.dev/v1alpha1\n+kind: PromotionPolicy\n+metadata: {name: lax}",
                ),
            )],
            &rules,
            "main",
        );
        assert!(sneaky[0].contains("changes a PromotionPolicy"), "{sneaky:?}");
        let removal = check_pull(
            &ok,
            &[file("deploy/src.yaml", Some("-kind: \"GitSource\""))],
            &rules,
            "main",
        );
        assert!(removal[0].contains("GitSource"), "{removal:?}");
        let context_only = check_pull(
            &ok,
            &[file("deploy/x.yaml", Some(" kind: GitSource\n+  replicas: 2"))],
            &rules,
            "main",
        );
        assert!(
            context_only.is_empty(),
            "an unchanged context line is not a change: {context_only:?}"
        );
    }

    #[test]
    fn a_persons_pull_request_is_not_the_agents_policys_business() {
        let problems = check_pull(
            &pull("alice", "anything"),
            &[file("policies/x.yaml", None)],
            &rules(),
            "main",
        );
        assert!(problems.is_empty());
    }
}
