//! A real git server on loopback: `git daemon` serving bare repositories over
//! `git://`, push enabled, so the agent pushes over the network with git2 the
//! way it pushes to a forge.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::controlplane::free_port;
use crate::process::Component;

/// Runs `git args…` in `dir` with a fixed identity; the error carries git's stderr.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Winky Test")
        .env("GIT_AUTHOR_EMAIL", "test@winky.invalid")
        .env("GIT_COMMITTER_NAME", "Winky Test")
        .env("GIT_COMMITTER_EMAIL", "test@winky.invalid")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .with_context(|| "running git: install it with `apt-get install git`")?;
    if !output.status.success() {
        bail!(
            "git {} failed in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `git daemon` on a free loopback port. Dropping it stops the daemon.
#[derive(Debug)]
pub struct GitServer {
    root: PathBuf,
    port: u16,
    _daemon: Component,
}

impl GitServer {
    /// Serves the bare repositories under `<dir>/repos`; logs to `<dir>/git-daemon.log`.
    pub fn start(dir: &Path) -> Result<Self> {
        let root = dir.join("repos");
        std::fs::create_dir_all(&root)?;
        let port = free_port()?;
        let git = which_git()?;
        let args: Vec<String> = vec![
            "daemon".into(),
            "--reuseaddr".into(),
            "--export-all".into(),
            "--enable=receive-pack".into(),
            "--informative-errors".into(),
            "--listen=127.0.0.1".into(),
            format!("--port={port}"),
            format!("--base-path={}", root.display()),
            root.display().to_string(),
        ];
        let daemon = Component::spawn("git-daemon", &git, &args, dir, None)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "git daemon did not listen on {port} within 10 s: {}",
                    daemon.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            root,
            port,
            _daemon: daemon,
        })
    }

    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.port)
    }

    pub fn git_dir(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.git"))
    }

    /// A bare repository `name` whose `main` holds `files` in one commit.
    pub fn create(&self, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
        let bare = self.git_dir(name);
        let seed = self.root.join(format!("{name}.seed"));
        seed_repository(&self.root, &bare, &bare.display().to_string(), &seed, files)?;
        Ok(bare)
    }
}

/// Makes `bare` a repository whose `main` holds `files` in one commit,
/// pushed from a clone at `seed` of `clone_url` (the bare path, or a URL
/// through a server), which is removed afterwards.
fn seed_repository(
    root: &Path,
    bare: &Path,
    clone_url: &str,
    seed: &Path,
    files: &[(&str, &str)],
) -> Result<()> {
    let bare_path = bare.display().to_string();
    git(
        root,
        &["init", "--quiet", "--bare", "--initial-branch=main", &bare_path],
    )?;
    git(
        root,
        &["clone", "--quiet", clone_url, &seed.display().to_string()],
    )?;
    for (path, content) in files {
        let file = seed.join(path);
        std::fs::create_dir_all(file.parent().expect("a file has a parent"))?;
        std::fs::write(&file, content)?;
    }
    git(seed, &["checkout", "--quiet", "-b", "main"])?;
    git(seed, &["add", "."])?;
    git(seed, &["commit", "--quiet", "-m", "chore: start the repository"])?;
    git(seed, &["push", "--quiet", "origin", "main"])?;
    std::fs::remove_dir_all(seed)?;
    Ok(())
}

fn which_git() -> Result<PathBuf> {
    crate::find_on_path("git").context("git is not installed: apt-get install git")
}

/// A clone of a served repository to change and push, as a person merging
/// into `main` would.
#[derive(Debug)]
pub struct WorkTree {
    dir: PathBuf,
}

impl WorkTree {
    /// Clones `url` into `dir` (which must not exist yet).
    pub fn clone(url: &str, dir: &Path) -> Result<Self> {
        let parent = dir.parent().context("a clone needs a parent directory")?;
        std::fs::create_dir_all(parent)?;
        git(parent, &["clone", "--quiet", url, &dir.display().to_string()])?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Writes `content` to `path` (relative to the root), creating directories.
    pub fn write(&self, path: &str, content: &str) -> Result<()> {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().expect("a file has a parent"))?;
        std::fs::write(&file, content)?;
        Ok(())
    }

