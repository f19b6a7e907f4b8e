//! A GitHub REST API double: the endpoints `winky propose` and the operator
//! use, served on loopback, answering with GitHub's own example payloads
//! (vendored from `@octokit/openapi` in `e2e/github/`) adjusted to the request.
//!
//! It behaves like GitHub where Winky depends on it: it checks the token,
//! answers 404 for another repository, and refuses (422) a pull request whose
//! head or base branch does not exist in the git repository it fronts — read
//! with the real `git`, so a branch the agent did not really push is caught.
//! Pull requests follow their branches (head and base `sha` move while they
//! are open), their files are what `git diff base...head` says, and the pull
//! requests of a commit are found the way GitHub finds them.
//!
//! Tests seed it synchronously ([`GitHubDouble::open_pull`],
//! [`GitHubDouble::merge_pull`], [`GitHubDouble::add_comment`]) and inspect what
//! was written ([`GitHubDouble::statuses`], [`GitHubDouble::comments`]). Every
//! exchange is kept, and [`validate_exchanges`] checks each response (and
//! request body) against the vendored OpenAPI schemas.
//!
//! | operation | route |
//! | --- | --- |
//! | `repos/get` | `GET /repos/{owner}/{repo}` |
//! | `pulls/create` | `POST /repos/{owner}/{repo}/pulls` |
//! | `pulls/get` | `GET /repos/{owner}/{repo}/pulls/{pull_number}` |
//! | `pulls/list-files` | `GET /repos/{owner}/{repo}/pulls/{pull_number}/files` |
//! | `pulls/list-reviews` | `GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews` (seeded with [`GitHubDouble::add_review`], [`GitHubDouble::dismiss_review`]) |
//! | `repos/list-pull-requests-associated-with-commit` | `GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls` |
//! | `repos/create-commit-status` | `POST /repos/{owner}/{repo}/statuses/{sha}` |
//! | `issues/list-comments` | `GET /repos/{owner}/{repo}/issues/{issue_number}/comments` |
//! | `issues/create-comment` | `POST /repos/{owner}/{repo}/issues/{issue_number}/comments` |
//! | `issues/update-comment` | `PATCH` (or `POST`, as octocrab sends it) `/repos/{owner}/{repo}/issues/comments/{comment_id}` |
//!
//! Anything else is answered 404 and recorded as [`UNSUPPORTED`], which
//! [`validate_exchanges`] reports.
//!
//! Under `/_double/` the double serves routes of its own, no part of GitHub's
//! API (documented at `control_router`): opening a pull request, recording its merge,
//! writing and reading comments, for a person acting on GitHub's website
//! from another process (`winky-dev github`). They are not recorded as
//! exchanges nor schema-checked.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::workspace_root;

/// The login the token belongs to, unless [`GitHubDouble::set_token_login`]
/// says otherwise: the author of pull requests opened and comments written
/// through the API, the creator of commit statuses.
pub const DEFAULT_TOKEN_LOGIN: &str = "winky-operator[bot]";

/// The operation recorded for a request the double has no route for.
pub const UNSUPPORTED: &str = "unsupported";

/// GitHub lists at most this many files of a pull request.
const MAX_FILES: usize = 3000;

/// Comment ids start above every pull request number, as on GitHub.
const FIRST_COMMENT_ID: u64 = 1_000_000_001;

/// Review ids, likewise, in a range of their own.
const FIRST_REVIEW_ID: u64 = 3_000_000_001;

/// One request and the answer the double gave.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// `repos/get`, `pulls/create`, as in `e2e/github/openapi.json`
    /// ([`UNSUPPORTED`] for a route the double does not serve).
    pub operation: &'static str,
    pub method: String,
    /// The path, with the query string when there is one.
    pub path: String,
    /// The request body exactly as received.
    pub request_body: String,
    pub authorization: Option<String>,
    pub status: u16,
    pub response: Value,
}

/// A commit status set through `repos/create-commit-status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    pub id: u64,
    /// The full commit id it was set on.
    pub sha: String,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    /// `default` when the request named none, as on GitHub.
    pub context: String,
    pub description: Option<String>,
    pub target_url: Option<String>,
    /// The login of the token that set it.
    pub creator: String,
    pub created_at: String,
}

/// A comment on a pull request (an issue comment, in GitHub's terms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueComment {
    pub id: u64,
    /// The pull request it is on.
    pub issue_number: u64,
    pub body: String,
    /// The author's login.
    pub user: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug)]
struct Repository {
    owner: String,
    name: String,
    token: String,
    git_dir: PathBuf,
    default_branch: String,
}

impl Repository {
    fn slug(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Clone, Debug)]
struct Merge {
    by: String,
    commit: String,
    at: String,
}

#[derive(Clone, Debug)]
struct Pull {
    number: u64,
    title: String,
    body: Option<String>,
    draft: bool,
    author: String,
    head: String,
    base: String,
    /// The head branch's commit; follows the branch while the pull is open.
    head_sha: String,
    /// The base branch's commit; follows the branch while the pull is open,
    /// and is the base before the merge once merged.
    base_sha: String,
    /// The base branch's commit when the pull was opened.
    opened_base_sha: String,
    created_at: String,
    updated_at: String,
    merged: Option<Merge>,
}

impl Pull {
    fn is_open(&self) -> bool {
        self.merged.is_none()
    }
}

#[derive(Debug)]
struct Recorded {
    exchanges: Vec<Exchange>,
    pulls: Vec<Pull>,
    statuses: Vec<CommitStatus>,
    comments: Vec<IssueComment>,
    reviews: Vec<PullReview>,
    token_login: String,
    /// What the schema check found in each exchange as it was recorded.
    problems: Vec<String>,
}

impl Default for Recorded {
    fn default() -> Self {
        Self {
            exchanges: Vec::new(),
            pulls: Vec::new(),
            statuses: Vec::new(),
            comments: Vec::new(),
            reviews: Vec::new(),
            token_login: DEFAULT_TOKEN_LOGIN.into(),
            problems: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
struct Shared {
    repository: Arc<Repository>,
    recorded: Arc<Mutex<Recorded>>,
    /// The double's own base URL, for `Link` headers.
    url: Arc<str>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("not poisoned")
    }
}

/// The running double. Dropping it stops the server.
#[derive(Debug)]
pub struct GitHubDouble {
    url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHubDouble {
    /// Stops the server; and fails the test that used it when any exchange
    /// broke GitHub's schemas, so no test can forget to check.
    fn drop(&mut self) {
        self.task.abort();
        let problems = std::mem::take(&mut self.shared.lock().problems);
        if !problems.is_empty() && !std::thread::panicking() {
            panic!(
                "the GitHub double saw exchanges that break GitHub's schemas:\n{}",
                problems.join("\n")
            );
        }
    }
}

fn example(name: &str) -> Value {
    let path = workspace_root().join("e2e/github/examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first item of an array example.
fn example_item(name: &str) -> Value {
    example(name)
        .get(0)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not a non-empty array"))
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl GitHubDouble {
    /// Serves `owner/name`, whose git repository is the bare `git_dir`,
    /// to clients presenting `token`.
    pub async fn start(owner: &str, name: &str, token: &str, git_dir: &Path) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Shared {
            repository: Arc::new(Repository {
                owner: owner.into(),
                name: name.into(),
                token: token.into(),
                git_dir: git_dir.to_path_buf(),
                default_branch: "main".into(),
            }),
            recorded: Arc::default(),
            url: url.as_str().into(),
        };
        let app = Router::new()
            .nest("/_double", control_router())
            .route("/repos/{owner}/{repo}", get(get_repository))
            .route("/repos/{owner}/{repo}/pulls", post(create_pull))
            .route("/repos/{owner}/{repo}/pulls/{pull_number}", get(get_pull))
            .route(
                "/repos/{owner}/{repo}/pulls/{pull_number}/files",
                get(list_pull_files),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
                get(list_reviews),
            )
            .route(
                "/repos/{owner}/{repo}/commits/{commit_sha}/pulls",
                get(list_commit_pulls),
            )
            .route("/repos/{owner}/{repo}/statuses/{sha}", post(create_status))
            .route(
                "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                get(list_comments).post(create_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{comment_id}",
                axum::routing::patch(update_comment).post(update_comment),
            )
            .fallback(unsupported)
            .method_not_allowed_fallback(unsupported)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, shared, task })
    }

    /// Base URL, as given to `--github-api` or octocrab's `base_uri`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.lock().exchanges.clone()
    }

    /// The schema problems found so far, taken: a test that provokes them on
    /// purpose takes them, so that dropping the double does not fail it.
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.lock().problems)
    }

