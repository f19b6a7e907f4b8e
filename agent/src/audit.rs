//! The audit log: one JSON line per action, appended, never rewritten.
//!
//! A record names the time, the actor, the action and its outcome, the
//! repository, branch, commit and pull request when there are any, and the
//! SHA-256 of the redacted prompt — never the prompt, never a secret.
//! `detail` is one of winky's own messages, passed through the redactor once
//! more before it is written.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::redact::Redactor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Refused,
    Failed,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record<'a> {
    pub time: String,
    pub actor: &'a str,
    pub action: &'a str,
    pub outcome: Outcome,
    pub repo: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
    pub prompt_sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Context shared by every record of one `winky propose`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    pub actor: String,
    pub repo: String,
    pub prompt_sha256: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub pull_request: Option<u64>,
    written: usize,
}

/// `$WINKY_AUDIT_LOG`, else `$XDG_STATE_HOME/winky/audit.jsonl`, else `~/.local/state/winky/audit.jsonl`.
pub fn default_path() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(state).join("winky/audit.jsonl");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/winky/audit.jsonl")
}

impl AuditLog {
    pub fn new(path: &Path, actor: &str, repo: &str, prompt_sha256: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            actor: actor.into(),
            repo: repo.into(),
            prompt_sha256: prompt_sha256.into(),
            branch: None,
            commit: None,
            pull_request: None,
            written: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn written(&self) -> usize {
        self.written
    }

    /// Appends one record. The line is written with a single `write` on a file
    /// opened for appending, so concurrent writers do not interleave lines.
    pub fn record(&mut self, action: &str, outcome: Outcome, detail: Option<&str>) -> std::io::Result<()> {
        let record = Record {
            time: jiff::Timestamp::now().to_string(),
            actor: &self.actor,
            action,
            outcome,
            repo: &self.repo,
            branch: self.branch.as_deref(),
            commit: self.commit.as_deref(),
            pull_request: self.pull_request,
            prompt_sha256: &self.prompt_sha256,
            detail: detail.map(|d| Redactor::builtin().redact(d).text),
        };
        let mut line = serde_json::to_vec(&record).expect("a record serializes");
        line.push(b'\n');
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        file.write_all(&line)?;
        self.written += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_appended_as_json_lines_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/audit.jsonl");
        let mut log = AuditLog::new(&path, "winky-agent", "git://h/notes.git", "ab12");
        log.record("plan", Outcome::Ok, None).unwrap();
        log.branch = Some("winky/feat-notes-1a2b3c4d".into());
        log.record(
            "push",
            Outcome::Failed,
            Some("token ghp_R2d9Xq7LmP4sT8vW1yZ3bN6cF0hJ5kA9eG2u refused"),
        )
        .unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["action"], "plan");
        assert!(lines[0].get("branch").is_none());
        assert_eq!(lines[1]["branch"], "winky/feat-notes-1a2b3c4d");
        assert_eq!(lines[1]["outcome"], "failed");
        assert_eq!(lines[1]["promptSha256"], "ab12");
        assert!(!text.contains("ghp_R2d9"), "{text}");
        assert_eq!(log.written(), 2);
    }
}
