//! The `EmulatorReport`: what `winky emulate --output json` prints and what
//! the operator summarizes into an App's status.
//!
//! ```json
//! {"app": "notes", "revision": "r-3f9a2c1d0e", "passed": true, "durationMs": 812,
//!  "checks": [{"name": "notes-data/notes: the owner reads", "kind": "rule-test",
//!              "passed": true, "durationMs": 0, "message": "allow, as expected", "logs": ""}]}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use winky_crds::app::{EmulatorSummary, FailedCheck, MAX_FAILED_CHECK_MESSAGE, MAX_FAILED_CHECKS};

/// The kinds of check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// One test case of a Rule.
    RuleTest,
    /// One test case of a Function, run in a container.
    Function,
    /// The App's container starts and answers its health probe.
    AppHealth,
    /// A manifest parses and its object holds to the CRD's schema and CEL
    /// rules, checked offline as the apiserver would.
    Validation,
    /// The apiserver accepts the object in a server-side dry run.
    DryRun,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RuleTest => "rule-test",
            Self::Function => "function",
            Self::AppHealth => "app-health",
            Self::Validation => "validation",
            Self::DryRun => "dry-run",
        }
    }
}

/// One check and its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub passed: bool,
    pub duration_ms: u64,
    /// What happened, for a person.
    pub message: String,
    /// What the checked code printed: capped and redacted.
    #[serde(default)]
    pub logs: String,
}

impl Check {
    /// A check that began at `started` and ends now; `logs` are redacted and
    /// capped here, so no check can keep them whole.
    pub fn finished(
        name: String,
        kind: CheckKind,
        started: std::time::Instant,
        passed: bool,
        message: String,
        logs: &str,
    ) -> Self {
        Self {
            name,
            kind,
            passed,
            duration_ms: started.elapsed().as_millis() as u64,
            message,
            logs: cap_logs(logs),
        }
    }
}

/// Every check of one revision of one App.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmulatorReport {
    pub app: String,
    pub revision: String,
    pub passed: bool,
    pub duration_ms: u64,
    pub checks: Vec<Check>,
}

impl EmulatorReport {
    pub fn new(app: &str, revision: &str, checks: Vec<Check>, duration_ms: u64) -> Self {
        Self {
            app: app.into(),
            revision: revision.into(),
            passed: checks.iter().all(|c| c.passed),
            duration_ms,
            checks,
        }
    }

    /// Adds checks; the report passes only if they pass too.
    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
        self.passed = self.checks.iter().all(|c| c.passed);
    }

    /// What an App's status keeps of the report: counts, and the first
    /// [`MAX_FAILED_CHECKS`] failed checks with their messages redacted and
    /// cut to [`MAX_FAILED_CHECK_MESSAGE`] characters (the status is read by
    /// everyone who may read the App, and an object is bounded in size).
    pub fn summary(&self) -> EmulatorSummary {
        let mut by_kind: BTreeMap<String, i32> = BTreeMap::new();
        for check in &self.checks {
            *by_kind.entry(check.kind.as_str().to_string()).or_default() += 1;
        }
        let failed: Vec<&Check> = self.checks.iter().filter(|c| !c.passed).collect();
        let failed_checks = failed
            .iter()
            .take(MAX_FAILED_CHECKS)
            .map(|c| FailedCheck {
                name: c.name.clone(),
                kind: c.kind.as_str().to_string(),
                message: cut_chars(
                    &winky_redact::Redactor::builtin().redact(&c.message).text,
                    MAX_FAILED_CHECK_MESSAGE,
                ),
            })
            .collect();
        EmulatorSummary {
            revision: self.revision.clone(),
            passed: self.passed,
            checks: self.checks.len() as i32,
            failed: failed.len() as i32,
            by_kind,
            failed_checks,
            failed_checks_omitted: failed.len().saturating_sub(MAX_FAILED_CHECKS) as i32,
            ..EmulatorSummary::default()
        }
    }
}

impl fmt::Display for EmulatorReport {
    /// A table for the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<6} {:<10} {:>7}  CHECK", "RESULT", "KIND", "MS")?;
        for check in &self.checks {
            let result = if check.passed { "pass" } else { "FAIL" };
            writeln!(
                f,
                "{result:<6} {:<10} {:>7}  {}",
                check.kind.as_str(),
                check.duration_ms,
                check.name
            )?;
            if !check.passed {
                for line in check.message.lines() {
                    writeln!(f, "{:27}{line}", "")?;
                }
                for line in check.logs.lines().take(10) {
                    writeln!(f, "{:27}| {line}", "")?;
                }
            }
        }
        let failed = self.checks.iter().filter(|c| !c.passed).count();
        let what = if self.app.is_empty() {
            "no App in the manifests".to_string()
        } else if self.revision.is_empty() {
            format!("app {} (no App in the manifests)", self.app)
        } else {
            format!("app {} revision {}", self.app, self.revision)
        };
        write!(
            f,
            "{what}: {} checks, {failed} failed, {} ms",
            self.checks.len(),
            self.duration_ms
        )
    }
}

/// At most `max` characters of `text`: cut ones end in `…` (counted).
fn cut_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Most bytes of a check's logs kept in a report.
pub const MAX_LOG_BYTES: usize = 4096;
/// Bytes before the kept tail that are redacted too (see [`cap_logs`]).
const REDACTION_MARGIN: usize = 8192;