    /// The pull requests, as `pulls/get` serves them now.
    pub fn pulls(&self) -> Vec<Value> {
        let repository = &self.shared.repository;
        current_pulls(&self.shared)
            .iter()
            .map(|(pull, comments)| full_pull(repository, pull, *comments, "pulls-get-200.json"))
            .collect()
    }

    /// The login the token belongs to ([`DEFAULT_TOKEN_LOGIN`] unless set).
    pub fn token_login(&self) -> String {
        self.shared.lock().token_login.clone()
    }

    /// Makes `login` the owner of the token from now on.
    pub fn set_token_login(&self, login: &str) {
        self.shared.lock().token_login = login.into();
    }

    /// Opens a pull request from `head` into `base` as `author`, as if that
    /// person had opened it on GitHub; returns its number. Both branches must
    /// exist in the bare repository.
    pub fn open_pull(&self, head: &str, base: &str, author: &str, title: &str) -> u64 {
        insert_pull(&self.shared, head, base, author, title, None, false)
            .unwrap_or_else(|e| panic!("GitHubDouble::open_pull({head:?} into {base:?}): {e}"))
    }

    /// Records that `merged_by` merged pull request `number` as
    /// `merge_commit_sha` (the test has merged and pushed it with git): the pull
    /// is closed, `merged`, with `merged_at` now. Its head and base stay as
    /// they were before the merge, so its files are still its changes.
    pub fn merge_pull(&self, number: u64, merged_by: &str, merge_commit_sha: &str) {
        if let Err((_, message)) = record_merge(&self.shared, number, merged_by, merge_commit_sha) {
            panic!("GitHubDouble::merge_pull({number}): {message}");
        }
    }

    /// Writes a comment on pull request `number` as `author` (a person typing
    /// `/approve`, say); returns its id.
    pub fn add_comment(&self, number: u64, author: &str, body: &str) -> u64 {
        let mut recorded = self.shared.lock();
        assert!(
            recorded.pulls.iter().any(|p| p.number == number),
            "GitHubDouble::add_comment: there is no pull request {number}"
        );
        push_comment(&mut recorded, number, author, body).id
    }

    /// Edits comment `id` to read `body`, as its author would on GitHub: its
    /// `updated_at` moves (at least a second past `created_at`, GitHub's
    /// times having whole seconds).
    pub fn edit_comment(&self, id: u64, body: &str) {
        let mut recorded = self.shared.lock();
        let comment = recorded
            .comments
            .iter_mut()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("GitHubDouble::edit_comment: there is no comment {id}"));
        let created: jiff::Timestamp = comment
            .created_at
            .parse()
            .expect("the double writes RFC 3339 times");
        let edited = jiff::Timestamp::now().max(created + jiff::SignedDuration::from_secs(1));
        comment.body = body.into();
        comment.updated_at = edited.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    }

    /// Every commit status set, oldest first.
    pub fn statuses(&self) -> Vec<CommitStatus> {
        self.shared.lock().statuses.clone()
    }

    /// The comments on pull request `number`, oldest first.
    pub fn comments(&self, number: u64) -> Vec<IssueComment> {
        self.shared
            .lock()
            .comments
            .iter()
            .filter(|c| c.issue_number == number)
            .cloned()
            .collect()
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string(),
        }),
    )
}

/// GitHub's answer for `operation` and `status`, from the vendored examples.
fn canned(operation: &str, status: StatusCode) -> (StatusCode, Value) {
    let name = format!("{}-{}.json", operation.replace('/', "-"), status.as_u16());
    (status, example(&name))
}

/// A 422 of `operation` whose `errors` are `errors`.
fn invalid(operation: &str, errors: Value) -> (StatusCode, Value) {
    let (status, mut body) = canned(operation, StatusCode::UNPROCESSABLE_ENTITY);
    body["message"] = json!("Validation Failed");
    body["errors"] = errors;
    (status, body)
}

/// GitHub's 422 for a commit the repository does not have.
fn no_commit(operation: &str, sha: &str) -> (StatusCode, Value) {
    let (status, mut body) = canned(operation, StatusCode::UNPROCESSABLE_ENTITY);
    body["message"] = json!(format!("No commit found for SHA: {sha}"));
    if let Some(body) = body.as_object_mut() {
        body.remove("errors");
    }
    (status, body)
}

fn authorized(repository: &Repository, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "));
    token == Some(repository.token.as_str())
}

/// 401 for a missing or wrong token, 404 for a repository the double does not
/// serve; `None` when the request may go on.
fn refused(
    shared: &Shared,
    headers: &HeaderMap,
    owner: &str,
    repo: &str,
    operation: &str,
) -> Option<(StatusCode, Value)> {
    let repository = &shared.repository;
    if !authorized(repository, headers) {
        Some(canned(operation, StatusCode::UNAUTHORIZED))
    } else if owner != repository.owner || repo != repository.name {
        Some(canned(operation, StatusCode::NOT_FOUND))
    } else {
        None
    }
}

fn record(
    shared: &Shared,
    operation: &'static str,
    method: &str,
    path: String,
    headers: &HeaderMap,
    body: &Bytes,
    (status, response): (StatusCode, Value),
) -> Response {
    let exchange = Exchange {
        operation,
        method: method.into(),
        path,
        request_body: String::from_utf8_lossy(body).into_owned(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status: status.as_u16(),
        response: response.clone(),
    };
    // Checked as it is recorded: a test cannot skip it (see Drop).
    let problems = validate_exchanges(std::slice::from_ref(&exchange))
        .unwrap_or_else(|e| vec![format!("the schema check failed: {e}")]);
    let mut recorded = shared.lock();
    recorded.problems.extend(problems);
    recorded.exchanges.push(exchange);
    drop(recorded);
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        response.to_string(),
    )
        .into_response()
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string())
}

fn with_link(mut response: Response, link: Option<String>) -> Response {
    if let Some(value) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert("link", value);
    }
    response
}

/// A positive number from a path segment (`None` answers 404, as GitHub does).
fn number(segment: &str) -> Option<u64> {
    segment.parse().ok().filter(|n| *n > 0)
}