    /// Removes `path` (relative to the root).
    pub fn remove(&self, path: &str) -> Result<()> {
        git(&self.dir, &["rm", "--quiet", "-r", path]).map(|_| ())
    }

    /// Commits everything with `message`, pushes `main` and returns the commit id.
    pub fn commit_and_push(&self, message: &str) -> Result<String> {
        git(&self.dir, &["add", "--all"])?;
        git(&self.dir, &["commit", "--quiet", "--allow-empty", "-m", message])?;
        git(&self.dir, &["push", "--quiet", "origin", "HEAD:main"])?;
        Ok(git(&self.dir, &["rev-parse", "HEAD"])?.trim().to_string())
    }

    /// The commit `main` points at here.
    pub fn head(&self) -> Result<String> {
        Ok(git(&self.dir, &["rev-parse", "HEAD"])?.trim().to_string())
    }
}

/// What an [`HttpGitServer`] saw, counted as the requests arrive.
#[derive(Debug, Default)]
struct HttpCounts {
    requests: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
    wrong: std::sync::atomic::AtomicU64,
    authenticated: std::sync::atomic::AtomicU64,
    log: std::sync::Mutex<Vec<String>>,
}

#[derive(Debug)]
struct HttpShared {
    root: PathBuf,
    backend: PathBuf,
    username: String,
    password: String,
    counts: HttpCounts,
}

/// The realm of the `WWW-Authenticate` challenge of an [`HttpGitServer`].
pub const HTTP_GIT_REALM: &str = "winky-e2e";

/// The real `git http-backend` behind HTTP basic authentication on a free
/// loopback port: smart HTTP (protocol v0 and v2, fetch and push) the way a
/// forge serves private repositories. A request without credentials, or with
/// other ones than given at start, gets `401` and a `Basic` challenge; only
/// an authenticated request reaches `git http-backend` (as `REMOTE_USER`,
/// which also enables pushing). Dropping it stops the server at once.
///
/// It runs on its own thread and runtime, so a test may block (running the
/// `git` CLI) while the server answers.
#[derive(Debug)]
pub struct HttpGitServer {
    shared: std::sync::Arc<HttpShared>,
    server: Loopback,
}

impl HttpGitServer {
    /// Serves the bare repositories under `<dir>/repos` (what a [`GitServer`]
    /// started on the same `dir` serves) to `username`/`password`.
    pub fn start(dir: &Path, username: &str, password: &str) -> Result<Self> {
        let root = dir.join("repos");
        std::fs::create_dir_all(&root)?;
        Self::start_at(root, username, password)
    }

    /// Serves what `git` serves, over HTTP behind basic authentication.
    pub fn serving(git: &GitServer, username: &str, password: &str) -> Result<Self> {
        Self::start_at(git.root.clone(), username, password)
    }

