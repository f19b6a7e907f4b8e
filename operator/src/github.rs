//! GitHub, as the operator uses it through octocrab: which pull request
//! brought a commit and who merged it, which files a pull request changes,
//! commit statuses, and one comment per pull request that is updated rather
//! than repeated.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::StatusState;
use serde::Deserialize;
use winky_crds::gitsource::GitHubRepo;

use crate::webhook::{SecretError, read_secret_key};

/// Why GitHub could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// The token's Secret could not be read.
    #[error("the GitHub token: {0}")]
    Token(#[from] SecretError),
    /// The client could not be built (a bad `apiUrl`).
    #[error("the GitHub client for {api}: {message}")]
    Client { api: String, message: String },
    /// GitHub answered with an error or could not be reached.
    #[error("GitHub {action}: {message}")]
    Api { action: &'static str, message: String },
}

/// The pull request that merged a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedPull {
    /// Its number.
    pub number: u64,
    /// Who opened it.
    pub author: String,
    /// Who merged it, when GitHub says.
    pub merged_by: Option<String>,
    /// Its web address.
    pub url: Option<String>,
}

/// A file a pull request changes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ChangedFile {
    /// Its path (the new one for a rename).
    pub filename: String,
    /// `added`, `removed`, `modified`, `renamed`, …
    pub status: String,
    /// The old path of a renamed file.
    #[serde(default)]
    pub previous_filename: Option<String>,
    /// The unified diff of the file, when GitHub sends it (not for binaries or huge diffs).
    #[serde(default)]
    pub patch: Option<String>,
}

/// A GitHub repository with the token of its GitSource.
#[derive(Clone)]
pub struct GitHub {
    crab: Octocrab,
    owner: String,
    repo: String,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("owner", &self.owner)
            .field("repo", &self.repo)
            .finish_non_exhaustive()
    }
}

fn api_error(action: &'static str) -> impl Fn(octocrab::Error) -> GitHubError {
    move |e| GitHubError::Api {
        action,
        message: match &e {
            octocrab::Error::GitHub { source, .. } => format!("{} ({})", source.message, source.status_code),
            other => other.to_string(),
        },
    }
}

