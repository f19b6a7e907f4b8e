//! `winky propose`: redact → plan → generate → check → preview → branch,
//! commit, push, pull request → audit, each step visible as it happens.
//!
//! Every refusal happens before the first side effect: a dirty tree, a branch
//! outside the pattern, a missing token or a branch that already exists on the
//! remote stop the run before anything is committed or pushed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::audit::{AuditLog, Outcome};
use crate::branch::{BranchName, ChangeType};
use crate::check::{self, Checks};
use crate::generate::{self, Generated};
use crate::git::{Credentials, GitError, Repo};
use crate::github::{self, BodySections, GitHub, GitHubConfig, OpenedPullRequest};
use crate::plan::Plan;
use crate::planner::{PlanRequest, Planner};
use crate::preview;
use crate::redact::{Finding, Redactor};

/// Everything `winky propose` was asked to do.
pub struct ProposeOptions {
    pub prompt: String,
    pub repo: PathBuf,
    pub change: ChangeType,
    pub seed: u64,
    /// A branch name given by hand; it must match the pattern.
    pub branch: Option<String>,
    pub dry_run: bool,
    pub remote: String,
    pub planner: Box<dyn Planner>,
    /// A cluster to dry-run the manifests against.
    pub kube: Option<kube::Client>,
    /// Where to open the pull request; required unless `dry_run`.
    pub github: Option<GitHubConfig>,
    pub git_credentials: Credentials,
    pub generate: generate::Options,
    pub audit_log: PathBuf,
    pub actor: String,
}

impl std::fmt::Debug for ProposeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The prompt is not printed: it has not been redacted yet.
        f.debug_struct("ProposeOptions")
            .field("repo", &self.repo)
            .field("change", &self.change)
            .field("seed", &self.seed)
            .field("dry_run", &self.dry_run)
            .field("planner", &self.planner.name())
            .finish_non_exhaustive()
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Proposal {
    pub redactions: Vec<Finding>,
    pub plan: Plan,
    pub branch: BranchName,
    pub files: BTreeMap<String, String>,
    pub checks: Checks,
    pub commit: Option<String>,
    pub pull_request: Option<OpenedPullRequest>,
    pub audit_records: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("{0}")]
    Refused(String),
    #[error("checks failed, nothing was committed:\n{0}")]
    ChecksFailed(Checks),
    #[error("{0}")]
    Failed(String),
}

const STEPS: usize = 7;

/// Progress on stderr: `[n/7] step   message`.
struct Progress {
    started: Instant,
}