    fn start_at(root: PathBuf, username: &str, password: &str) -> Result<Self> {
        use std::sync::Arc;

        let git = which_git()?;
        let exec_path = Command::new(&git)
            .arg("--exec-path")
            .output()
            .context("running git --exec-path")?;
        let backend =
            PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim()).join("git-http-backend");
        if !backend.is_file() {
            bail!(
                "{} is missing: install git's HTTP backend with `apt-get install git`",
                backend.display()
            );
        }
        let shared = Arc::new(HttpShared {
            root,
            backend,
            username: username.to_string(),
            password: password.to_string(),
            counts: HttpCounts::default(),
        });
        let app = axum::Router::new().fallback(serve_git).with_state(shared.clone());
        let server = Loopback::start("http-git-server", app)?;
        Ok(Self { shared, server })
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// `http://127.0.0.1:PORT/<name>.git`, without credentials (what a
    /// GitSource names; its Secret holds the credentials).
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.server.port)
    }

    /// [`HttpGitServer::url`] with the credentials in it, for the `git` CLI.
    pub fn url_with_credentials(&self, name: &str) -> String {
        format!(
            "http://{}:{}@127.0.0.1:{}/{name}.git",
            percent_encode(&self.shared.username),
            percent_encode(&self.shared.password),
            self.server.port
        )
    }

    pub fn git_dir(&self, name: &str) -> PathBuf {
        self.shared.root.join(format!("{name}.git"))
    }

    /// A bare repository `name` whose `main` holds `files` in one commit,
    /// pushed through this server by the `git` CLI (so the CLI's way through
    /// the authentication and `git http-backend` is exercised too).
    pub fn create(&self, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
        let bare = self.git_dir(name);
        let seed = self.shared.root.join(format!("{name}.http-seed"));
        let root = &self.shared.root;
        seed_repository(root, &bare, &self.url_with_credentials(name), &seed, files)?;
        Ok(bare)
    }

    /// Every request received.
    pub fn requests(&self) -> u64 {
        self.shared
            .counts
            .requests
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests answered `401` (no credentials, or wrong ones).
    pub fn refusals(&self) -> u64 {
        self.shared
            .counts
            .refused
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests that presented credentials other than the right ones.
    pub fn wrong_credentials(&self) -> u64 {
        self.shared.counts.wrong.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests that presented the right credentials (and reached `git http-backend`).
    pub fn authenticated(&self) -> u64 {
        self.shared
            .counts
            .authenticated
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// One line per request: `GET /r.git/info/refs?service=… user=<who|-> → 200`.
    /// Never holds a password.
    pub fn log(&self) -> Vec<String> {
        self.shared.counts.log.lock().expect("not poisoned").clone()
    }
}

/// An axum server on a free loopback port, on its own thread and runtime
/// (so tests may block while it answers). Dropping it stops it at once.
#[derive(Debug)]
struct Loopback {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Loopback {
    fn start(name: &str, app: axum::Router) -> Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let label = name.to_string();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => {
                        eprintln!("{label}: {e}");
                        return;
                    }
                };
                tokio::select! {
                    served = axum::serve(listener, app) => {
                        if let Err(e) = served {
                            eprintln!("{label}: {e}");
                        }
                    }
                    _ = stopped => {}
                }
            });
            // Open connections and running CGI processes end with the runtime.
            runtime.shutdown_timeout(Duration::from_secs(2));
        })?;
        Ok(Self {
            port,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A loopback HTTP server that answers every request with `302 Found` to the
/// same path and query under another base URL — a remote that sends its
/// clients to another host. Dropping it stops it.
#[derive(Debug)]
pub struct HttpRedirect {
    redirected: std::sync::Arc<std::sync::atomic::AtomicU64>,
    server: Loopback,
}

impl HttpRedirect {
    /// Redirects `/<anything>` to `<target><anything>`; `target` is a base
    /// URL such as `http://localhost:8080`.
    pub fn start(target: &str) -> Result<Self> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};

        let redirected = Arc::new(AtomicU64::new(0));
        let counter = redirected.clone();
        let target = target.trim_end_matches('/').to_string();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let location = format!("{target}{}", uri.path_and_query().map_or("/", |p| p.as_str()));
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, location)],
                )
            }
        });
        let server = Loopback::start("http-redirect", app)?;
        Ok(Self { redirected, server })
    }

    /// `http://127.0.0.1:PORT/<name>.git`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.server.port)
    }

    /// Requests answered with a redirect.
    pub fn redirected(&self) -> u64 {
        self.redirected.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Percent-encodes everything but unreserved characters, for userinfo.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Who the `Authorization: Basic …` header names and whether the password is
/// right; `None` without such a header.
fn basic_auth(shared: &HttpShared, headers: &axum::http::HeaderMap) -> Option<(String, bool)> {
    use base64::Engine as _;
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Some((String::new(), false));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .unwrap_or_default();
    let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    Some((
        user.to_string(),
        user == shared.username && password == shared.password,
    ))
}

async fn serve_git(
    axum::extract::State(shared): axum::extract::State<std::sync::Arc<HttpShared>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering;

    let counts = &shared.counts;
    counts.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let line = |who: &str, status: StatusCode| {
        counts.log.lock().expect("not poisoned").push(format!(
            "{} {target} user={who} → {}",
            parts.method,
            status.as_u16()
        ));
    };
    let user = match basic_auth(&shared, &parts.headers) {
        Some((user, true)) => user,
        presented => {
            if presented.is_some() {
                counts.wrong.fetch_add(1, Ordering::SeqCst);
            }
            counts.refused.fetch_add(1, Ordering::SeqCst);
            let who = presented.map_or_else(|| "-".to_string(), |(u, _)| format!("{u}(refused)"));
            line(&who, StatusCode::UNAUTHORIZED);
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    format!("Basic realm=\"{HTTP_GIT_REALM}\""),
                )],
                "authentication required\n",
            )
                .into_response();
        }
    };
    counts.authenticated.fetch_add(1, Ordering::SeqCst);
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            line(&user, StatusCode::BAD_REQUEST);
            return (StatusCode::BAD_REQUEST, format!("reading the request: {e}\n")).into_response();
        }
    };
    let response = run_backend(&shared, &parts, &user, body).await;
    line(&user, response.status());
    response
}

