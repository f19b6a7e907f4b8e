//! Rerunnable figures of the emulator against a real container engine:
//! container start latency, one Function test case, the App health check, and
//! a whole emulator run of each example. Prints a table.
//!
//! ```text
//! make bench                       # cargo run -p winky-e2e --bin winky-bench
//! cargo run -p winky-e2e --bin winky-bench -- --runs 30
//! ```
//!
//! It starts its own podman engine (`hack/podman.sh`) under `target/e2e/` and
//! removes it afterwards. Debug builds measure the engine more than Winky: the
//! sandbox's own cost (create, start, attach, remove) dominates every figure.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use winky_crds::Function;
use winky_e2e::engine::ContainerEngine;
use winky_e2e::{workspace_binary, workspace_root};
use winky_emulator::{Bundle, CheckKind, Engine, functions};

const USAGE: &str = "usage: winky-bench [--runs N]

Measures, against a podman engine it starts for the run:
  container start     create -> process running, a trivial Function
  function case       one Function test case, create -> removed
  <app> health        the App's container answering its health probe
  <app> emulate       every check of examples/<app>, as `winky emulate`
and prints min, median, p90 and max of N runs (default 10).";

fn main() -> ExitCode {
    let mut runs = 10usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--runs", Some(n)) if n.parse::<usize>().is_ok_and(|n| n > 0) => runs = n.parse().unwrap_or(10),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    // Ctrl-C drops the bench, and with it the engine it started.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = bench(runs) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("winky-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One measured quantity.
struct Row {
    name: String,
    samples: Vec<Duration>,
}

async fn bench(runs: usize) -> Result<()> {
    let dir = workspace_root()
        .join("target/e2e")
        .join(format!("bench-{}", std::process::id()));
    eprintln!("starting a container engine in {}", dir.display());
    // Its Drop stops the engine and removes the directory, on every way out.
    let container_engine = ContainerEngine::start(&dir)?;
    eprintln!("loading the example images (hack/images.sh)");
    container_engine.load_example_images(&workspace_binary("winky")?)?;
    let engine = Engine::connect(container_engine.socket()).await?;
    let mut rows = Vec::new();

    let probe = probe_function()?;
    let test = probe.spec.tests[0].clone();
    let (mut start, mut case) = (Vec::new(), Vec::new());
    for i in 0..runs {
        eprint!("\rcontainer runs {}/{runs}", i + 1);
        let outcome = engine.run(&functions::run_spec(&probe, &test)).await?;
        let (passed, message) = functions::judge(&probe, &test, &outcome);
        if !passed {
            bail!("the probe function failed: {message}");
        }
        start.push(outcome.start_latency);
        case.push(outcome.duration);
    }
    eprintln!();
    rows.push(Row {
        name: "container start".into(),
        samples: start,
    });
    rows.push(Row {
        name: "function case".into(),
        samples: case,
    });

    for app in ["notes", "shop", "chat"] {
        let bundle = Bundle::load(&workspace_root().join("examples").join(app), None)
            .with_context(|| format!("loading examples/{app}"))?;
        let (mut whole, mut health) = (Vec::new(), Vec::new());
        let mut checks = 0;
        for i in 0..runs {
            eprint!("\r{app}: emulator runs {}/{runs}", i + 1);
            let started = Instant::now();
            let report = winky_emulator::run(&bundle, Some(&engine)).await;
            whole.push(started.elapsed());
            if !report.passed {
                bail!("examples/{app} failed its emulator checks:\n{report}");
            }
            checks = report.checks.len();
            health.extend(
                report
                    .checks
                    .iter()
                    .filter(|c| c.kind == CheckKind::AppHealth)
                    .map(|c| Duration::from_millis(c.duration_ms)),
            );
        }
        eprintln!();
        rows.push(Row {
            name: format!("{app} health"),
            samples: health,
        });
        rows.push(Row {
            name: format!("{app} emulate ({checks} checks)"),
            samples: whole,
        });
    }
    print_table(&rows, runs);
    Ok(())
}

/// The probe image's echo mode: a well-behaved function, the smallest case.
fn probe_function() -> Result<Function> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "probe-echo"},
        "spec": {"app": "bench", "image": "localhost/winky-probe-fn:latest", "args": ["echo"],
                 "trigger": {"http": {"path": "/probe"}}, "memory": "64Mi", "timeoutSeconds": 10,
                 "tests": [{"name": "echo", "input": {"json": {"hello": "world"}},
                            "expect": {"exitCode": 0, "outputContains": "hello"}}]},
    }))?)
}

fn print_table(rows: &[Row], runs: usize) {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("winky-bench: {runs} runs each, {profile} build, times in ms");
    println!();
    println!(
        "| {:<28} | {:>5} | {:>7} | {:>7} | {:>7} | {:>7} |",
        "measurement", "n", "min", "median", "p90", "max"
    );
    println!(
        "|{:-<30}|{:->7}|{:->9}|{:->9}|{:->9}|{:->9}|",
        "", "", "", "", "", ""
    );
    for row in rows {
        let mut ms: Vec<f64> = row.samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        if ms.is_empty() {
            println!(
                "| {:<28} | {:>5} | {:>7} | {:>7} | {:>7} | {:>7} |",
                row.name, 0, "-", "-", "-", "-"
            );
            continue;
        }
        ms.sort_by(f64::total_cmp);
        // Linear interpolation between the closest ranks.
        let at = |q: f64| {
            let rank = (ms.len() - 1) as f64 * q;
            let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
            ms[low] + (ms[high] - ms[low]) * (rank - low as f64)
        };
        println!(
            "| {:<28} | {:>5} | {:>7.0} | {:>7.0} | {:>7.0} | {:>7.0} |",
            row.name,
            ms.len(),
            ms[0],
            at(0.5),
            at(0.9),
            ms[ms.len() - 1]
        );
    }
}
