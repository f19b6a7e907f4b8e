//! A GitHub REST API double: the endpoints `winky propose` uses, served on
//! loopback, answering with GitHub's own example payloads (vendored from
//! `@octokit/openapi` in `e2e/github/`) adjusted to the request.
//!
//! It behaves like GitHub where the agent depends on it: it checks the token,
//! answers 404 for another repository, and refuses (422) a pull request whose
//! head or base branch does not exist in the git repository it fronts — read
//! with the real `git`, so a branch the agent did not really push is caught.
//! Every exchange is kept, and [`validate_exchanges`] checks each response
//! (and request) against the vendored OpenAPI schemas.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::workspace_root;

/// One request and the answer the double gave.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// `repos/get`, `pulls/create`, as in `e2e/github/openapi.json`.
    pub operation: &'static str,
    pub method: String,
    pub path: String,
    /// The request body exactly as received.
    pub request_body: String,
    pub authorization: Option<String>,
    pub status: u16,
    pub response: Value,
}

#[derive(Debug)]
struct Repository {
    owner: String,
    name: String,
    token: String,
    git_dir: PathBuf,
    default_branch: String,
}

#[derive(Debug, Default)]
struct Recorded {
    exchanges: Vec<Exchange>,
    pulls: Vec<Value>,
}

#[derive(Clone, Debug)]
struct Shared {
    repository: Arc<Repository>,
    recorded: Arc<Mutex<Recorded>>,
}

/// The running double. Dropping it stops the server.
#[derive(Debug)]
pub struct GitHubDouble {
    url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHubDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn example(name: &str) -> Value {
    let path = workspace_root().join("e2e/github/examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
        };
        let app = Router::new()
            .route("/repos/{owner}/{repo}", get(get_repository))
            .route("/repos/{owner}/{repo}/pulls", post(create_pull))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, shared, task })
    }

    /// Base URL, as given to `--github-api`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared
            .recorded
            .lock()
            .expect("not poisoned")
            .exchanges
            .clone()
    }

    /// The pull requests opened, as served.
    pub fn pulls(&self) -> Vec<Value> {
        self.shared.recorded.lock().expect("not poisoned").pulls.clone()
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

fn authorized(repository: &Repository, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "));
    token == Some(repository.token.as_str())
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
    shared
        .recorded
        .lock()
        .expect("not poisoned")
        .exchanges
        .push(exchange);
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        response.to_string(),
    )
        .into_response()
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
    let text = example("repos-get-200.json").to_string().replace(
        "octocat/Hello-World",
        &format!("{}/{}", repository.owner, repository.name),
    );
    let mut value: Value = serde_json::from_str(&text).expect("still JSON");
    value["name"] = json!(repository.name);
    value["full_name"] = json!(format!("{}/{}", repository.owner, repository.name));
    value["owner"]["login"] = json!(repository.owner);
    value["default_branch"] = json!(repository.default_branch);
    value
}

fn branch_sha(git_dir: &Path, branch: &str) -> Option<String> {
    // A git that cannot run is a broken test environment, not a missing branch.
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}^{{commit}}"))
        .output()
        .expect("git runs (apt-get install git)");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
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
            Ok(request) => open_pull(&shared, &repository, &request),
        }
    };
    record(&shared, "pulls/create", "POST", path, &headers, &body, answer)
}

fn open_pull(shared: &Shared, repository: &Repository, request: &Value) -> (StatusCode, Value) {
    let text = |key: &str| request.get(key).and_then(Value::as_str).map(str::to_string);
    let (Some(title), Some(head), Some(base)) = (text("title"), text("head"), text("base")) else {
        return validation_failed("title, head and base are required");
    };
    let Some(head_sha) = branch_sha(&repository.git_dir, &head) else {
        return validation_failed(&format!("head {head} does not exist"));
    };
    let Some(base_sha) = branch_sha(&repository.git_dir, &base) else {
        return validation_failed(&format!("base {base} does not exist"));
    };
    let mut recorded = shared.recorded.lock().expect("not poisoned");
    if recorded
        .pulls
        .iter()
        .any(|p| p["head"]["ref"] == json!(head) && p["state"] == json!("open"))
    {
        return validation_failed(&format!(
            "A pull request already exists for {}:{head}.",
            repository.owner
        ));
    }
    let number = recorded.pulls.len() as u64 + 1;
    let slug = format!("{}/{}", repository.owner, repository.name);
    let template = example("pulls-create-201.json")
        .to_string()
        .replace("octocat/Hello-World", &slug)
        .replace("/pulls/1347", &format!("/pulls/{number}"))
        .replace("/pull/1347", &format!("/pull/{number}"))
        .replace("/issues/1347", &format!("/issues/{number}"));
    let mut pull: Value = serde_json::from_str(&template).expect("still JSON");
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    pull["number"] = json!(number);
    pull["id"] = json!(1_000_000 + number);
    pull["state"] = json!("open");
    pull["title"] = json!(title);
    pull["body"] = request.get("body").cloned().unwrap_or(Value::Null);
    pull["draft"] = json!(request.get("draft").and_then(Value::as_bool).unwrap_or(false));
    pull["created_at"] = json!(now);
    pull["updated_at"] = json!(now);
    pull["closed_at"] = Value::Null;
    pull["merged_at"] = Value::Null;
    pull["merged"] = json!(false);
    pull["merge_commit_sha"] = Value::Null;
    for (side, branch, sha) in [("head", &head, &head_sha), ("base", &base, &base_sha)] {
        pull[side]["ref"] = json!(branch);
        pull[side]["sha"] = json!(sha);
        pull[side]["label"] = json!(format!("{}:{branch}", repository.owner));
    }
    recorded.pulls.push(pull.clone());
    (StatusCode::CREATED, pull)
}

/// Checks every exchange against the vendored OpenAPI description: the
/// response against the schema of its operation and status, and the request
/// body of `pulls/create` against the request schema. Returns the problems.
pub fn validate_exchanges(exchanges: &[Exchange]) -> Result<Vec<String>> {
    let path = workspace_root().join("e2e/github/openapi.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let description: Value = serde_json::from_str(&text)?;
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
        if exchange.operation == "pulls/create" {
            let request: Value = serde_json::from_str(&exchange.request_body).unwrap_or(Value::Null);
            check(
                &mut problems,
                "pulls/create request".into(),
                &operation["request"],
                &request,
            )?;
        }
    }
    Ok(problems)
}