impl Progress {
    fn step(&self, n: usize, name: &str, message: &str) {
        let elapsed = self.started.elapsed().as_secs_f32();
        eprintln!("[{n}/{STEPS}] {name:<9} {message}  ({elapsed:.1}s)");
    }
    fn detail(&self, text: &str) {
        for line in text.lines() {
            eprintln!("          {line}");
        }
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `feat(notes): a notes app with email login, …`, at most 72 characters.
pub fn commit_subject(change: ChangeType, app: &str, prompt: &str) -> String {
    let prefix = format!("{change}({app}): ");
    let first_line = prompt
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("update");
    let mut subject = first_line.trim_end_matches(['.', '!', ' ']).to_string();
    if let Some(first) = subject.chars().next() {
        subject = first.to_lowercase().collect::<String>() + &subject[first.len_utf8()..];
    }
    let budget = 72 - prefix.chars().count();
    if subject.chars().count() > budget {
        let cut: String = subject.chars().take(budget - 1).collect();
        let mut cut = cut
            .rsplit_once(' ')
            .map_or(cut.as_str(), |(head, _)| head)
            .trim_end_matches([',', ';', ':']);
        for dangling in [" and", " or", " with", ","] {
            cut = cut.strip_suffix(dangling).unwrap_or(cut);
        }
        subject = format!("{cut}…");
    }
    format!("{prefix}{subject}")
}

fn redaction_summary(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "nothing secret-shaped was found in the prompt".into();
    }
    let items: Vec<String> = findings.iter().map(ToString::to_string).collect();
    format!(
        "{} removed from the prompt before planning: {}",
        findings.len(),
        items.join("; ")
    )
}

pub async fn propose(options: ProposeOptions) -> Result<Proposal, ProposeError> {
    let progress = Progress {
        started: Instant::now(),
    };

    // 1. Redact, before anything else sees the prompt.
    let redacted = Redactor::builtin().redact(&options.prompt);
    let prompt = redacted.text;
    progress.step(1, "redact", &redaction_summary(&redacted.findings));

    let repo = Repo::open(&options.repo).map_err(|e| ProposeError::Refused(e.to_string()))?;
    let repo_url = repo
        .remote_url(&options.remote)
        .unwrap_or_else(|_| repo.workdir().display().to_string());
    let mut audit = AuditLog::new(
        &options.audit_log,
        &options.actor,
        &repo_url,
        &sha256_hex(&prompt),
    );
    let record = |audit: &mut AuditLog, action: &str, outcome: Outcome, detail: Option<&str>| {
        audit.record(action, outcome, detail).map_err(|e| {
            ProposeError::Failed(format!(
                "cannot write the audit log {}: {e}",
                audit.path().display()
            ))
        })
    };
    let detail = format!(
        "{} finding(s): {}",
        redacted.findings.len(),
        redaction_summary(&redacted.findings)
    );
    record(&mut audit, "redact", Outcome::Ok, Some(&detail))?;

    let branch = match &options.branch {
        Some(name) => BranchName::parse(name),
        None => Ok(BranchName::for_prompt(&prompt, options.change, options.seed)),
    };
    let refusal = match (&branch, repo.ensure_clean()) {
        (Err(invalid), _) => Some(invalid.to_string()),
        (_, Err(dirty)) => Some(dirty.to_string()),
        // Before the planner runs: a provider call is not free.
        _ if !options.dry_run && options.github.is_none() => Some(github::GitHubError::NoToken.to_string()),
        _ => None,
    };
    if let Some(reason) = refusal {
        record(&mut audit, "refuse", Outcome::Refused, Some(&reason))?;
        return Err(ProposeError::Refused(reason));
    }
    let branch = branch.expect("checked above");
    audit.branch = Some(branch.to_string());

    // 2. Plan.
    let plan = options
        .planner
        .plan(&PlanRequest {
            prompt: prompt.clone(),
            seed: options.seed,
        })
        .await
        .map_err(|e| ProposeError::Failed(e.to_string()));
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            record(&mut audit, "plan", Outcome::Failed, Some(&e.to_string()))?;
            return Err(e);
        }
    };
    progress.step(2, "plan", &format!("{} planner", options.planner.name()));
    progress.detail(&plan.to_string());
    record(
        &mut audit,
        "plan",
        Outcome::Ok,
        Some(&format!("{} planner, app {}", options.planner.name(), plan.app)),
    )?;

    // 3. Generate.
    let generated: Generated = generate::generate(&plan, &options.generate);
    progress.step(
        3,
        "generate",
        &format!(
            "{} files: App, {} Function(s), Rule with {} tests, README",
            generated.files.len(),
            generated.functions.len(),
            generated.rule.spec.tests.len()
        ),
    );
    record(
        &mut audit,
        "generate",
        Outcome::Ok,
        Some(&format!("{} files", generated.files.len())),
    )?;

    // 4. Check in the sandbox first.
    let mut checks = Checks {
        checks: vec![check::rule_tests(&generated)],
    };
    match &options.kube {
        Some(client) => checks
            .checks
            .extend(check::server_dry_run(client, &generated).await),
        None => {
            progress.detail("no kubeconfig: the server-side dry run is skipped (pass --kubeconfig to run it)")
        }
    }
    progress.step(
        4,
        "check",
        if checks.passed() {
            "all checks passed"
        } else {
            "a check FAILED"
        },
    );
    progress.detail(&checks.to_string());
    let summary = format!(
        "{} checks, {} failed",
        checks.checks.len(),
        checks.checks.iter().filter(|c| !c.passed).count()
    );
    if !checks.passed() {
        record(&mut audit, "check", Outcome::Failed, Some(&summary))?;
        return Err(ProposeError::ChecksFailed(checks));
    }
    record(&mut audit, "check", Outcome::Ok, Some(&summary))?;

    // 5. Preview against the base the pull request will target.
    let gh = match &options.github {
        Some(config) => Some(GitHub::new(config).map_err(|e| ProposeError::Failed(e.to_string()))?),
        None => None, // only with --dry-run: refused above otherwise
    };
    let default_branch = match &gh {
        Some(gh) => gh
            .default_branch()
            .await
            .map_err(|e| ProposeError::Failed(e.to_string()))?,
        None => repo
            .remote_default_branch(&options.remote)
            .or_else(|| repo.current_branch())
            .unwrap_or_else(|| "main".into()),
    };
    let base = repo
        .base_commit(&options.remote, &default_branch)
        .map_err(|e| ProposeError::Failed(e.to_string()))?;
    let existing = repo
        .read_files(base, generated.files.keys())
        .map_err(|e| ProposeError::Failed(e.to_string()))?;
    let changes = preview::changes(&generated.files, &existing);
    progress.step(
        5,
        "preview",
        &format!("against {default_branch} ({})", &base.to_string()[..8]),
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", preview::tree(&changes));
    let _ = write!(out, "{}", preview::diff(&generated.files, &existing));
    let _ = out.flush();
    drop(out);

    let mut proposal = Proposal {
        redactions: redacted.findings.clone(),
        plan,
        branch: branch.clone(),
        files: generated.files.clone(),
        checks,
        commit: None,
        pull_request: None,
        audit_records: 0,
    };
    if options.dry_run {
        record(
            &mut audit,
            "preview",
            Outcome::Ok,
            Some("--dry-run: stopped before committing"),
        )?;
        progress.step(
            6,
            "publish",
            &format!("skipped (--dry-run); the branch would be {branch}"),
        );
        progress.step(
            7,
            "audit",
            &format!("{} records in {}", audit.written(), audit.path().display()),
        );
        proposal.audit_records = audit.written();
        return Ok(proposal);
    }
    let gh = gh.expect("a GitHub client exists unless --dry-run");

    // 6. Branch, commit, push, pull request — each refusal before its side effect.
    match repo.ensure_pushable(
        &options.remote,
        &branch,
        &default_branch,
        &options.git_credentials,
    ) {
        Ok(()) => {}
        Err(e @ (GitError::BranchExists { .. } | GitError::DefaultBranch { .. })) => {
            let reason = e.to_string();
            record(&mut audit, "refuse", Outcome::Refused, Some(&reason))?;
            return Err(ProposeError::Refused(reason));
        }
        Err(e) => return Err(ProposeError::Failed(e.to_string())),
    }
    let subject = commit_subject(options.change, &proposal.plan.app, &prompt);
    let message = format!(
        "{subject}\n\n{}\n{}\nProposed-by: {}\nPrompt-SHA256: {}\n",
        proposal.plan, proposal.checks, options.actor, audit.prompt_sha256
    );
    let commit = match repo.commit(base, &branch, &generated.files, &message) {
        Ok(commit) => commit.to_string(),
        Err(e) => {
            record(&mut audit, "commit", Outcome::Failed, Some(&e.to_string()))?;
            return Err(ProposeError::Failed(e.to_string()));
        }
    };
    audit.commit = Some(commit.clone());
    record(&mut audit, "commit", Outcome::Ok, Some(&subject))?;
    if let Err(e) = repo.push(&options.remote, &branch, &options.git_credentials) {
        record(&mut audit, "push", Outcome::Failed, Some(&e.to_string()))?;
        return Err(ProposeError::Failed(e.to_string()));
    }
    record(
        &mut audit,
        "push",
        Outcome::Ok,
        Some(&format!("{branch} to {repo_url}")),
    )?;

    let template = github::TEMPLATE_PATHS
        .iter()
        .find_map(|path| repo.read_file(base, path));
    let body = github::render_body(
        template.as_deref(),
        &BodySections {
            summary: format!(
                "{}\n\nAsked (redacted): \n\n> {}",
                proposal.plan.summary,
                prompt.replace('\n', "\n> ")
            ),
            plan: format!("```text\n{}```", proposal.plan),
            checks: proposal.checks.markdown(),
            redactions: redaction_summary(&proposal.redactions),
        },
    );
    let pull = match gh.open_draft(&branch, &default_branch, &subject, &body).await {
        Ok(pull) => pull,
        Err(e) => {
            record(&mut audit, "pull-request", Outcome::Failed, Some(&e.to_string()))?;
            return Err(ProposeError::Failed(e.to_string()));
        }
    };
    audit.pull_request = Some(pull.number);
    record(&mut audit, "pull-request", Outcome::Ok, Some(&pull.url))?;
    progress.step(
        6,
        "publish",
        &format!(
            "{branch} @ {} pushed; draft pull request #{} {}",
            &commit[..8],
            pull.number,
            pull.url
        ),
    );
    progress.step(
        7,
        "audit",
        &format!("{} records in {}", audit.written(), audit.path().display()),
    );
    proposal.commit = Some(commit);
    proposal.pull_request = Some(pull);
    proposal.audit_records = audit.written();
    Ok(proposal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_subjects_are_conventional_and_short() {
        assert_eq!(
            commit_subject(
                ChangeType::Feat,
                "notes",
                "A notes app with email login, markdown editor, tags, and images."
            ),
            "feat(notes): a notes app with email login, markdown editor, tags…"
        );
        assert_eq!(
            commit_subject(ChangeType::Feat, "chat", "Chat app with rooms."),
            "feat(chat): chat app with rooms"
        );
        let long = commit_subject(
            ChangeType::Feat,
            "shop",
            &"products and carts and orders ".repeat(5),
        );
        assert!(long.chars().count() <= 72, "{long}");
        assert!(long.ends_with('…'), "{long}");
        assert_eq!(commit_subject(ChangeType::Fix, "x", "\n\n"), "fix(x): update");
    }
}