/// One page of `items` after `per_page` (default 30, at most 100) and `page`
/// (default 1), with GitHub's `Link` header when there is more than one page.
fn paginate(items: Vec<Value>, uri: &Uri, base_url: &str) -> (Value, Option<String>) {
    let query: HashMap<&str, &str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let per_page = query
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .map_or(30, |n| n.min(100));
    let page = query
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let last = items.len().div_ceil(per_page).max(1);
    let link_to = |page: usize, rel: &str| {
        format!(
            "<{base_url}{}?per_page={per_page}&page={page}>; rel=\"{rel}\"",
            uri.path()
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to((page - 1).min(last), "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    let items: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    (Value::Array(items), (!links.is_empty()).then(|| links.join(", ")))
}

async fn get_repository(
    State(shared): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let repository = &shared.repository;
    let answer = if !authorized(repository, &headers) {
        error(StatusCode::UNAUTHORIZED, "Bad credentials")
    } else if owner != repository.owner || repo != repository.name {
        error(StatusCode::NOT_FOUND, "Not Found")
    } else {
        (StatusCode::OK, repository_payload(repository))
    };
    record(
        &shared,
        "repos/get",
        "GET",
        format!("/repos/{owner}/{repo}"),
        &headers,
        &Bytes::new(),
        answer,
    )
}

/// GitHub's `full-repository` example, renamed to this repository.
fn repository_payload(repository: &Repository) -> Value {
    let text = example("repos-get-200.json")
        .to_string()
        .replace("octocat/Hello-World", &repository.slug());
    let mut value: Value = serde_json::from_str(&text).expect("still JSON");
    value["name"] = json!(repository.name);
    value["full_name"] = json!(repository.slug());
    value["owner"]["login"] = json!(repository.owner);
    value["default_branch"] = json!(repository.default_branch);
    value
}

// ---------------------------------------------------------------------------
// git, read from the bare repository the double fronts

/// Runs `git --git-dir <git_dir> args…`; `None` when git says no. A git that
/// cannot run is a broken test environment, not an answer.
fn git_output(git_dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .output()
        .expect("git runs (apt-get install git)");
    output.status.success().then_some(output.stdout)
}

fn git_text(git_dir: &Path, args: &[&str]) -> Option<String> {
    git_output(git_dir, args).map(|out| String::from_utf8_lossy(&out).into_owned())
}

fn branch_sha(git_dir: &Path, branch: &str) -> Option<String> {
    resolve_commit(git_dir, &format!("refs/heads/{branch}"))
}

/// The full id of the commit `rev` names, if the repository has it.
fn resolve_commit(git_dir: &Path, rev: &str) -> Option<String> {
    if rev.is_empty() || rev.starts_with('-') {
        return None;
    }
    let spec = format!("{rev}^{{commit}}");
    git_text(git_dir, &["rev-parse", "--verify", "--quiet", &spec])
        .map(|out| out.trim().to_string())
        .filter(|sha| !sha.is_empty())
}

/// Every branch and the commit it points at.
fn branch_tips(git_dir: &Path) -> HashMap<String, String> {
    git_text(
        git_dir,
        &[
            "for-each-ref",
            "--format=%(refname:lstrip=2) %(objectname)",
            "refs/heads",
        ],
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|line| line.rsplit_once(' '))
    .map(|(branch, sha)| (branch.to_string(), sha.to_string()))
    .collect()
}

fn is_ancestor(git_dir: &Path, ancestor: &str, of: &str) -> bool {
    git_output(git_dir, &["merge-base", "--is-ancestor", ancestor, of]).is_some()
}

/// The commits of a pull request: on its head, not on its base.
fn pull_commits(git_dir: &Path, pull: &Pull) -> Vec<String> {
    git_text(
        git_dir,
        &["rev-list", &format!("{}..{}", pull.base_sha, pull.head_sha)],
    )
    .unwrap_or_default()
    .lines()
    .map(str::to_string)
    .collect()
}

/// One file of `git diff base...head`.
#[derive(Clone, Debug, Default)]
struct FileChange {
    status: &'static str,
    filename: String,
    previous_filename: Option<String>,
    /// The blob: the new one, or the old one for a removed file.
    sha: Option<String>,
    additions: u64,
    deletions: u64,
    /// The hunks, as GitHub sends them; none for binary files, pure renames,
    /// mode changes and empty files.
    patch: Option<String>,
}

const DIFF: [&str; 5] = ["diff", "-M", "--no-color", "--no-ext-diff", "--no-textconv"];

/// The changes between the merge base of `base` and `head`, and `head` —
/// `git diff base...head`, GitHub's view of a pull request.
fn diff_files(git_dir: &Path, base: &str, head: &str) -> Vec<FileChange> {
    let range = format!("{base}...{head}");
    let run = |extra: &[&str]| -> Vec<u8> {
        let mut args: Vec<&str> = DIFF.iter().chain(extra).copied().collect();
        args.extend([range.as_str(), "--"]);
        git_output(git_dir, &args)
            .unwrap_or_else(|| panic!("git diff {range} failed in {}", git_dir.display()))
    };
    let raw = run(&["--raw", "-z", "--no-abbrev"]);
    let numstat = run(&["--numstat", "-z"]);
    let patch = run(&["--patch", "--unified=3"]);

    let mut files = Vec::new();
    let mut fields = raw
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    while let Some(meta) = fields.next() {
        let Some(meta) = meta.strip_prefix(':') else {
            continue;
        };
        // :old_mode new_mode old_sha new_sha status
        let parts: Vec<&str> = meta.split(' ').collect();
        let [_, _, old_sha, new_sha, status] = parts[..] else {
            panic!("unexpected git diff --raw line :{meta}");
        };
        let letter = status.chars().next().unwrap_or('M');
        let first = fields.next().unwrap_or_default();
        let (filename, previous_filename) = if matches!(letter, 'R' | 'C') {
            (fields.next().unwrap_or_default(), Some(first))
        } else {
            (first, None)
        };
        let (status, blob) = match letter {
            'A' => ("added", new_sha),
            'D' => ("removed", old_sha),
            'R' => ("renamed", new_sha),
            'C' => ("copied", new_sha),
            'T' => ("changed", new_sha),
            _ => ("modified", new_sha),
        };
        files.push(FileChange {
            status,
            filename,
            previous_filename,
            sha: Some(blob.to_string()).filter(|s| s.bytes().any(|b| b != b'0')),
            ..FileChange::default()
        });
    }

    // numstat -z: "adds\tdels\tpath\0", or "adds\tdels\t\0old\0new\0" for a rename.
    let mut counts = Vec::new();
    let mut fields = numstat
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned());
    while let Some(record) = fields.next() {
        let mut parts = record.splitn(3, '\t');
        let (Some(adds), Some(dels), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if path.is_empty() {
            fields.next();
            fields.next();
        }
        counts.push((adds.parse().unwrap_or(0), dels.parse().unwrap_or(0)));
    }

    // The patch: one section per file, from "diff --git"; the hunks start at "@@".
    let patch = String::from_utf8_lossy(&patch);
    let mut hunks: Vec<Vec<&str>> = Vec::new();
    let mut in_hunks = false;
    for line in patch.split('\n') {
        if line.starts_with("diff --git ") {
            hunks.push(Vec::new());
            in_hunks = false;
        } else if let Some(section) = hunks.last_mut() {
            in_hunks = in_hunks || line.starts_with("@@");
            if in_hunks {
                section.push(line);
            }
        }
    }

    assert!(
        files.len() == counts.len() && files.len() == hunks.len(),
        "git diff {range}: {} files in --raw, {} in --numstat, {} in --patch",
        files.len(),
        counts.len(),
        hunks.len()
    );
    for ((file, (additions, deletions)), section) in files.iter_mut().zip(counts).zip(hunks) {
        file.additions = additions;
        file.deletions = deletions;
        let text = section.join("\n");
        let text = text.trim_end_matches('\n');
        file.patch = (!text.is_empty()).then(|| text.to_string());
    }
    files
}

// ---------------------------------------------------------------------------
// pull requests

/// Every pull request, with head and base following their branches while
/// open, and its number of comments.
fn current_pulls(shared: &Shared) -> Vec<(Pull, usize)> {
    let tips = branch_tips(&shared.repository.git_dir);
    let mut recorded = shared.lock();
    for pull in recorded.pulls.iter_mut().filter(|p| p.is_open()) {
        if let Some(sha) = tips.get(&pull.head) {
            pull.head_sha.clone_from(sha);
        }
        if let Some(sha) = tips.get(&pull.base) {
            pull.base_sha.clone_from(sha);
        }
    }
    recorded
        .pulls
        .iter()
        .map(|pull| {
            let comments = recorded
                .comments
                .iter()
                .filter(|c| c.issue_number == pull.number)
                .count();
            (pull.clone(), comments)
        })
        .collect()
}

fn find_pull(shared: &Shared, segment: &str) -> Option<(Pull, usize)> {
    let number = number(segment)?;
    current_pulls(shared)
        .into_iter()
        .find(|(p, _)| p.number == number)
}

/// Records that `merged_by` merged pull request `number` as `merge_commit_sha`
/// ([`GitHubDouble::merge_pull`], and the control API's merge): returns the
/// number and the full commit id, or why not (with the control API's status).
fn record_merge(
    shared: &Shared,
    number: u64,
    merged_by: &str,
    merge_commit_sha: &str,
) -> Result<(u64, String), (StatusCode, String)> {
    let git_dir = &shared.repository.git_dir;
    let commit = resolve_commit(git_dir, merge_commit_sha).ok_or_else(|| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{merge_commit_sha} is no commit of the repository"),
        )
    })?;
    let parent = resolve_commit(git_dir, &format!("{commit}^1"));
    let tips = branch_tips(git_dir);
    let mut recorded = shared.lock();
    let pull = recorded
        .pulls
        .iter_mut()
        .find(|p| p.number == number)
        .ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                format!("there is no pull request {number}"),
            )
        })?;
    if !pull.is_open() {
        return Err((
            StatusCode::CONFLICT,
            format!("pull request {number} is already merged"),
        ));
    }
    if let Some(sha) = tips.get(&pull.head) {
        pull.head_sha.clone_from(sha);
    }
    // The base before the merge: the merge (or squash) commit's first
    // parent; for a fast-forward, the base the pull was opened on.
    pull.base_sha = match parent {
        Some(parent) if commit != pull.head_sha => parent,
        _ => pull.opened_base_sha.clone(),
    };
    let at = now();
    pull.updated_at.clone_from(&at);
    pull.merged = Some(Merge {
        by: merged_by.into(),
        commit: commit.clone(),
        at,
    });
    Ok((number, commit))
}

