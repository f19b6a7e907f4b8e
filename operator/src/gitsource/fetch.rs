//! Fetching the protected branch with git2 into one bare cache repository per
//! GitSource, and reading the manifests of a commit from it.
//!
//! The remote's refs are listed first (one round trip); only when the
//! branch's commit is not in the cache yet is it fetched, shallow (depth 1)
//! where the transport allows. Only `refs/heads/<branch>` is ever fetched:
//! nothing else of the repository reaches the operator. These functions
//! block; the controller runs them on the blocking pool.

use std::fmt;
use std::path::Path;

use git2::{
    AutotagOption, Cred, CredentialType, Direction, FetchOptions, ObjectType, Oid, RemoteCallbacks,
    Repository, TreeWalkMode, TreeWalkResult,
};

use super::manifests::SourceFile;

/// A manifest file larger than this refuses the commit: manifests are small,
/// and a huge file is a mistake (or an attempt to exhaust the operator).
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// HTTPS credentials from the GitSource's Secret. Never printed.
#[derive(Clone)]
pub struct Credentials {
    /// User name (`x-access-token` for a GitHub token when the Secret has none).
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why fetching or reading failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The cache repository could not be opened or created.
    #[error("the cache repository {path}: {message}")]
    Cache { path: String, message: String },
    /// The remote could not be reached or refused us.
    #[error("listing {url}: {message}")]
    Connect { url: String, message: String },
    /// The branch does not exist on the remote.
    #[error("{url} has no branch {branch}")]
    NoBranch { url: String, branch: String },
    /// Fetching the branch failed.
    #[error("fetching {branch} from {url}: {message}")]
    Fetch {
        url: String,
        branch: String,
        message: String,
    },
    /// The commit does not hold what was asked for.
    #[error("{message}")]
    Read { commit: String, message: String },
}

impl FetchError {
    /// CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Cache { .. } => "CacheFailed",
            FetchError::Connect { .. } | FetchError::Fetch { .. } => "FetchFailed",
            FetchError::NoBranch { .. } => "BranchNotFound",
            FetchError::Read { .. } => "PathNotFound",
        }
    }
}

/// The branch's head on the remote, and whether the cache already holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Full commit id.
    pub commit: String,
    /// Whether it had to be fetched (false: it was in the cache already).
    pub fetched: bool,
}

/// Makes sure the cache at `cache` holds the head of `branch` of `url` and returns it.
pub fn fetch_head(
    cache: &Path,
    url: &str,
    branch: &str,
    credentials: Option<&Credentials>,
) -> Result<Head, FetchError> {
    let refname = format!("refs/heads/{branch}");
    fetch_first(cache, url, std::slice::from_ref(&refname), &refname, credentials).map_err(|e| match e {
        FetchError::NoBranch { url, .. } => FetchError::NoBranch {
            url,
            branch: branch.to_string(),
        },
        other => other,
    })
}

/// Fetches the head of pull request `number` — GitHub's `refs/pull/<n>/head`
/// when the remote has it (also for pull requests from forks), else the
/// branch `head_ref` — into `refs/winky/pull/<n>` of the cache, read-only:
/// it is only ever planned, never applied.
pub fn fetch_pull(
    cache: &Path,
    url: &str,
    number: u64,
    head_ref: &str,
    credentials: Option<&Credentials>,
) -> Result<Head, FetchError> {
    let candidates = [
        format!("refs/pull/{number}/head"),
        format!("refs/heads/{head_ref}"),
    ];
    fetch_first(
        cache,
        url,
        &candidates,
        &format!("refs/winky/pull/{number}"),
        credentials,
    )
}

/// Lists the remote, takes the first of `candidates` it has, and fetches it
/// into `local` unless the cache holds its commit already.
fn fetch_first(
    cache: &Path,
    url: &str,
    candidates: &[String],
    local: &str,
    credentials: Option<&Credentials>,
) -> Result<Head, FetchError> {
    super::timeouts::init();
    let shown = strip_userinfo(url);
    let repo = open_cache(cache)?;
    let listed = {
        let mut remote = repo.remote_anonymous(url).map_err(|e| FetchError::Connect {
            url: shown.clone(),
            message: e.message().to_string(),
        })?;
        let connection = remote
            .connect_auth(Direction::Fetch, Some(callbacks(url, credentials)), None)
            .map_err(|e| FetchError::Connect {
                url: shown.clone(),
                message: e.message().to_string(),
            })?;
        let heads = connection.list().map_err(|e| FetchError::Connect {
            url: shown.clone(),
            message: e.message().to_string(),
        })?;
        candidates
            .iter()
            .find_map(|c| heads.iter().find(|h| h.name() == c).map(|h| (c.clone(), h.oid())))
    };
    let Some((refname, oid)) = listed else {
        return Err(FetchError::NoBranch {
            url: shown,
            branch: candidates.join(" or "),
        });
    };
    if repo.find_commit(oid).is_ok() {
        return Ok(Head {
            commit: oid.to_string(),
            fetched: false,
        });
    }
    let fetch_error = |e: git2::Error| FetchError::Fetch {
        url: shown.clone(),
        branch: refname.clone(),
        message: e.message().to_string(),
    };
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(url, credentials));
    options.download_tags(AutotagOption::None);
    // libgit2's local transport cannot fetch shallow; every network one can.
    if !url.starts_with("file://") {
        options.depth(1);
    }
    let mut remote = repo.remote_anonymous(url).map_err(fetch_error)?;
    remote
        .fetch(&[format!("+{refname}:{local}")], Some(&mut options), None)
        .map_err(fetch_error)?;
    let fetched = repo
        .find_reference(local)
        .and_then(|r| r.peel_to_commit())
        .map_err(fetch_error)?;
    Ok(Head {
        commit: fetched.id().to_string(),
        fetched: true,
    })
}

