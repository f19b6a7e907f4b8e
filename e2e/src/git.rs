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
        git(
            &self.root,
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                &bare.display().to_string(),
            ],
        )?;
        let seed = self.root.join(format!("{name}.seed"));
        git(
            &self.root,
            &[
                "clone",
                "--quiet",
                &bare.display().to_string(),
                &seed.display().to_string(),
            ],
        )?;
        for (path, content) in files {
            let file = seed.join(path);
            std::fs::create_dir_all(file.parent().expect("a file has a parent"))?;
            std::fs::write(&file, content)?;
        }
        git(&seed, &["checkout", "--quiet", "-b", "main"])?;
        git(&seed, &["add", "."])?;
        git(&seed, &["commit", "--quiet", "-m", "chore: start the repository"])?;
        git(&seed, &["push", "--quiet", "origin", "main"])?;
        std::fs::remove_dir_all(&seed)?;
        Ok(bare)
    }
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