fn insert_pull(
    shared: &Shared,
    head: &str,
    base: &str,
    author: &str,
    title: &str,
    body: Option<String>,
    draft: bool,
) -> Result<u64, String> {
    let repository = &shared.repository;
    let Some(head_sha) = branch_sha(&repository.git_dir, head) else {
        return Err(format!("head {head} does not exist"));
    };
    let Some(base_sha) = branch_sha(&repository.git_dir, base) else {
        return Err(format!("base {base} does not exist"));
    };
    let mut recorded = shared.lock();
    if recorded.pulls.iter().any(|p| p.head == head && p.is_open()) {
        return Err(format!(
            "A pull request already exists for {}:{head}.",
            repository.owner
        ));
    }
    let number = recorded.pulls.len() as u64 + 1;
    let at = now();
    recorded.pulls.push(Pull {
        number,
        title: title.into(),
        body,
        draft,
        author: author.into(),
        head: head.into(),
        base: base.into(),
        head_sha,
        base_sha: base_sha.clone(),
        opened_base_sha: base_sha,
        created_at: at.clone(),
        updated_at: at,
        merged: None,
    });
    Ok(number)
}

/// A stable, GitHub-looking numeric id for a login.
fn user_id(login: &str) -> u64 {
    let hash = login.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    10_000_000 + hash % 90_000_000
}

fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(char::from(byte)),
            b'/' if keep_slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// A `simple-user` for `login` (a `Bot` when it ends in `[bot]`, as GitHub
/// Apps do), from GitHub's example user.
fn user_payload(login: &str) -> Value {
    let id = user_id(login);
    let api = format!("https://api.github.com/users/{}", encode(login, false));
    let (html, kind) = match login.strip_suffix("[bot]") {
        Some(app) => (format!("https://github.com/apps/{}", encode(app, false)), "Bot"),
        None => (format!("https://github.com/{}", encode(login, false)), "User"),
    };
    let template = example("issues-create-comment-201.json")["user"]
        .to_string()
        .replace("https://api.github.com/users/octocat", &api);
    let mut user: Value = serde_json::from_str(&template).expect("still JSON");
    user["login"] = json!(login);
    user["id"] = json!(id);
    user["node_id"] = json!(format!("U_{id}"));
    user["avatar_url"] = json!(format!("https://avatars.githubusercontent.com/u/{id}?v=4"));
    user["html_url"] = json!(html);
    user["type"] = json!(kind);
    user["site_admin"] = json!(false);
    user
}

/// How GitHub relates `login` to the repository.
fn association(repository: &Repository, login: &str) -> &'static str {
    if login == repository.owner {
        "OWNER"
    } else if login.ends_with("[bot]") {
        "NONE"
    } else {
        // Anyone who pushes branches to it has write access.
        "COLLABORATOR"
    }
}

/// A pull request as `pull-request-simple`, from the example `template` (an
/// item of a list example, or a `pull-request` example).
fn simple_pull(repository: &Repository, pull: &Pull, template: &Value) -> Value {
    let slug = repository.slug();
    let number = pull.number;
    let text = template
        .to_string()
        .replace("octocat/Hello-World", &slug)
        .replace("/pulls/1347", &format!("/pulls/{number}"))
        .replace("/pull/1347", &format!("/pull/{number}"))
        .replace("/issues/1347", &format!("/issues/{number}"));
    let mut value: Value = serde_json::from_str(&text).expect("still JSON");
    let statuses = format!("https://api.github.com/repos/{slug}/statuses/{}", pull.head_sha);
    value["number"] = json!(number);
    value["id"] = json!(1_000_000 + number);
    value["node_id"] = json!(format!("PR_{}", 1_000_000 + number));
    value["state"] = json!(if pull.is_open() { "open" } else { "closed" });
    value["locked"] = json!(false);
    value["active_lock_reason"] = Value::Null;
    value["title"] = json!(pull.title);
    value["body"] = json!(pull.body);
    value["draft"] = json!(pull.draft);
    value["user"] = user_payload(&pull.author);
    value["author_association"] = json!(association(repository, &pull.author));
    value["labels"] = json!([]);
    value["milestone"] = Value::Null;
    value["assignee"] = Value::Null;
    value["assignees"] = json!([]);
    value["requested_reviewers"] = json!([]);
    value["requested_teams"] = json!([]);
    value["auto_merge"] = Value::Null;
    value["created_at"] = json!(pull.created_at);
    value["updated_at"] = json!(pull.updated_at);
    value["statuses_url"] = json!(statuses);
    value["_links"]["statuses"]["href"] = json!(statuses);
    let merged = pull.merged.as_ref();
    value["closed_at"] = json!(merged.map(|m| &m.at));
    value["merged_at"] = json!(merged.map(|m| &m.at));
    value["merge_commit_sha"] = json!(merged.map(|m| &m.commit));
    for (side, branch, sha) in [
        ("head", &pull.head, &pull.head_sha),
        ("base", &pull.base, &pull.base_sha),
    ] {
        let end = &mut value[side];
        end["ref"] = json!(branch);
        end["sha"] = json!(sha);
        end["label"] = json!(format!("{}:{branch}", repository.owner));
        end["user"] = user_payload(&repository.owner);
        end["repo"]["name"] = json!(repository.name);
        end["repo"]["full_name"] = json!(slug);
        end["repo"]["owner"] = user_payload(&repository.owner);
        end["repo"]["default_branch"] = json!(repository.default_branch);
    }
    value
}