impl GitHub {
    /// The repository `spec` names, with the token read from its Secret in `namespace`.
    pub async fn connect(
        client: &kube::Client,
        namespace: &str,
        spec: &GitHubRepo,
    ) -> Result<Self, GitHubError> {
        let token = read_secret_key(client, namespace, &spec.token_secret_ref).await?;
        let token = String::from_utf8_lossy(token.expose()).trim().to_string();
        let api = spec
            .api_url
            .clone()
            .unwrap_or_else(|| "https://api.github.com".into());
        let failed = |message: String| GitHubError::Client {
            api: api.clone(),
            message,
        };
        let crab = Octocrab::builder()
            .personal_token(token)
            .base_uri(api.as_str())
            .map_err(|e| failed(e.to_string()))?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| failed(e.to_string()))?;
        Ok(Self {
            crab,
            owner: spec.owner.clone(),
            repo: spec.repo.clone(),
        })
    }

    /// `owner/repo`.
    pub fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    /// The merged pull request whose merge commit is `sha`, if any: GitHub's
    /// commits/{sha}/pulls, then the pull request itself for who merged it.
    pub async fn merged_pull(&self, sha: &str) -> Result<Option<MergedPull>, GitHubError> {
        let pulls = self
            .crab
            .repos(&self.owner, &self.repo)
            .list_pulls(sha.to_string())
            .send()
            .await
            .map_err(api_error("listing the pull requests of a commit"))?;
        let Some(candidate) = pulls
            .items
            .into_iter()
            .find(|p| p.merged_at.is_some() && p.merge_commit_sha.as_deref() == Some(sha))
        else {
            return Ok(None);
        };
        let pull = self
            .crab
            .pulls(&self.owner, &self.repo)
            .get(candidate.number)
            .await
            .map_err(api_error("reading a pull request"))?;
        Ok(Some(MergedPull {
            number: pull.number,
            author: pull.user.map(|u| u.login).unwrap_or_default(),
            merged_by: pull.merged_by.map(|u| u.login),
            url: pull.html_url.map(|u| u.to_string()),
        }))
    }

    /// The files pull request `number` changes (the first 100; an agent's
    /// change is small, and more than that is refused by the caller).
    pub async fn pull_files(&self, number: u64) -> Result<Vec<ChangedFile>, GitHubError> {
        let route = format!(
            "/repos/{}/{}/pulls/{number}/files?per_page=100",
            self.owner, self.repo
        );
        self.crab
            .get(route, None::<&()>)
            .await
            .map_err(api_error("listing the files of a pull request"))
    }

    /// Sets the commit status `context` of `sha`.
    pub async fn set_status(
        &self,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
    ) -> Result<(), GitHubError> {
        self.crab
            .repos(&self.owner, &self.repo)
            .create_status(sha.to_string(), state)
            .context(context.to_string())
            .description(crate::events::truncate(description, 139))
            .send()
            .await
            .map_err(api_error("setting a commit status"))?;
        Ok(())
    }

    /// Writes `body` as the one comment of pull request `number` that carries
    /// `marker`: updated when it exists, created otherwise.
    pub async fn upsert_comment(&self, number: u64, marker: &str, body: &str) -> Result<(), GitHubError> {
        let body = format!("{body}\n\n{marker}");
        let comments = self
            .crab
            .issues(&self.owner, &self.repo)
            .list_comments(number)
            .per_page(100)
            .send()
            .await
            .map_err(api_error("listing comments"))?;
        let existing = comments
            .items
            .into_iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)));
        match existing {
            Some(comment) if comment.body.as_deref() == Some(body.as_str()) => Ok(()),
            Some(comment) => {
                // GitHub documents PATCH for an update (octocrab sends POST).
                let route = format!(
                    "/repos/{}/{}/issues/comments/{}",
                    self.owner, self.repo, comment.id
                );
                let _: serde_json::Value = self
                    .crab
                    .patch(route, Some(&serde_json::json!({ "body": body })))
                    .await
                    .map_err(api_error("updating a comment"))?;
                Ok(())
            }
            None => {
                self.crab
                    .issues(&self.owner, &self.repo)
                    .create_comment(number, body)
                    .await
                    .map_err(api_error("commenting"))?;
                Ok(())
            }
        }
    }
}

/// A comment on a pull request, as the approvals gate reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullComment {
    /// Its id.
    pub id: u64,
    /// Who wrote it.
    pub login: String,
    /// What it says now.
    pub body: String,
    /// When it was written.
    pub created_at: jiff::Timestamp,
    /// Whether it was edited since (GitHub moves `updated_at`).
    pub edited: bool,
    /// Its web address.
    pub url: Option<String>,
}