/// The `*.yaml` and `*.yml` files under `path` in `commit` of the cache at
/// `cache`, sorted by path. A path that is not a directory of the commit is an
/// error (it is likely a typo in the GitSource); an empty directory is not.
pub fn read_manifests(cache: &Path, commit: &str, path: &str) -> Result<Vec<SourceFile>, FetchError> {
    let read_error = |message: String| FetchError::Read {
        commit: commit.to_string(),
        message,
    };
    let repo = open_cache(cache)?;
    let oid = Oid::from_str(commit).map_err(|e| read_error(e.message().to_string()))?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| read_error(e.message().to_string()))?;
    let dir = normalize(path);
    let root = if dir.is_empty() {
        tree
    } else {
        let entry = tree
            .get_path(Path::new(&dir))
            .map_err(|_| read_error(format!("there is no directory {dir}/ in the repository")))?;
        if entry.kind() != Some(ObjectType::Tree) {
            return Err(read_error(format!("{dir} is not a directory")));
        }
        repo.find_tree(entry.id())
            .map_err(|e| read_error(e.message().to_string()))?
    };
    let mut files = Vec::new();
    let mut failure = None;
    root.walk(TreeWalkMode::PreOrder, |parent, entry| {
        let name = entry.name().unwrap_or_default();
        if entry.kind() != Some(ObjectType::Blob) || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            return TreeWalkResult::Ok;
        }
        let full = [dir.as_str(), parent.trim_end_matches('/'), name]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let blob = match repo.find_blob(entry.id()) {
            Ok(blob) => blob,
            Err(e) => {
                failure = Some(read_error(format!("{full}: {}", e.message())));
                return TreeWalkResult::Abort;
            }
        };
        if blob.size() > MAX_FILE_BYTES {
            failure = Some(read_error(format!(
                "{full} has {} bytes, more than a manifest file may ({MAX_FILE_BYTES})",
                blob.size()
            )));
            return TreeWalkResult::Abort;
        }
        match std::str::from_utf8(blob.content()) {
            Ok(text) => files.push(SourceFile {
                path: full,
                content: text.to_string(),
            }),
            Err(_) => {
                failure = Some(read_error(format!("{full} is not UTF-8 text")));
                return TreeWalkResult::Abort;
            }
        }
        TreeWalkResult::Ok
    })
    .map_err(|e| {
        failure
            .take()
            .unwrap_or_else(|| read_error(e.message().to_string()))
    })?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// `./deploy/` → `deploy`; `./`, `/` and `` → `` (the repository root).
fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn open_cache(cache: &Path) -> Result<Repository, FetchError> {
    let failed = |e: git2::Error| FetchError::Cache {
        path: cache.display().to_string(),
        message: e.message().to_string(),
    };
    match Repository::open_bare(cache) {
        Ok(repo) => Ok(repo),
        Err(_) => {
            std::fs::create_dir_all(cache).map_err(|e| FetchError::Cache {
                path: cache.display().to_string(),
                message: e.to_string(),
            })?;
            Repository::init_bare(cache).map_err(failed)
        }
    }
}

/// The credential callbacks for fetching `url`. The Secret's credentials are
/// only ever given to `url`'s origin (scheme, host and port): libgit2 follows
/// a redirect of the first request to another host and then asks for
/// credentials for that host, which must not get them (as curl, and so the
/// git CLI, never sends them to another origin either).
fn callbacks<'a>(url: &str, credentials: Option<&'a Credentials>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0;
    let expected = origin(url);
    callbacks.credentials(move |asking, _username, allowed| {
        let same_origin = matches!((origin(asking), &expected), (Some(a), Some(e)) if a == *e);
        if credentials.is_some() && !same_origin {
            return Err(git2::Error::from_str(&format!(
                "the remote redirected to {}: the GitSource's credentials are only sent to {}",
                strip_userinfo(asking),
                expected.as_deref().unwrap_or("the URL of the spec"),
            )));
        }
        attempts += 1;
        if attempts > 1 {
            // libgit2 asks again after a refused credential; asking forever would hang.
            return Err(git2::Error::from_str(
                "the remote refused the credentials of the GitSource's Secret",
            ));
        }
        match credentials {
            Some(c) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Cred::userpass_plaintext(&c.username, &c.password)
            }
            Some(_) => Err(git2::Error::from_str(
                "the remote asks for a kind of credentials other than a user name and password or token",
            )),
            None => Err(git2::Error::from_str(
                "the remote asks for credentials: set spec.credentials.secretRef to a Secret with username and password",
            )),
        }
    });
    callbacks
}

