//! Function test cases, each run in the sandbox: the Function's image with
//! the input on stdin, its memory and CPU limits, network `none`, stopped at
//! its timeout; the exit code and output are compared with what the test
//! case expects.
//!
//! A Function whose spec allows egress still gets no network here: a test
//! case must not depend on the internet, and in the cluster the
//! NetworkPolicy enforces the allow-list. The check's message says so.

use std::time::{Duration, Instant};

use futures::StreamExt;
use winky_crds::Function;
use winky_crds::function::FunctionTest;

use crate::engine::{Engine, RunOutcome, RunSpec};
use crate::quantity;
use crate::report::{Check, CheckKind};

/// Cases run at once: one per core of the machines this runs on.
const PARALLEL: usize = 2;

/// Every test case of every function; failed checks explain a missing engine or image.
pub async fn checks(engine: Option<&Engine>, functions: &[Function]) -> Vec<Check> {
    // Owned cases: a stream of borrowing closures is not `Send` for every
    // lifetime, which a spawned run (the operator's) needs.
    let cases: Vec<(Function, FunctionTest)> = functions
        .iter()
        .flat_map(|f| f.spec.tests.iter().map(move |t| (f.clone(), t.clone())))
        .collect();
    let engine = engine.cloned();
    futures::stream::iter(cases)
        .map(|(function, test)| {
            let engine = engine.clone();
            async move { check(engine.as_ref(), &function, &test).await }
        })
        .buffered(PARALLEL)
        .collect()
        .await
}

fn failed(name: String, started: Instant, message: String) -> Check {
    Check::finished(name, CheckKind::Function, started, false, message, "")
}

/// The sandbox a Function's test case runs in.
pub fn run_spec(function: &Function, test: &FunctionTest) -> RunSpec {
    let spec = &function.spec;
    let stdin = match (&test.input.json, &test.input.text) {
        (Some(json), _) => serde_json::to_vec(json).expect("JSON serializes"),
        (None, Some(text)) => text.clone().into_bytes(),
        (None, None) => Vec::new(),
    };
    let mut env = vec![
        ("WINKY_APP".to_string(), spec.app.clone()),
        (
            "WINKY_FUNCTION".to_string(),
            function.metadata.name.clone().unwrap_or_default(),
        ),
        (
            "WINKY_TIMEOUT_SECONDS".to_string(),
            spec.timeout_seconds.to_string(),
        ),
    ];
    env.extend(spec.env.iter().map(|e| (e.name.clone(), e.value.clone())));
    RunSpec {
        image: spec.image.clone(),
        entrypoint: spec.command.clone(),
        command: spec.args.clone(),
        env,
        stdin: Some(stdin),
        memory_bytes: quantity::bytes(&spec.memory).unwrap_or(512 << 20),
        nano_cpus: quantity::nano_cpus(&spec.cpu).unwrap_or(500_000_000),
        timeout: Duration::from_secs(spec.timeout_seconds.max(1) as u64),
        network_of: None,
    }
}

/// Whether the outcome is what the test case expects, and why not.
pub fn judge(function: &Function, test: &FunctionTest, outcome: &RunOutcome) -> (bool, String) {
    let spec = &function.spec;
    if outcome.oom_killed {
        return (
            false,
            format!(
                "killed: it went over its memory limit of {} (OOMKilled)",
                spec.memory
            ),
        );
    }
    if outcome.timed_out {
        return (
            false,
            format!(
                "stopped: still running at its timeout of {} s",
                spec.timeout_seconds
            ),
        );
    }
    let code = outcome.exit_code.unwrap_or(-1);
    if code != i64::from(test.expect.exit_code) {
        return (
            false,
            format!("exited with {code}, expected {}", test.expect.exit_code),
        );
    }
    if let Some(wanted) = &test.expect.output_contains
        && !outcome.stdout.contains(wanted)
    {
        return (
            false,
            format!("exited with {code}, but the output does not contain {wanted:?}"),
        );
    }
    let mut message = format!("exited with {code}");
    if let Some(wanted) = &test.expect.output_contains {
        message.push_str(&format!(", output contains {wanted:?}"));
    }
    message.push_str(&format!(" (started in {} ms)", outcome.start_latency.as_millis()));
    if !spec.network.egress.is_empty() {
        message.push_str("; egress is allowed in the cluster, the emulator gives no network");
    }
    (true, message)
}

async fn check(engine: Option<&Engine>, function: &Function, test: &FunctionTest) -> Check {
    let started = Instant::now();
    let name = format!(
        "{}/{}",
        function.metadata.name.as_deref().unwrap_or_default(),
        test.name
    );
    let Some(engine) = engine else {
        return failed(name, started, crate::engine::NO_ENGINE.into());
    };
    let image = &function.spec.image;
    match engine.has_image(image).await {
        Ok(true) => {}
        Ok(false) => {
            return failed(
                name,
                started,
                format!(
                    "image {image} is not in the container engine: build it and load it \
                     (`hack/images.sh SOCKET` for the examples, or `winky image import {image} PROGRAM`)"
                ),
            );
        }
        Err(e) => return failed(name, started, e.to_string()),
    }
    match engine.run(&run_spec(function, test)).await {
        Err(e) => failed(name, started, e.to_string()),
        Ok(outcome) => {
            let (passed, message) = judge(function, test, &outcome);
            let mut logs = outcome.stdout.clone();
            if !outcome.stderr.is_empty() {
                logs.push_str(&outcome.stderr);
            }
            Check::finished(name, CheckKind::Function, started, passed, message, &logs)
        }
    }
}