/// A pull request as `pull-request`, with its commits and diff counted by git.
fn full_pull(repository: &Repository, pull: &Pull, comments: usize, example_name: &str) -> Value {
    let mut value = simple_pull(repository, pull, &example(example_name));
    let files = diff_files(&repository.git_dir, &pull.base_sha, &pull.head_sha);
    let merged = pull.merged.as_ref();
    value["merged"] = json!(merged.is_some());
    value["merged_by"] = merged.map_or(Value::Null, |m| user_payload(&m.by));
    value["mergeable"] = if merged.is_some() {
        Value::Null
    } else {
        json!(true)
    };
    value["rebaseable"] = value["mergeable"].clone();
    value["mergeable_state"] = json!(if merged.is_some() { "unknown" } else { "clean" });
    value["maintainer_can_modify"] = json!(false);
    value["comments"] = json!(comments);
    value["review_comments"] = json!(0);
    value["commits"] = json!(pull_commits(&repository.git_dir, pull).len());
    value["additions"] = json!(files.iter().map(|f| f.additions).sum::<u64>());
    value["deletions"] = json!(files.iter().map(|f| f.deletions).sum::<u64>());
    value["changed_files"] = json!(files.len());
    value
}

fn validation_failed(message: &str) -> (StatusCode, Value) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "code": "custom", "message": message}],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            "status": "422",
        }),
    )
}

async fn create_pull(
    State(shared): State<Shared>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let repository = shared.repository.clone();
    let path = format!("/repos/{owner}/{repo}/pulls");
    let answer = if !authorized(&repository, &headers) {
        error(StatusCode::UNAUTHORIZED, "Bad credentials")
    } else if owner != repository.owner || repo != repository.name {
        error(StatusCode::NOT_FOUND, "Not Found")
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Err(_) => error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
            Ok(request) => open_pull(&shared, &request),
        }
    };
    record(&shared, "pulls/create", "POST", path, &headers, &body, answer)
}

fn open_pull(shared: &Shared, request: &Value) -> (StatusCode, Value) {
    let text = |key: &str| request.get(key).and_then(Value::as_str).map(str::to_string);
    let (Some(title), Some(head), Some(base)) = (text("title"), text("head"), text("base")) else {
        return validation_failed("title, head and base are required");
    };
    let author = shared.lock().token_login.clone();
    let draft = request.get("draft").and_then(Value::as_bool).unwrap_or(false);
    let number = match insert_pull(shared, &head, &base, &author, &title, text("body"), draft) {
        Ok(number) => number,
        Err(message) => return validation_failed(&message),
    };
    let (pull, comments) = find_pull(shared, &number.to_string()).expect("just inserted");
    (
        StatusCode::CREATED,
        full_pull(&shared.repository, &pull, comments, "pulls-create-201.json"),
    )
}