/// Runs `git http-backend` as a CGI for one authenticated request.
async fn run_backend(
    shared: &HttpShared,
    parts: &axum::http::request::Parts,
    user: &str,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::http::{HeaderName, HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    use tokio::io::AsyncWriteExt as _;

    let failed = |message: String| (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
    let mut command = tokio::process::Command::new(&shared.backend);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &shared.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_NAME", "127.0.0.1")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("AUTH_TYPE", "Basic")
        .env("REMOTE_USER", user)
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_LENGTH", body.len().to_string());
    if let Some(content_type) = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        command.env("CONTENT_TYPE", content_type);
    }
    // Git-Protocol (protocol v2), Content-Encoding (gzip), … as HTTP_*; the
    // credentials never reach the backend.
    for (name, value) in &parts.headers {
        if [
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
        ]
        .contains(name)
        {
            continue;
        }
        if let Ok(value) = value.to_str() {
            let key = format!("HTTP_{}", name.as_str().to_ascii_uppercase().replace('-', "_"));
            command.env(key, value);
        }
    }
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("starting {}: {e}\n", shared.backend.display())),
    };
    let stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            // The backend may answer without reading everything: ignore a broken pipe.
            let _ = stdin.write_all(&body).await;
            let _ = stdin.shutdown().await;
        }
    });
    let output = match child.wait_with_output().await {
        Ok(output) => output,
        Err(e) => return failed(format!("running git http-backend: {e}\n")),
    };
    let _ = writer.await;
    let stdout = output.stdout;
    let Some((head_len, sep_len)) = find_header_end(&stdout) else {
        return failed(format!(
            "git http-backend answered no CGI headers ({}): {}\n",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    };
    let head = String::from_utf8_lossy(&stdout[..head_len]).into_owned();
    let mut builder = axum::http::Response::builder().status(StatusCode::OK);
    for header_line in head.lines() {
        let Some((name, value)) = header_line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            builder = builder.status(code);
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            builder = builder.header(name, value);
        }
    }
    let body = stdout[head_len + sep_len..].to_vec();
    builder
        .body(axum::body::Body::from(body))
        .unwrap_or_else(|e| failed(format!("the backend's answer: {e}\n")))
}

/// Where the CGI headers end: the length of the header block and of the
/// blank line after it (`\r\n\r\n` or `\n\n`).
fn find_header_end(out: &[u8]) -> Option<(usize, usize)> {
    let crlf = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let lf = out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}