/// `scheme://host:port` of `url`, lowercase, with the scheme's default port
/// when none is given; `None` when `url` has no `scheme://` (never equal to
/// anything, so no credentials go to a URL that cannot be compared).
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = host_port.to_ascii_lowercase();
    // `[::1]:8080`, `[::1]`, `host:8080`, `host`.
    let has_port = match host_port.rfind(']') {
        Some(bracket) => host_port[bracket..].contains(':'),
        None => host_port.contains(':'),
    };
    if has_port || host_port.is_empty() {
        return Some(format!("{scheme}://{host_port}"));
    }
    let port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        "ssh" => "22",
        "git" => "9418",
        _ => "",
    };
    Some(format!("{scheme}://{host_port}:{port}"))
}

/// `url` without user information, for messages: `https://tok@host/r` → `https://host/r`.
pub fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .current_dir(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .status()
            .expect("git runs (apt-get install git)");
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn paths_are_normalized_and_userinfo_stripped() {
        assert_eq!(normalize("./"), "");
        assert_eq!(normalize("./deploy//apps/"), "deploy/apps");
        assert_eq!(
            strip_userinfo("https://user:tok@example.com/a/b.git"),
            "https://example.com/a/b.git"
        );
        assert_eq!(
            strip_userinfo("git://127.0.0.1:9418/r.git"),
            "git://127.0.0.1:9418/r.git"
        );
        assert_eq!(strip_userinfo("https://tok@example.com"), "https://example.com");
        assert_eq!(
            origin("https://user:tok@GitHub.com/a/b.git"),
            Some("https://github.com:443".into())
        );
        assert_eq!(origin("https://github.com:443/c"), origin("https://github.com/a"));
        assert_ne!(origin("http://github.com/a"), origin("https://github.com/a"));
        assert_ne!(
            origin("https://github.com.evil.example/a"),
            origin("https://github.com/a")
        );
        assert_ne!(
            origin("http://localhost:8080/a"),
            origin("http://127.0.0.1:8080/a")
        );
        assert_ne!(
            origin("http://127.0.0.1:8081/a"),
            origin("http://127.0.0.1:8080/a")
        );
        assert_eq!(origin("http://[::1]/a"), Some("http://[::1]:80".into()));
        assert_eq!(origin("http://[::1]:8080/a"), Some("http://[::1]:8080".into()));
        assert_eq!(origin("not a url"), None);
        let shown = format!(
            "{:?}",
            Credentials {
                username: "u".into(),
                password: "s3cret".into()
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    /// Against a real repository on disk (`file://`): fetch once, then the
    /// unchanged head is found in the cache; a new commit is fetched; only
    /// YAML under the path is read.
    #[test]
    fn fetches_only_when_the_head_moved_and_reads_yaml_under_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("deploy/apps")).unwrap();
        git(&work, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(work.join("deploy/apps/a.yaml"), "a: 1\n").unwrap();
        std::fs::write(work.join("deploy/b.yml"), "b: 1\n").unwrap();
        std::fs::write(work.join("deploy/README.md"), "not yaml\n").unwrap();
        std::fs::write(work.join("outside.yaml"), "c: 1\n").unwrap();
        git(&work, &["add", "."]);
        git(&work, &["commit", "--quiet", "-m", "first"]);
        let url = format!("file://{}", work.display());
        let cache = dir.path().join("cache");

        let first = fetch_head(&cache, &url, "main", None).unwrap();
        assert!(first.fetched);
        let again = fetch_head(&cache, &url, "main", None).unwrap();
        assert_eq!(
            again,
            Head {
                commit: first.commit.clone(),
                fetched: false
            }
        );
        let files = read_manifests(&cache, &first.commit, "./deploy/").unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["deploy/apps/a.yaml", "deploy/b.yml"]);
        assert_eq!(read_manifests(&cache, &first.commit, "./").unwrap().len(), 3);
        let missing = read_manifests(&cache, &first.commit, "nowhere").unwrap_err();
        assert_eq!(missing.reason(), "PathNotFound");

        std::fs::write(work.join("deploy/b.yml"), "b: 2\n").unwrap();
        git(&work, &["commit", "--quiet", "-am", "second"]);
        let second = fetch_head(&cache, &url, "main", None).unwrap();
        assert!(second.fetched);
        assert_ne!(second.commit, first.commit);
        let files = read_manifests(&cache, &second.commit, "deploy").unwrap();
        assert_eq!(files[1].content, "b: 2\n");

        let err = fetch_head(&cache, &url, "release", None).unwrap_err();
        assert_eq!(err.reason(), "BranchNotFound", "{err}");
    }
}