async fn get_pull(
    State(shared): State<Shared>,
    UrlPath((owner, repo, pull_number)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const OP: &str = "pulls/get";
    let answer = refused(&shared, &headers, &owner, &repo, OP).unwrap_or_else(|| {
        match find_pull(&shared, &pull_number) {
            None => canned(OP, StatusCode::NOT_FOUND),
            Some((pull, comments)) => (
                StatusCode::OK,
                full_pull(&shared.repository, &pull, comments, "pulls-get-200.json"),
            ),
        }
    });
    record(
        &shared,
        OP,
        "GET",
        path_and_query(&uri),
        &headers,
        &Bytes::new(),
        answer,
    )
}

async fn list_pull_files(
    State(shared): State<Shared>,
    UrlPath((owner, repo, pull_number)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const OP: &str = "pulls/list-files";
    let mut link = None;
    let answer = refused(&shared, &headers, &owner, &repo, OP).unwrap_or_else(|| {
        let Some((pull, _)) = find_pull(&shared, &pull_number) else {
            return canned(OP, StatusCode::NOT_FOUND);
        };
        let repository = &shared.repository;
        let template = example_item("pulls-list-files-200.json");
        let entries = diff_files(&repository.git_dir, &pull.base_sha, &pull.head_sha)
            .into_iter()
            .take(MAX_FILES)
            .map(|file| diff_entry(repository, &pull.head_sha, &file, &template))
            .collect();
        let (page, next) = paginate(entries, &uri, &shared.url);
        link = next;
        (StatusCode::OK, page)
    });
    let response = record(
        &shared,
        OP,
        "GET",
        path_and_query(&uri),
        &headers,
        &Bytes::new(),
        answer,
    );
    with_link(response, link)
}

/// A `diff-entry` for one file of a pull request whose head is `head_sha`.
fn diff_entry(repository: &Repository, head_sha: &str, file: &FileChange, template: &Value) -> Value {
    let slug = repository.slug();
    let path = encode(&file.filename, true);
    let mut entry = template.clone();
    entry["sha"] = json!(file.sha);
    entry["filename"] = json!(file.filename);
    entry["status"] = json!(file.status);
    entry["additions"] = json!(file.additions);
    entry["deletions"] = json!(file.deletions);
    entry["changes"] = json!(file.additions + file.deletions);
    entry["blob_url"] = json!(format!("https://github.com/{slug}/blob/{head_sha}/{path}"));
    entry["raw_url"] = json!(format!("https://github.com/{slug}/raw/{head_sha}/{path}"));
    entry["contents_url"] = json!(format!(
        "https://api.github.com/repos/{slug}/contents/{path}?ref={head_sha}"
    ));
    let object = entry.as_object_mut().expect("a diff-entry is an object");
    match &file.patch {
        Some(patch) => object.insert("patch".into(), json!(patch)),
        None => object.remove("patch"),
    };
    match &file.previous_filename {
        Some(previous) => object.insert("previous_filename".into(), json!(previous)),
        None => object.remove("previous_filename"),
    };
    entry
}

async fn list_commit_pulls(
    State(shared): State<Shared>,
    UrlPath((owner, repo, commit_sha)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const OP: &str = "repos/list-pull-requests-associated-with-commit";
    let mut link = None;
    let answer = refused(&shared, &headers, &owner, &repo, OP).unwrap_or_else(|| {
        let repository = &shared.repository;
        let git_dir = &repository.git_dir;
        let Some(sha) = resolve_commit(git_dir, &commit_sha) else {
            return no_commit(OP, &commit_sha);
        };
        // GitHub: the merged pull request that brought a commit of the default
        // branch; for any other commit, the open pull requests holding it.
        let on_default = is_ancestor(
            git_dir,
            &sha,
            &format!("refs/heads/{}", repository.default_branch),
        );
        let template = example_item("repos-list-pull-requests-associated-with-commit-200.json");
        let pulls = current_pulls(&shared)
            .into_iter()
            .map(|(pull, _)| pull)
            .filter(|pull| {
                let holds = || pull.head_sha == sha || pull_commits(git_dir, pull).contains(&sha);
                match &pull.merged {
                    Some(merge) => on_default && (merge.commit == sha || holds()),
                    None => !on_default && holds(),
                }
            })
            .map(|pull| simple_pull(repository, &pull, &template))
            .collect();
        let (page, next) = paginate(pulls, &uri, &shared.url);
        link = next;
        (StatusCode::OK, page)
    });
    let response = record(
        &shared,
        OP,
        "GET",
        path_and_query(&uri),
        &headers,
        &Bytes::new(),
        answer,
    );
    with_link(response, link)
}

// ---------------------------------------------------------------------------
// pull request reviews

/// A review of a pull request, as `pulls/list-reviews` serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullReview {
    pub id: u64,
    /// The pull request it is on.
    pub pull_number: u64,
    /// The reviewer's login.
    pub user: String,
    /// `APPROVED`, `CHANGES_REQUESTED` or `COMMENTED` as submitted;
    /// `DISMISSED` once dismissed (GitHub's listing keeps no other trace of
    /// what it was).
    pub state: String,
    /// The full id of the commit reviewed.
    pub commit_id: String,
    pub body: String,
    pub submitted_at: String,
}

/// The states a review is submitted with.
const REVIEW_STATES: [&str; 3] = ["APPROVED", "CHANGES_REQUESTED", "COMMENTED"];

impl GitHubDouble {
    /// `login` submits a review of pull request `number` made on
    /// `commit_id` (any name git resolves in the repository) with `state`
    /// (`APPROVED`, `CHANGES_REQUESTED` or `COMMENTED`), as if on GitHub;
    /// returns its id. GitHub refuses its author's approval of their own
    /// pull request; the double does not, so that a test can show it would
    /// not count.
    pub fn add_review(&self, number: u64, login: &str, state: &str, commit_id: &str) -> u64 {
        assert!(
            REVIEW_STATES.contains(&state),
            "GitHubDouble::add_review: a review is submitted {REVIEW_STATES:?}, not {state:?}"
        );
        let commit = resolve_commit(&self.shared.repository.git_dir, commit_id).unwrap_or_else(|| {
            panic!("GitHubDouble::add_review({number}): {commit_id} is no commit of the repository")
        });
        let mut recorded = self.shared.lock();
        assert!(
            recorded.pulls.iter().any(|p| p.number == number),
            "GitHubDouble::add_review: there is no pull request {number}"
        );
        let review = PullReview {
            id: FIRST_REVIEW_ID + recorded.reviews.len() as u64,
            pull_number: number,
            user: login.into(),
            state: state.into(),
            commit_id: commit,
            body: String::new(),
            submitted_at: now(),
        };
        let id = review.id;
        recorded.reviews.push(review);
        id
    }

    /// Dismisses review `id` of pull request `number`: it is listed
    /// `DISMISSED` from now on, as GitHub lists it. Only an approval or a
    /// request for changes can be dismissed (GitHub refuses the others).
    pub fn dismiss_review(&self, number: u64, id: u64) {
        let mut recorded = self.shared.lock();
        let review = recorded
            .reviews
            .iter_mut()
            .find(|r| r.pull_number == number && r.id == id)
            .unwrap_or_else(|| {
                panic!("GitHubDouble::dismiss_review: pull request {number} has no review {id}")
            });
        assert!(
            matches!(review.state.as_str(), "APPROVED" | "CHANGES_REQUESTED"),
            "GitHubDouble::dismiss_review: a {} review cannot be dismissed",
            review.state
        );
        review.state = "DISMISSED".into();
    }

    /// The reviews of pull request `number`, oldest first.
    pub fn reviews(&self, number: u64) -> Vec<PullReview> {
        self.shared
            .lock()
            .reviews
            .iter()
            .filter(|r| r.pull_number == number)
            .cloned()
            .collect()
    }
}

fn review_payload(repository: &Repository, review: &PullReview, template: &Value) -> Value {
    let slug = repository.slug();
    let html = format!(
        "https://github.com/{slug}/pull/{}#pullrequestreview-{}",
        review.pull_number, review.id
    );
    let pull = format!("https://api.github.com/repos/{slug}/pulls/{}", review.pull_number);
    let mut value = template.clone();
    value["id"] = json!(review.id);
    value["node_id"] = json!(format!("PRR_{}", review.id));
    value["user"] = user_payload(&review.user);
    value["body"] = json!(review.body);
    value["state"] = json!(review.state);
    value["html_url"] = json!(html);
    value["pull_request_url"] = json!(pull);
    value["_links"] = json!({"html": {"href": html}, "pull_request": {"href": pull}});
    value["submitted_at"] = json!(review.submitted_at);
    value["commit_id"] = json!(review.commit_id);
    value["author_association"] = json!(association(repository, &review.user));
    value
}

async fn list_reviews(
    State(shared): State<Shared>,
    UrlPath((owner, repo, pull_number)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const OP: &str = "pulls/list-reviews";
    let mut link = None;
    let answer = refused(&shared, &headers, &owner, &repo, OP).unwrap_or_else(|| {
        let Some(number) = has_pull(&shared, &pull_number) else {
            return canned(OP, StatusCode::NOT_FOUND);
        };
        let template = example_item("pulls-list-reviews-200.json");
        let reviews = shared
            .lock()
            .reviews
            .iter()
            .filter(|r| r.pull_number == number)
            .map(|r| review_payload(&shared.repository, r, &template))
            .collect();
        let (page, next) = paginate(reviews, &uri, &shared.url);
        link = next;
        (StatusCode::OK, page)
    });
    let response = record(
        &shared,
        OP,
        "GET",
        path_and_query(&uri),
        &headers,
        &Bytes::new(),
        answer,
    );
    with_link(response, link)
}

// ---------------------------------------------------------------------------
// commit statuses

const STATES: [&str; 4] = ["error", "failure", "pending", "success"];

async fn create_status(
    State(shared): State<Shared>,
    UrlPath((owner, repo, sha)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "repos/create-commit-status";
    let answer = refused(&shared, &headers, &owner, &repo, OP).unwrap_or_else(|| {
        let Ok(request) = serde_json::from_slice::<Value>(&body) else {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        let Some(request) = request.as_object() else {
            return error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
        };
        match request.get("state").and_then(Value::as_str) {
            None => {
                return invalid(
                    OP,
                    json!([{"resource": "Status", "field": "state", "code": "missing_field"}]),
                );
            }
            Some(state) if !STATES.contains(&state) => {
                return canned(OP, StatusCode::UNPROCESSABLE_ENTITY);
            }
            Some(_) => {}
        }
        for field in ["target_url", "description", "context"] {
            let nullable = field != "context";
            match request.get(field) {
                None | Some(Value::String(_)) => {}
                Some(Value::Null) if nullable => {}
                Some(_) => {
                    return invalid(
                        OP,
                        json!([{"resource": "Status", "field": field, "code": "invalid"}]),
                    );
                }
            }
        }
        let Some(full) = resolve_commit(&shared.repository.git_dir, &sha) else {
            return no_commit(OP, &sha);
        };
        let text = |key: &str| request.get(key).and_then(Value::as_str).map(str::to_string);
        let mut recorded = shared.lock();
        let status = CommitStatus {
            id: recorded.statuses.len() as u64 + 1,
            sha: full,
            state: text("state").unwrap_or_default(),
            context: text("context").unwrap_or_else(|| "default".into()),
            description: text("description"),
            target_url: text("target_url"),
            creator: recorded.token_login.clone(),
            created_at: now(),
        };
        recorded.statuses.push(status.clone());
        drop(recorded);
        (StatusCode::CREATED, status_payload(&shared.repository, &status))
    });
    record(&shared, OP, "POST", path_and_query(&uri), &headers, &body, answer)
}

fn status_payload(repository: &Repository, status: &CommitStatus) -> Value {
    let mut value = example("repos-create-commit-status-201.json");
    let creator = user_payload(&status.creator);
    value["url"] = json!(format!(
        "https://api.github.com/repos/{}/statuses/{}",
        repository.slug(),
        status.sha
    ));
    value["avatar_url"] = creator["avatar_url"].clone();
    value["id"] = json!(status.id);
    value["node_id"] = json!(format!("SC_{}", status.id));
    value["state"] = json!(status.state);
    value["description"] = json!(status.description);
    value["target_url"] = json!(status.target_url);
    value["context"] = json!(status.context);
    value["created_at"] = json!(status.created_at);
    value["updated_at"] = json!(status.created_at);
    value["creator"] = creator;
    value
}

// ---------------------------------------------------------------------------
// comments

fn push_comment(recorded: &mut Recorded, number: u64, author: &str, body: &str) -> IssueComment {
    let at = now();
    let comment = IssueComment {
        id: FIRST_COMMENT_ID + recorded.comments.len() as u64,
        issue_number: number,
        body: body.into(),
        user: author.into(),
        created_at: at.clone(),
        updated_at: at,
    };
    recorded.comments.push(comment.clone());
    comment
}

fn comment_payload(repository: &Repository, comment: &IssueComment, template: &Value) -> Value {
    let slug = repository.slug();
    let mut value = template.clone();
    value["id"] = json!(comment.id);
    value["node_id"] = json!(format!("IC_{}", comment.id));
    value["url"] = json!(format!(
        "https://api.github.com/repos/{slug}/issues/comments/{}",
        comment.id
    ));
    value["html_url"] = json!(format!(
        "https://github.com/{slug}/pull/{}#issuecomment-{}",
        comment.issue_number, comment.id
    ));
    value["issue_url"] = json!(format!(
        "https://api.github.com/repos/{slug}/issues/{}",
        comment.issue_number
    ));
    value["body"] = json!(comment.body);
    value["user"] = user_payload(&comment.user);
    value["author_association"] = json!(association(repository, &comment.user));
    value["created_at"] = json!(comment.created_at);
    value["updated_at"] = json!(comment.updated_at);
    value
}

/// The `body` of a comment request, or GitHub's 422.
fn comment_body(operation: &str, body: &Bytes) -> Result<String, (StatusCode, Value)> {
    let request: Value =
        serde_json::from_slice(body).map_err(|_| error(StatusCode::BAD_REQUEST, "Problems parsing JSON"))?;
    match request.get("body") {
        Some(Value::String(text)) => Ok(text.clone()),
        None | Some(Value::Null) => Err(canned(operation, StatusCode::UNPROCESSABLE_ENTITY)),
        Some(_) => Err(invalid(
            operation,
            json!([{"resource": "IssueComment", "field": "body", "code": "invalid"}]),
        )),
    }
}

fn has_pull(shared: &Shared, segment: &str) -> Option<u64> {
    let number = number(segment)?;
    shared
        .lock()
        .pulls
        .iter()
        .any(|p| p.number == number)
        .then_some(number)
}

async fn list_comments(
    State(shared): State<Shared>,
    UrlPath((owner, repo, issue_number)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    const OP: &str = "issues/list-comments";
    let mut link = None;
    let answer = refused(&shared, &headers, &owner, &repo, OP).unwrap_or_else(|| {
        let Some(number) = has_pull(&shared, &issue_number) else {
            return canned(OP, StatusCode::NOT_FOUND);
        };
        let template = example_item("issues-list-comments-200.json");
        let comments = shared
            .lock()
            .comments
            .iter()
            .filter(|c| c.issue_number == number)
            .map(|c| comment_payload(&shared.repository, c, &template))
            .collect();
        let (page, next) = paginate(comments, &uri, &shared.url);
        link = next;
        (StatusCode::OK, page)
    });
    let response = record(
        &shared,
        OP,
        "GET",
        path_and_query(&uri),
        &headers,
        &Bytes::new(),
        answer,
    );
    with_link(response, link)
}

async fn create_comment(
    State(shared): State<Shared>,
    UrlPath((owner, repo, issue_number)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "issues/create-comment";
    let answer = refused(&shared, &headers, &owner, &repo, OP).unwrap_or_else(|| {
        let Some(number) = has_pull(&shared, &issue_number) else {
            return canned(OP, StatusCode::NOT_FOUND);
        };
        let text = match comment_body(OP, &body) {
            Ok(text) => text,
            Err(answer) => return answer,
        };
        let mut recorded = shared.lock();
        let author = recorded.token_login.clone();
        let comment = push_comment(&mut recorded, number, &author, &text);
        drop(recorded);
        let template = example("issues-create-comment-201.json");
        (
            StatusCode::CREATED,
            comment_payload(&shared.repository, &comment, &template),
        )
    });
    record(&shared, OP, "POST", path_and_query(&uri), &headers, &body, answer)
}

async fn update_comment(
    State(shared): State<Shared>,
    UrlPath((owner, repo, comment_id)): UrlPath<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const OP: &str = "issues/update-comment";
    let answer = refused(&shared, &headers, &owner, &repo, OP).unwrap_or_else(|| {
        let id = number(&comment_id);
        if !shared.lock().comments.iter().any(|c| Some(c.id) == id) {
            return canned(OP, StatusCode::NOT_FOUND);
        }
        let text = match comment_body(OP, &body) {
            Ok(text) => text,
            Err(answer) => return answer,
        };
        let mut recorded = shared.lock();
        let Some(comment) = recorded.comments.iter_mut().find(|c| Some(c.id) == id) else {
            return canned(OP, StatusCode::NOT_FOUND);
        };
        comment.body = text;
        comment.updated_at = now();
        let comment = comment.clone();
        drop(recorded);
        let template = example("issues-update-comment-200.json");
        (
            StatusCode::OK,
            comment_payload(&shared.repository, &comment, &template),
        )
    });
    record(
        &shared,
        OP,
        method.as_str(),
        path_and_query(&uri),
        &headers,
        &body,
        answer,
    )
}

/// Any route the double does not serve: GitHub's 404, recorded so that
/// [`validate_exchanges`] reports it.
async fn unsupported(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = error(StatusCode::NOT_FOUND, "Not Found");
    record(
        &shared,
        UNSUPPORTED,
        method.as_str(),
        path_and_query(&uri),
        &headers,
        &body,
        answer,
    )
}

/// Checks every exchange against the vendored OpenAPI description: the
/// response against the schema of its operation and status, and the request
/// body of every operation that takes one (`pulls/create`,
/// `repos/create-commit-status`, `issues/create-comment`,
/// `issues/update-comment`) against its request schema — unless the double
/// refused the body itself (400, 422), as GitHub does with an invalid one.
/// A request to a route the double does not serve is a problem too.
/// Returns the problems.
pub fn validate_exchanges(exchanges: &[Exchange]) -> Result<Vec<String>> {
    static DESCRIPTION: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let description = match DESCRIPTION.get() {
        Some(description) => description,
        None => {
            let path = workspace_root().join("e2e/github/openapi.json");
            let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
            DESCRIPTION.get_or_init(|| serde_json::from_str(&text).unwrap_or(Value::Null))
        }
    };
    let mut problems = Vec::new();
    let check = |problems: &mut Vec<String>, what: String, schema: &Value, instance: &Value| -> Result<()> {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| anyhow::anyhow!("{what}: the vendored schema does not compile: {e}"))?;
        for error in validator.iter_errors(instance) {
            problems.push(format!("{what}: {} at {}", error, error.instance_path()));
        }
        Ok(())
    };
    for exchange in exchanges {
        let operation = &description["operations"][exchange.operation];
        if operation.is_null() {
            problems.push(format!(
                "{} {}: the GitHub double does not serve this ({})",
                exchange.method, exchange.path, exchange.operation
            ));
            continue;
        }
        let status = exchange.status.to_string();
        let schema = &operation["responses"][&status];
        if schema.is_null() {
            problems.push(format!(
                "{} answered {status}, which the description does not list",
                exchange.operation
            ));
            continue;
        }
        check(
            &mut problems,
            format!("{} {status} response", exchange.operation),
            schema,
            &exchange.response,
        )?;
        let request_schema = &operation["request"];
        if !request_schema.is_null() && !matches!(exchange.status, 400 | 422) {
            let request: Value = serde_json::from_str(&exchange.request_body).unwrap_or(Value::Null);
            check(
                &mut problems,
                format!("{} request", exchange.operation),
                request_schema,
                &request,
            )?;
        }
    }
    Ok(problems)
}

// ---------------------------------------------------------------------------
// the double's own control API, under /_double/ (not GitHub's)

/// The double's own routes, nested under `/_double/`: what people do on
/// GitHub's website — open a pull request, record its merge, write a comment,
/// read the comments — for a process that cannot call
/// [`GitHubDouble::open_pull`] and its siblings (`winky-dev github`). They
/// are no part of GitHub's REST API: their requests are neither recorded as
/// exchanges nor checked against GitHub's schemas. They take the
/// repository's token, as the API does, and answer JSON:
///
/// | route | body | answer |
/// | --- | --- | --- |
/// | `GET /_double/pulls` | | `[{number, title, author, head, base, head_sha, state, merged_by, merge_commit_sha, comments}]` (`state`: `open` or `merged`) |
/// | `POST /_double/pulls` | `{head, base?, author, title, body?}` | 201 `{number}`; 422 `{message}` when a branch does not exist or the head has an open pull request |
/// | `POST /_double/pulls/{number}/merge` | `{by, commit}` (pushed already) | 200 `{number, merge_commit_sha}`; 404, 409 (merged already), 422 (no such commit) |
/// | `GET /_double/pulls/{number}/comments` | | `[{id, user, body, created_at, updated_at}]`, oldest first |
/// | `POST /_double/pulls/{number}/comments` | `{author, body}` | 201 `{id}` |
///
/// A missing or wrong token is 401, a body that is not the JSON asked for 400.
fn control_router() -> Router<Shared> {
    Router::new()
        .route("/pulls", get(control_list_pulls).post(control_open_pull))
        .route("/pulls/{number}/merge", post(control_merge_pull))
        .route(
            "/pulls/{number}/comments",
            get(control_list_comments).post(control_add_comment),
        )
        .fallback(control_not_found)
}

fn control_answer(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn control_error(status: StatusCode, message: &str) -> Response {
    control_answer(status, &json!({ "message": message }))
}

/// `None` when the request carries the repository's token.
fn control_refused(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    (!authorized(&shared.repository, headers))
        .then(|| control_error(StatusCode::UNAUTHORIZED, "Bad credentials"))
}

/// Why the control API says no: the status and the message.
type Refusal = (StatusCode, String);

fn refusal_answer((status, message): Refusal) -> Response {
    control_error(status, &message)
}

/// The JSON object of a control request, or 400.
fn control_request(body: &Bytes) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err((StatusCode::BAD_REQUEST, "the body must be a JSON object".into())),
    }
}

/// The non-empty string `key` of a control request, or 400.
fn control_text(request: &serde_json::Map<String, Value>, key: &str) -> Result<String, Refusal> {
    match request.get(key).and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => Ok(text.to_string()),
        _ => Err((
            StatusCode::BAD_REQUEST,
            format!("{key} is required (a non-empty string)"),
        )),
    }
}

async fn control_not_found() -> Response {
    control_error(
        StatusCode::NOT_FOUND,
        "the double's control API has no such route",
    )
}

async fn control_list_pulls(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(refusal) = control_refused(&shared, &headers) {
        return refusal;
    }
    let pulls: Vec<Value> = current_pulls(&shared)
        .into_iter()
        .map(|(pull, comments)| {
            let merged = pull.merged.as_ref();
            json!({
                "number": pull.number,
                "title": pull.title,
                "author": pull.author,
                "head": pull.head,
                "base": pull.base,
                "head_sha": pull.head_sha,
                "state": if merged.is_some() { "merged" } else { "open" },
                "merged_by": merged.map(|m| &m.by),
                "merge_commit_sha": merged.map(|m| &m.commit),
                "comments": comments,
            })
        })
        .collect();
    control_answer(StatusCode::OK, &Value::Array(pulls))
}

async fn control_open_pull(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refusal) = control_refused(&shared, &headers) {
        return refusal;
    }
    let opened = control_request(&body).and_then(|request| {
        let head = control_text(&request, "head")?;
        let author = control_text(&request, "author")?;
        let title = control_text(&request, "title")?;
        let base =
            control_text(&request, "base").unwrap_or_else(|_| shared.repository.default_branch.clone());
        let text = request.get("body").and_then(Value::as_str).map(str::to_string);
        insert_pull(&shared, &head, &base, &author, &title, text, false)
            .map_err(|message| (StatusCode::UNPROCESSABLE_ENTITY, message))
    });
    match opened {
        Ok(number) => control_answer(StatusCode::CREATED, &json!({ "number": number })),
        Err(refusal) => refusal_answer(refusal),
    }
}

async fn control_merge_pull(
    State(shared): State<Shared>,
    UrlPath(number): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = control_refused(&shared, &headers) {
        return refusal;
    }
    let merged = control_request(&body).and_then(|request| {
        let by = control_text(&request, "by")?;
        let commit = control_text(&request, "commit")?;
        let number = self::number(&number)
            .ok_or_else(|| (StatusCode::NOT_FOUND, "no such pull request".to_string()))?;
        record_merge(&shared, number, &by, &commit)
    });
    match merged {
        Ok((number, commit)) => control_answer(
            StatusCode::OK,
            &json!({ "number": number, "merge_commit_sha": commit }),
        ),
        Err(refusal) => refusal_answer(refusal),
    }
}

async fn control_list_comments(
    State(shared): State<Shared>,
    UrlPath(number): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = control_refused(&shared, &headers) {
        return refusal;
    }
    let Some(number) = has_pull(&shared, &number) else {
        return control_error(StatusCode::NOT_FOUND, "no such pull request");
    };
    let comments: Vec<Value> = shared
        .lock()
        .comments
        .iter()
        .filter(|c| c.issue_number == number)
        .map(|c| {
            json!({
                "id": c.id,
                "user": c.user,
                "body": c.body,
                "created_at": c.created_at,
                "updated_at": c.updated_at,
            })
        })
        .collect();
    control_answer(StatusCode::OK, &Value::Array(comments))
}

async fn control_add_comment(
    State(shared): State<Shared>,
    UrlPath(number): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = control_refused(&shared, &headers) {
        return refusal;
    }
    let Some(number) = has_pull(&shared, &number) else {
        return control_error(StatusCode::NOT_FOUND, "no such pull request");
    };
    let added = control_request(&body).and_then(|request| {
        let author = control_text(&request, "author")?;
        let text = control_text(&request, "body")?;
        Ok(push_comment(&mut shared.lock(), number, &author, &text).id)
    });
    match added {
        Ok(id) => control_answer(StatusCode::CREATED, &json!({ "id": id })),
        Err(refusal) => refusal_answer(refusal),
    }
}

impl GitHubDouble {
    /// The exchanges recorded so far, taken: a double that runs for days
    /// (`winky-dev up`) logs them and keeps none. A test reads them with
    /// [`GitHubDouble::exchanges`] instead; each was schema-checked as it was
    /// recorded, whichever way it leaves.
    pub fn take_exchanges(&self) -> Vec<Exchange> {
        std::mem::take(&mut self.shared.lock().exchanges)
    }
}
