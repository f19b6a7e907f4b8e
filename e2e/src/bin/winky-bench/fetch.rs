//! The operator's git2 fetch against the git CLI doing the same work, on a
//! repository with a long history served by `git daemon` on loopback.
//!
//! The repository is generated once with `git fast-import` and cached under
//! `target/e2e/bench-git/<shape>/`, so a second run costs nothing. Its blobs
//! are pseudo-random bytes from a fixed seed: the same repository on every
//! machine, and nothing that zlib or delta compression can shrink.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use winky_e2e::git::{GitServer, git};
use winky_e2e::workspace_root;
use winky_operator::gitsource::fetch::fetch_head;

use crate::table::{Stats, Table, profile};

/// The generated repository.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Commits on `main`.
    pub commits: usize,
    /// Files in every tree; the first commit adds them all, each later commit rewrites one.
    pub files: usize,
    /// Size of every file.
    pub blob_bytes: usize,
}

/// 10,000 commits, about 50 MB packed; a tip tree of about 1 MB.
pub const SHAPE: Shape = Shape {
    commits: 10_000,
    files: 200,
    blob_bytes: 5_000,
};

impl Shape {
    /// The cache directory's name: a change of shape or of the generator makes a new one.
    fn key(&self) -> String {
        format!(
            "history-v1-{}c-{}f-{}b",
            self.commits, self.files, self.blob_bytes
        )
    }
}

/// No measurement takes longer than this (it stops early, with the samples it has).
const BUDGET: Duration = Duration::from_secs(120);

