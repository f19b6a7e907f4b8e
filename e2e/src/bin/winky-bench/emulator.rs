//! The emulator against a real container engine: container start latency, one
//! Function test case, the App health check, and a whole emulator run of each
//! example.
//!
//! It starts its own podman engine (`hack/podman.sh`) under `target/e2e/` and
//! removes it afterwards. Debug builds measure the engine more than Winky: the
//! sandbox's own cost (create, start, attach, remove) dominates every figure.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use winky_crds::Function;
use winky_e2e::engine::ContainerEngine;
use winky_e2e::{workspace_binary, workspace_root};
use winky_emulator::{Bundle, CheckKind, Engine, functions};

use crate::table::{Stats, Table, profile};

pub async fn bench(runs: usize) -> Result<Table> {
    let dir = workspace_root()
        .join("target/e2e")
        .join(format!("bench-{}", std::process::id()));
    eprintln!("starting a container engine in {}", dir.display());
    // Its Drop stops the engine and removes the directory, on every way out.
    let container_engine = ContainerEngine::start(&dir)?;
    eprintln!("loading the example images (hack/images.sh)");
    container_engine.load_example_images(&workspace_binary("winky")?)?;
    let engine = Engine::connect(container_engine.socket()).await?;
    let mut rows: Vec<(String, Vec<Duration>)> = Vec::new();

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
    rows.push(("container start".into(), start));
    rows.push(("function case".into(), case));

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
        rows.push((format!("{app} health"), health));
        rows.push((format!("{app} emulate ({checks} checks)"), whole));
    }

    let mut table = Table::new(
        format!(
            "winky-bench: emulator, {runs} runs each, {} build, times in ms",
            profile()
        ),
        &["n", "min", "median", "p90", "max"],
    );
    for (name, samples) in rows {
        table.row(name, Stats::new(&samples).cells(&[0.0, 0.5, 0.9, 1.0]));
    }
    Ok(table)
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