/// Logs as a report keeps them: redacted, then cut to [`MAX_LOG_BYTES`] at a
/// character boundary (the end is kept: that is where the failure is).
pub fn cap_logs(text: &str) -> String {
    // Only the tail is kept, so only the tail is redacted — with a margin in
    // front, so that a secret across the first cut (a PEM key is under 8 KiB)
    // is seen whole, redacted, and then cut away with the margin.
    let mut window = text.len().saturating_sub(MAX_LOG_BYTES + REDACTION_MARGIN);
    while !text.is_char_boundary(window) {
        window += 1;
    }
    let redacted = winky_redact::Redactor::builtin().redact(&text[window..]).text;
    if redacted.len() <= MAX_LOG_BYTES {
        return redacted;
    }
    let mut start = redacted.len() - MAX_LOG_BYTES;
    while !redacted.is_char_boundary(start) {
        start += 1;
    }
    format!("[… earlier output cut]\n{}", &redacted[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_the_contract_fields() {
        let report = EmulatorReport::new(
            "notes",
            "r-0123456789",
            vec![Check {
                name: "n".into(),
                kind: CheckKind::AppHealth,
                passed: false,
                duration_ms: 3,
                message: "m".into(),
                logs: "l".into(),
            }],
            5,
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["app"], "notes");
        assert_eq!(json["revision"], "r-0123456789");
        assert_eq!(json["passed"], false);
        let check = &json["checks"][0];
        for key in ["name", "kind", "passed", "durationMs", "message", "logs"] {
            assert!(check.get(key).is_some(), "{key}");
        }
        assert_eq!(check["kind"], "app-health");
        let summary = report.summary();
        assert_eq!(
            (summary.checks, summary.failed, summary.by_kind["app-health"]),
            (1, 1, 1)
        );
    }

    fn check(name: &str, passed: bool, message: &str) -> Check {
        Check {
            name: name.into(),
            kind: CheckKind::Function,
            passed,
            duration_ms: 1,
            message: message.into(),
            logs: String::new(),
        }
    }

    #[test]
    fn the_summary_names_the_failed_checks_bounded_and_redacted() {
        let mut checks = vec![check("ok/case", true, "exited with 0")];
        checks.push(check(
            "fn/leaks",
            false,
            "exited with 1: password=S3cr3t-Pa55word! was refused",
        ));
        checks.push(check("fn/long", false, &"é".repeat(1000)));
        for i in 0..12 {
            checks.push(check(&format!("fn/case-{i}"), false, "exited with 2"));
        }
        let summary = EmulatorReport::new("a", "r-1", checks, 9).summary();
        assert_eq!((summary.checks, summary.failed), (15, 14));
        assert_eq!(summary.failed_checks.len(), MAX_FAILED_CHECKS);
        assert_eq!(summary.failed_checks_omitted, 4);
        assert_eq!(summary.failed_checks[0].name, "fn/leaks");
        assert_eq!(summary.failed_checks[0].kind, "function");
        assert!(
            summary.failed_checks[0].message.starts_with("exited with 1: ")
                && !summary.failed_checks[0].message.contains("S3cr3t"),
            "{:?}",
            summary.failed_checks[0]
        );
        let long = &summary.failed_checks[1].message;
        assert_eq!(long.chars().count(), MAX_FAILED_CHECK_MESSAGE);
        assert!(long.ends_with('…'));
        assert_eq!(summary.failed_checks[2].name, "fn/case-0");
        assert!(summary.failed_checks.iter().all(|c| c.name != "ok/case"));

        let passed = EmulatorReport::new("a", "r-1", vec![check("ok/case", true, "")], 1).summary();
        assert!(passed.failed_checks.is_empty() && passed.failed_checks_omitted == 0);
        let json = serde_json::to_value(&passed).unwrap();
        assert!(json.get("failedChecks").is_none() && json.get("failedChecksOmitted").is_none());
    }

    #[test]
    fn logs_are_redacted_and_capped_at_the_end() {
        let text = format!(
            "{}\ntoken ghp_R2d9Xq7LmP4sT8vW1yZ3bN6cF0hJ5kA9eG2u\nthe end",
            "x".repeat(10_000)
        );
        let capped = cap_logs(&text);
        assert!(capped.len() < MAX_LOG_BYTES + 40);
        assert!(capped.ends_with("the end"));
        assert!(!capped.contains("ghp_R2d9"), "{capped}");
        assert!(capped.starts_with("[… earlier output cut]\n"));
        assert_eq!(cap_logs("short"), "short");
    }

    #[test]
    fn a_secret_across_the_cut_is_redacted_before_it_is_cut() {
        // The kept tail starts in the middle of the password.
        let tail = "y".repeat(MAX_LOG_BYTES - 8);
        let text = format!("{}\npassword=S3cr3t-Pa55word!\n{tail}", "x".repeat(2 << 20));
        let capped = cap_logs(&text);
        assert!(capped.ends_with(&tail));
        for fragment in ["Pa55", "55wo", "word!", "S3cr3t"] {
            assert!(
                !capped.contains(fragment),
                "{fragment} survived: {}",
                &capped[..80]
            );
        }
    }
}