/// Measures the fetches `runs` times each. Blocks: run it on the blocking pool.
/// `cancelled` turns true when the bench is interrupted.
pub fn bench(scratch: &Path, runs: usize, cancelled: &AtomicBool) -> Result<Table> {
    let shape = SHAPE;
    let served = ensure_repository(shape, cancelled)?;
    let bare = served.join("repos/history.git");
    let head = git(&bare, &["rev-parse", "refs/heads/main"])?.trim().to_string();
    let packed = dir_bytes(&bare.join("objects"))?;
    let server = GitServer::start(&served)?;
    let url = server.url("history");
    let work = scratch.join("fetch");
    std::fs::create_dir_all(&work)?;
    let fresh = |label: &str, i: usize| work.join(format!("{label}-{i}"));
    let check = || {
        if cancelled.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    };

    // One untimed round of each first: the served pack in the page cache,
    // `git daemon` and libgit2 warmed up.
    eprintln!("fetch: warming up");
    let warm = fresh("warm-cli", 0);
    cli_fetch(&warm, &url, false)?;
    std::fs::remove_dir_all(&warm)?;
    let warm_git2 = fresh("warm-git2", 0);
    git2_fetch(&warm_git2, &url, &head)?;

    // Shallow: git2 and the CLI alternate, and alternate which goes first.
    let (mut git2_shallow, mut cli_shallow) = (Vec::new(), Vec::new());
    let (mut git2_bytes, mut cli_bytes) = (0, 0);
    let started = Instant::now();
    for i in 0..runs {
        check()?;
        if started.elapsed() > BUDGET {
            break;
        }
        eprint!("\rfetch: shallow {}/{runs}", i + 1);
        for git2_now in [i % 2 == 0, i % 2 == 1] {
            if git2_now {
                let dir = fresh("git2", i);
                git2_shallow.push(git2_fetch(&dir, &url, &head)?);
                git2_bytes = dir_bytes(&dir.join("objects"))?;
                std::fs::remove_dir_all(&dir)?;
            } else {
                let dir = fresh("cli", i);
                cli_shallow.push(cli_fetch(&dir, &url, true)?);
                let fetched = git(&dir, &["rev-parse", "refs/heads/main"])?;
                if fetched.trim() != head || !dir.join("shallow").is_file() {
                    bail!("the CLI's shallow fetch did not produce a shallow {head}");
                }
                cli_bytes = dir_bytes(&dir.join("objects"))?;
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    eprintln!();

    let mut cli_full = Vec::new();
    let mut full_bytes = 0;
    let started = Instant::now();
    for i in 0..runs {
        check()?;
        if started.elapsed() > BUDGET {
            break;
        }
        eprint!("\rfetch: full {}/{runs}", i + 1);
        let dir = fresh("cli-full", i);
        cli_full.push(cli_fetch(&dir, &url, false)?);
        full_bytes = dir_bytes(&dir.join("objects"))?;
        std::fs::remove_dir_all(&dir)?;
    }
    eprintln!();

    // What every interval costs when nothing was pushed: list the remote's refs.
    let (mut unchanged, mut ls_remote) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for i in 0..runs {
        check()?;
        if started.elapsed() > BUDGET {
            break;
        }
        eprint!("\rfetch: head unchanged {}/{runs}", i + 1);
        let began = Instant::now();
        let listed = fetch_head(&warm_git2, &url, "main", None)?;
        unchanged.push(began.elapsed());
        if listed.fetched || listed.commit != head {
            bail!("a warm cache fetched again: {listed:?}");
        }
        let began = Instant::now();
        let out = git(&work, &["ls-remote", &url, "refs/heads/main"])?;
        ls_remote.push(began.elapsed());
        if !out.starts_with(&head) {
            bail!("git ls-remote answered {out:?}");
        }
    }
    eprintln!();
    std::fs::remove_dir_all(&work)?;
    drop(server);

    let mut table = Table::new(
        format!(
            "winky-bench: git2 fetch vs the git CLI, {runs} runs each, {} build, times in ms",
            profile()
        ),
        &["n", "min", "median", "max", "goal"],
    );
    let quantiles = [0.0, 0.5, 1.0];
    let row = |table: &mut Table, name: &str, samples: &[Duration], goal: &str| {
        let mut cells = Stats::new(samples).cells(&quantiles);
        cells.push(goal.to_string());
        table.row(name, cells);
    };
    row(
        &mut table,
        "git2 shallow fetch, fresh cache (fetch_head)",
        &git2_shallow,
        "",
    );
    row(
        &mut table,
        "git CLI: init --bare + fetch --depth 1",
        &cli_shallow,
        "",
    );
    let (git2_median, cli_median) = (
        Stats::new(&git2_shallow).quantile(0.5),
        Stats::new(&cli_shallow).quantile(0.5),
    );
    if let (Some(git2_median), Some(cli_median)) = (git2_median, cli_median) {
        let ratio = git2_median / cli_median;
        table.row(
            "git2 / CLI, shallow (ratio of medians)",
            vec![
                "-".into(),
                "-".into(),
                format!("{ratio:.2}×"),
                "-".into(),
                verdict(ratio <= 1.5, "≤ 1.5×"),
            ],
        );
    }
    row(&mut table, "git CLI full fetch (context)", &cli_full, "");
    row(
        &mut table,
        "git2 head unchanged, warm cache (fetch_head)",
        &unchanged,
        "",
    );
    row(&mut table, "git CLI ls-remote (context)", &ls_remote, "");
    table.note(format!(
        "Repository: {} commits on main, {} files of {} pseudo-random bytes (each commit rewrites one), \
         {:.1} MB packed, served by `git daemon` on loopback; generated once into target/e2e/bench-git/{}/.",
        shape.commits,
        shape.files,
        shape.blob_bytes,
        mb(packed),
        shape.key()
    ));
    table.note(format!(
        "Every fetch goes into a fresh empty directory; the shallow git2 and CLI runs alternate after one \
         untimed warm-up each. On disk after one fetch: shallow {:.1} MB (git2), {:.1} MB (CLI); full {:.1} MB.",
        mb(git2_bytes),
        mb(cli_bytes),
        mb(full_bytes)
    ));
    table.note(
        "\"Head unchanged\" is the operator's fetch_head on a cache that already holds the head: it only \
         lists the remote's refs. Not measured: a full fetch with git2 (the operator never does one over \
         the network, and winky-e2e has no git2 dependency of its own).",
    );
    if cfg!(debug_assertions) {
        table.note(
            "In a debug build libgit2 (vendored C) is compiled without optimisation; the git CLI is the \
             distribution's optimised build.",
        );
    }
    Ok(table)
}

fn verdict(met: bool, goal: &str) -> String {
    format!("{goal}: {}", if met { "met" } else { "MISSED" })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The operator's fetch into a new cache at `dir`; checks it is the expected shallow head.
fn git2_fetch(dir: &Path, url: &str, head: &str) -> Result<Duration> {
    let began = Instant::now();
    let fetched = fetch_head(dir, url, "main", None)?;
    let took = began.elapsed();
    if !fetched.fetched || fetched.commit != head || !dir.join("shallow").is_file() {
        bail!("git2 did not fetch a shallow {head}: {fetched:?}");
    }
    Ok(took)
}

/// `git init --bare` + `git fetch [--depth 1] <url> +refs/heads/main:refs/heads/main`
/// into `dir`, as one timed unit. Auto-maintenance is off: git2 does none either.
fn cli_fetch(dir: &Path, url: &str, shallow: bool) -> Result<Duration> {
    let began = Instant::now();
    let path = dir.display().to_string();
    run_git(&["init", "--quiet", "--bare", &path])?;
    let mut args = vec![
        "-C",
        &path,
        "-c",
        "gc.auto=0",
        "-c",
        "maintenance.auto=false",
        "fetch",
        "--quiet",
        "--no-tags",
    ];
    if shallow {
        args.extend(["--depth", "1"]);
    }
    args.extend([url, "+refs/heads/main:refs/heads/main"]);
    run_git(&args)?;
    Ok(began.elapsed())
}

fn run_git(args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .context("running git: apt-get install git")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Total size of the files under `dir`.
fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// The directory whose `repos/history.git` is the generated repository,
/// generating it when it is not cached yet.
fn ensure_repository(shape: Shape, cancelled: &AtomicBool) -> Result<PathBuf> {
    let base = workspace_root().join("target/e2e/bench-git");
    let key = shape.key();
    let done = base.join(&key);
    // Generated under a temporary name and renamed: the name exists only when complete.
    if done.join("repos/history.git/HEAD").is_file() {
        return Ok(done);
    }
    std::fs::create_dir_all(&base)?;
    // Leftovers of a generator that was killed.
    let prefix = format!("{key}.tmp-");
    for entry in std::fs::read_dir(&base)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(&prefix)
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(base.join(&name));
        }
    }
    let tmp = RemoveOnDrop(base.join(format!("{prefix}{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&tmp.0);
    eprintln!(
        "fetch: generating the repository ({} commits; once, cached in {})",
        shape.commits,
        done.display()
    );
    let began = Instant::now();
    generate(&tmp.0.join("repos/history.git"), shape, cancelled)?;
    std::fs::rename(&tmp.0, &done)
        .with_context(|| format!("renaming {} to {}", tmp.0.display(), done.display()))?;
    eprintln!("fetch: generated in {:.1} s", began.elapsed().as_secs_f64());
    Ok(done)
}

/// Removes a directory when dropped (a no-op once it was renamed away).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the repository into the bare repository `bare` with one
/// `git fast-import` stream, then packs it into one pack.
fn generate(bare: &Path, shape: Shape, cancelled: &AtomicBool) -> Result<()> {
    std::fs::create_dir_all(bare)?;
    git(bare, &["init", "--quiet", "--bare", "--initial-branch=main", "."])?;
    let mut child = Command::new("git")
        .current_dir(bare)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running git fast-import: apt-get install git")?;
    let stdin = child.stdin.take().context("fast-import's stdin")?;
    let written = write_stream(BufWriter::with_capacity(1 << 20, stdin), shape, cancelled);
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    written.with_context(|| format!("writing to git fast-import ({})", stderr.trim()))?;
    if !out.status.success() {
        bail!("git fast-import failed: {}", stderr.trim());
    }
    // One pack (with a bitmap: bare repositories write one by default), as a forge serves.
    git(bare, &["repack", "-a", "-d", "-q"])?;
    Ok(())
}

fn write_stream(mut w: impl Write, shape: Shape, cancelled: &AtomicBool) -> Result<()> {
    let mut blob = vec![0u8; shape.blob_bytes];
    let manifest = "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata:\n  name: history\n\
                    spec:\n  image: history:1\n  port: 8080\n";
    for i in 0..shape.commits {
        if i % 500 == 0 {
            if cancelled.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            eprint!("\rfetch: commit {i}/{}", shape.commits);
        }
        let changed: Vec<usize> = if i == 0 {
            (0..shape.files).collect()
        } else {
            vec![i % shape.files]
        };
        let message = format!("chore: rewrite data/f{:03}.bin ({i})\n", changed[0]);
        writeln!(w, "commit refs/heads/main")?;
        writeln!(
            w,
            "committer Winky Bench <bench@winky.invalid> {} +0000",
            1_700_000_000 + i as u64 * 60
        )?;
        write!(w, "data {}\n{message}", message.len())?;
        if i == 0 {
            write!(
                w,
                "M 100644 inline deploy/history.yaml\ndata {}\n{manifest}\n",
                manifest.len()
            )?;
        }
        for file in changed {
            fill(&mut blob, ((i as u64) << 20) | file as u64);
            write!(w, "M 100644 inline data/f{file:03}.bin\ndata {}\n", blob.len())?;
            w.write_all(&blob)?;
            writeln!(w)?;
        }
        writeln!(w)?;
    }
    eprintln!("\rfetch: commit {0}/{0}", shape.commits);
    writeln!(w, "done")?;
    w.flush()?;
    Ok(())
}

/// Fills `buf` with splitmix64 output from `seed`: deterministic, incompressible.
fn fill(buf: &mut [u8], seed: u64) {
    let mut state = seed;
    for chunk in buf.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}
