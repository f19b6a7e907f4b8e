//! The pull request, through the GitHub REST API with octocrab.
//!
//! Always a draft, always from a `winky/` branch to the repository's default
//! branch; the body is the repository's pull-request template (when it has
//! one) with the plan, the checks and the redactions filled in.

use std::fmt;
use std::time::Duration;

use octocrab::Octocrab;

use crate::branch::BranchName;

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub repository {0:?} is not OWNER/NAME")]
    BadRepository(String),
    #[error(
        "no GitHub token: set WINKY_GITHUB_TOKEN (or GITHUB_TOKEN) to a token that may open pull requests; \
         winky does not read tokens from files in the repository"
    )]
    NoToken,
    #[error("GitHub {action} failed: {message}")]
    Api { action: &'static str, message: String },
}

/// Which repository, where its API is, and the token. The token is never printed.
#[derive(Clone)]
pub struct GitHubConfig {
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    pub token: String,
}

impl fmt::Debug for GitHubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubConfig")
            .field("api_url", &self.api_url)
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .field("token", &"<set>")
            .finish()
    }
}

/// `owner/name` from `--github-repo`, or from a github.com remote URL.
pub fn parse_repository(spec: &str) -> Result<(String, String), GitHubError> {
    let trimmed = spec.trim_end_matches('/').trim_end_matches(".git");
    let tail = trimmed
        .rsplit_once("github.com/")
        .or_else(|| trimmed.rsplit_once("github.com:"))
        .map_or(trimmed, |(_, tail)| tail);
    let parts: Vec<&str> = tail.split('/').collect();
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    match parts.as_slice() {
        [owner, name] if valid(owner) && valid(name) => Ok((owner.to_string(), name.to_string())),
        _ => Err(GitHubError::BadRepository(spec.to_string())),
    }
}

/// The pull request as opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedPullRequest {
    pub number: u64,
    pub url: String,
}

#[derive(Debug)]
pub struct GitHub {
    client: Octocrab,
    owner: String,
    repo: String,
}

fn api_error(action: &'static str, error: octocrab::Error) -> GitHubError {
    let message = match &error {
        octocrab::Error::GitHub { source, .. } => {
            let details: Vec<String> = source.errors.iter().flatten().map(|e| e.to_string()).collect();
            if details.is_empty() {
                format!("{} ({})", source.message, source.status_code)
            } else {
                format!(
                    "{} ({}): {}",
                    source.message,
                    source.status_code,
                    details.join("; ")
                )
            }
        }
        other => other.to_string(),
    };
    GitHubError::Api { action, message }
}

impl GitHub {
    pub fn new(config: &GitHubConfig) -> Result<Self, GitHubError> {
        let client = Octocrab::builder()
            .base_uri(config.api_url.as_str())
            .map_err(|e| api_error("client setup", e))?
            .personal_token(config.token.clone())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| api_error("client setup", e))?;
        Ok(Self {
            client,
            owner: config.owner.clone(),
            repo: config.repo.clone(),
        })
    }

    /// The repository's default branch: the base of every pull request.
    pub async fn default_branch(&self) -> Result<String, GitHubError> {
        let repository = self
            .client
            .repos(&self.owner, &self.repo)
            .get()
            .await
            .map_err(|e| api_error("reading the repository", e))?;
        Ok(repository.default_branch.unwrap_or_else(|| "main".into()))
    }

    /// Opens a draft pull request from `head` into `base`.
    pub async fn open_draft(
        &self,
        head: &BranchName,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<OpenedPullRequest, GitHubError> {
        let pull = self
            .client
            .pulls(&self.owner, &self.repo)
            .create(title, head.as_str(), base)
            .body(body)
            .draft(true)
            .send()
            .await
            .map_err(|e| api_error("opening the pull request", e))?;
        Ok(OpenedPullRequest {
            number: pull.number,
            url: pull.html_url.map(|u| u.to_string()).unwrap_or_default(),
        })
    }
}

/// Where repositories keep their pull-request template, in GitHub's order.
pub const TEMPLATE_PATHS: [&str; 4] = [
    ".github/PULL_REQUEST_TEMPLATE.md",
    ".github/pull_request_template.md",
    "PULL_REQUEST_TEMPLATE.md",
    "docs/PULL_REQUEST_TEMPLATE.md",
];

/// The sections Winky contributes to a pull request body.
#[derive(Clone, Debug)]
pub struct BodySections {
    pub summary: String,
    pub plan: String,
    pub checks: String,
    pub redactions: String,
}

/// The body: the template with `<!-- winky:summary -->`, `<!-- winky:plan -->`,
/// `<!-- winky:checks -->` and `<!-- winky:redactions -->` replaced; sections
/// the template has no marker for are appended in that order.
pub fn render_body(template: Option<&str>, sections: &BodySections) -> String {
    let parts = [
        ("summary", "Summary", sections.summary.as_str()),
        ("plan", "Plan", sections.plan.as_str()),
        (
            "checks",
            "Checks run before this pull request",
            sections.checks.as_str(),
        ),
        ("redactions", "Redactions", sections.redactions.as_str()),
    ];
    let mut body = template.map(str::to_string).unwrap_or_default();
    let mut appended = String::new();
    for (key, heading, text) in parts {
        let marker = format!("<!-- winky:{key} -->");
        if body.contains(&marker) {
            body = body.replace(&marker, text);
        } else {
            appended.push_str(&format!("\n## {heading}\n\n{text}\n"));
        }
    }
    if !appended.is_empty() {
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        body.push_str(&appended);
    }
    body.push_str("\n---\nOpened as a draft by `winky propose`; an agent never approves or merges.\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_from_flags_and_remotes() {
        let expected = ("acme".to_string(), "notes".to_string());
        assert_eq!(parse_repository("acme/notes").unwrap(), expected);
        assert_eq!(
            parse_repository("https://github.com/acme/notes.git").unwrap(),
            expected
        );
        assert_eq!(
            parse_repository("git@github.com:acme/notes.git").unwrap(),
            expected
        );
        assert!(parse_repository("git://127.0.0.1:9418/notes.git").is_err());
        assert!(parse_repository("acme").is_err());
    }

    fn sections() -> BodySections {
        BodySections {
            summary: "S".into(),
            plan: "P".into(),
            checks: "C".into(),
            redactions: "R".into(),
        }
    }

    #[test]
    fn a_template_with_markers_is_filled_in() {
        let template =
            "## What\n<!-- winky:summary -->\n## Checklist\n- [ ] reviewed\n<!-- winky:checks -->\n";
        let body = render_body(Some(template), &sections());
        assert!(
            body.starts_with("## What\nS\n## Checklist\n- [ ] reviewed\nC\n"),
            "{body}"
        );
        assert!(
            body.contains("## Plan\n\nP\n") && body.contains("## Redactions\n\nR\n"),
            "{body}"
        );
        assert!(!body.contains("## Summary"), "{body}");
    }

    #[test]
    fn without_a_template_every_section_is_appended() {
        let body = render_body(None, &sections());
        for heading in [
            "## Summary",
            "## Plan",
            "## Checks run before this pull request",
            "## Redactions",
        ] {
            assert!(body.contains(heading), "{body}");
        }
    }
}