impl GitHub {
    /// Every comment of pull request `number` (up to 300: three pages).
    pub async fn comments(&self, number: u64) -> Result<Vec<PullComment>, GitHubError> {
        let mut out = Vec::new();
        for page in 1..=3u32 {
            let comments = self
                .crab
                .issues(&self.owner, &self.repo)
                .list_comments(number)
                .per_page(100)
                .page(page)
                .send()
                .await
                .map_err(api_error("listing comments"))?;
            let last = comments.items.len() < 100;
            for c in comments.items {
                let created_at: jiff::Timestamp = c
                    .created_at
                    .to_rfc3339()
                    .parse()
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let edited = c.updated_at.is_some_and(|u| u != c.created_at);
                out.push(PullComment {
                    id: c.id.into_inner(),
                    login: c.user.login,
                    body: c.body.unwrap_or_default(),
                    created_at,
                    edited,
                    url: Some(c.html_url.to_string()),
                });
            }
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// Who opened pull request `number`, and its head commit.
    pub async fn pull(&self, number: u64) -> Result<PullSummary, GitHubError> {
        let pull = self
            .crab
            .pulls(&self.owner, &self.repo)
            .get(number)
            .await
            .map_err(api_error("reading a pull request"))?;
        Ok(PullSummary {
            author: pull.user.map(|u| u.login).unwrap_or_default(),
            head_sha: pull.head.sha,
        })
    }

    /// Every submitted review of pull request `number` (up to 300: three
    /// pages), in the order GitHub lists them (submission). A review still
    /// pending, which only its author sees, is left out.
    pub async fn reviews(&self, number: u64) -> Result<Vec<PullReview>, GitHubError> {
        let mut out = Vec::new();
        for page in 1..=3u32 {
            let reviews = self
                .crab
                .pulls(&self.owner, &self.repo)
                .list_reviews(number)
                .per_page(100)
                .page(page)
                .send()
                .await
                .map_err(api_error("listing reviews"))?;
            let last = reviews.items.len() < 100;
            out.extend(reviews.items.into_iter().filter_map(PullReview::from_octocrab));
            if last {
                break;
            }
        }
        Ok(out)
    }
}

/// What the approvals gate needs of a pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSummary {
    /// Who opened it: never an approver.
    pub author: String,
    /// Its head commit (the last one, once merged): what reviews are made on.
    pub head_sha: String,
}

/// A submitted review of a pull request, as the approvals gate reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullReview {
    /// Its id.
    pub id: u64,
    /// The reviewer.
    pub login: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, or `DISMISSED` once
    /// dismissed (GitHub then no longer says what it was).
    pub state: String,
    /// The commit it was made on (empty when GitHub no longer has it).
    pub commit_id: String,
    /// When it was submitted.
    pub submitted_at: jiff::Timestamp,
    /// Its web address.
    pub url: Option<String>,
}

impl PullReview {
    /// The review, unless it was never submitted (pending: no time, no verdict).
    fn from_octocrab(review: octocrab::models::pulls::Review) -> Option<Self> {
        use octocrab::models::pulls::ReviewState as State;
        let state = match review.state? {
            State::Approved => "APPROVED",
            State::ChangesRequested => "CHANGES_REQUESTED",
            State::Commented => "COMMENTED",
            State::Dismissed => "DISMISSED",
            _ => return None,
        };
        let submitted_at = review.submitted_at?.to_rfc3339().parse().ok()?;
        Some(Self {
            id: review.id.into_inner(),
            login: review.user.map(|u| u.login).unwrap_or_default(),
            state: state.into(),
            commit_id: review.commit_id.unwrap_or_default(),
            submitted_at,
            url: Some(review.html_url.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's own example of `pulls/list-reviews`, vendored for the e2e double.
    const REVIEWS: &str = include_str!("../../e2e/github/examples/pulls-list-reviews-200.json");

    fn reviews(edit: impl Fn(&mut serde_json::Value)) -> Vec<PullReview> {
        let mut listed: serde_json::Value = serde_json::from_str(REVIEWS).unwrap();
        edit(&mut listed[0]);
        let listed: Vec<octocrab::models::pulls::Review> = serde_json::from_value(listed).unwrap();
        listed.into_iter().filter_map(PullReview::from_octocrab).collect()
    }

    #[test]
    fn a_listed_review_is_read_with_its_commit_time_and_verdict() {
        let read = reviews(|_| {});
        let expected = PullReview {
            id: 80,
            login: "octocat".into(),
            state: "APPROVED".into(),
            commit_id: "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091".into(),
            submitted_at: "2019-11-17T17:43:43Z".parse().unwrap(),
            url: Some("https://github.com/octocat/Hello-World/pull/12#pullrequestreview-80".into()),
        };
        assert_eq!(read, [expected]);
    }

    #[test]
    fn dismissed_reviews_are_read_and_pending_ones_are_not() {
        let read = reviews(|r| r["state"] = "DISMISSED".into());
        assert_eq!(read[0].state, "DISMISSED");
        let read = reviews(|r| r["commit_id"] = serde_json::Value::Null);
        assert_eq!(read[0].commit_id, "", "a commit GitHub no longer has");
        let pending = reviews(|r| {
            r["state"] = "PENDING".into();
            r.as_object_mut().unwrap().remove("submitted_at");
        });
        assert!(pending.is_empty(), "{pending:?}");
    }
}
