//! Rerunnable figures, printed as tables (docs/performance.md reads them):
//!
//! - `emulator`: the emulator against a real container engine — container
//!   start latency, one Function test case, the App health check, and a whole
//!   emulator run of each example;
//! - `gitops`: a push reaching the cluster through the webhook and through the
//!   polling interval (the operator in-process against the real local control
//!   plane and a real `git daemon`), and the operator's git2 fetch against the
//!   git CLI on a repository with 10,000 commits;
//! - `promotion`: how soon a promotion decision is written once its evidence
//!   is there — an SLO gate's condition true in the real Prometheus, and an
//!   `/approve` delivered through the webhook from the GitHub double (the
//!   operator in-process against the real local control plane).
//!
//! ```text
//! make bench                       # cargo run -p winky-e2e --bin winky-bench
//! cargo run -p winky-e2e --bin winky-bench -- --runs 30
//! cargo run -p winky-e2e --bin winky-bench -- --only gitops --runs 10
//! cargo run -p winky-e2e --bin winky-bench -- --only promotion --runs 10
//! ```
//!
//! Everything it starts (podman, etcd, kube-apiserver, kube-controller-manager,
//! `git daemon`, Prometheus) runs on loopback under `target/e2e/bench-*` and is
//! stopped and removed afterwards, also on Ctrl-C; only the generated
//! repository stays, cached in `target/e2e/bench-git/`. When a gitops or
//! promotion part fails, its directory (with every component's log) is kept
//! and its path printed.

// A crate root's modules would live next to it, where Cargo looks for binaries.
#[path = "winky-bench/emulator.rs"]
mod emulator;
#[path = "winky-bench/fetch.rs"]
mod fetch;
#[path = "winky-bench/promotion.rs"]
mod promotion;
#[path = "winky-bench/sync.rs"]
mod sync;
#[path = "winky-bench/table.rs"]
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use winky_e2e::workspace_root;

const USAGE: &str = "usage: winky-bench [--runs N] [--only PARTS] [--pushes N] [--polled N]

PARTS is a comma-separated list of (default: emulator,gitops,promotion):
  emulator   against a podman engine it starts for the run:
             container start, one Function test case, each example's App
             health check and whole `winky emulate`, N runs each
  gitops     sync and fetch below
  sync       against a local control plane, the operator in-process and a
             `git daemon`: push -> commit applied through the signed push
             webhook (--pushes, default 20) and through the polling interval
             alone (--polled, default 5)
  fetch      the operator's git2 fetch against the git CLI on a generated
             repository of 10,000 commits (cached in target/e2e/bench-git/),
             shallow and full, and the head-unchanged listing, N runs each
  promotion  against a local control plane, the operator in-process, the
             real Prometheus and the GitHub double: an SLO gate's condition
             true in Prometheus -> Promoted, and a signed `/approve`
             delivery answered 202 -> approval counted / Promoted, N runs
             each (an App each; the SLO runs take ~15-20 s apiece)

and prints one table per part. --runs N (default 10) is the count of runs
where a part repeats one measurement.";

#[derive(Clone, Copy, Debug)]
struct Args {
    runs: usize,
    emulator: bool,
    sync: bool,
    fetch: bool,
    promotion: bool,
    pushes: sync::Pushes,
}

fn parse_args() -> Option<Args> {
    let mut args = Args {
        runs: 10,
        emulator: true,
        sync: true,
        fetch: true,
        promotion: true,
        pushes: sync::Pushes {
            webhook: 20,
            polled: 5,
        },
    };
    let count = |n: Option<String>| n.and_then(|n| n.parse::<usize>().ok()).filter(|n| *n > 0);
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--runs" => args.runs = count(words.next())?,
            "--pushes" => args.pushes.webhook = count(words.next())?,
            "--polled" => args.pushes.polled = count(words.next())?,
            "--only" => {
                let parts = words.next()?;
                (args.emulator, args.sync, args.fetch, args.promotion) = (false, false, false, false);
                for part in parts.split(',') {
                    match part.trim() {
                        "emulator" => args.emulator = true,
                        "gitops" => (args.sync, args.fetch) = (true, true),
                        "sync" => args.sync = true,
                        "fetch" => args.fetch = true,
                        "promotion" => args.promotion = true,
                        _ => return None,
                    }
                }
            }
            _ => return None,
        }
    }
    Some(args)
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let cancelled = Arc::new(AtomicBool::new(false));
    // Ctrl-C drops the bench, and with it every process and directory it made.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = bench(args, cancelled.clone()) => outcome,
            _ = tokio::signal::ctrl_c() => {
                eprintln!();
                Err(anyhow::anyhow!("interrupted"))
            }
        }
    });
    // Work left on the blocking pool (a fetch, a repository being generated)
    // sees the flag and stops.
    cancelled.store(true, Ordering::Relaxed);
    runtime.shutdown_timeout(Duration::from_secs(20));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("winky-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args, cancelled: Arc<AtomicBool>) -> Result<()> {
    if args.emulator {
        emulator::bench(args.runs).await?.print();
    }
    if args.sync {
        let mut scratch = Scratch::create("sync")?;
        // Each table is printed when its measurement ends.
        let outcome = sync::bench(scratch.path(), args.pushes).await;
        if outcome.is_err() {
            scratch.keep();
        }
        outcome?;
    }
    if args.fetch {
        let mut scratch = Scratch::create("fetch")?;
        let path = scratch.path().to_path_buf();
        let runs = args.runs;
        let outcome = tokio::task::spawn_blocking(move || fetch::bench(&path, runs, &cancelled))
            .await
            .context("the fetch bench did not finish")
            .and_then(|r| r);
        if outcome.is_err() {
            scratch.keep();
        }
        outcome?.print();
    }
    if args.promotion {
        let mut scratch = Scratch::create("promotion")?;
        // Each table is printed when its measurement ends.
        let outcome = promotion::bench(scratch.path(), args.runs).await;
        if outcome.is_err() {
            scratch.keep();
        }
        outcome?;
    }
    Ok(())
}

/// A directory `target/e2e/bench-<part>-<pid>/` removed when dropped, unless kept.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Scratch {
    fn create(part: &str) -> Result<Self> {
        let path = workspace_root()
            .join("target/e2e")
            .join(format!("bench-{part}-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path, keep: false })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (and the logs in it) for a look after a failure.
    fn keep(&mut self) {
        self.keep = true;
        eprintln!("winky-bench: logs kept in {}", self.path.display());
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
