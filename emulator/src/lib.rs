//! The emulator checks of an App revision, shared by `winky emulate` and the
//! operator: every Rule's tests, every Function's test cases in a container
//! sandbox, and the App's health probe — summed up in an [`EmulatorReport`].
//!
//! ```text
//! Manifests ──▶ validate (CRD schemas + CEL rules, offline) ──▶ Target
//! Bundle (App + Functions + Rules) ──▶ rules::checks     (winky-policies, in process)
//!                                  ──▶ functions::checks (engine: one container per case)
//!                                  ──▶ health::check     (engine: the App, probed from its netns)
//!                                  ══▶ EmulatorReport
//! ```

pub mod bundle;
pub mod engine;
pub mod functions;
pub mod health;
pub mod images;
pub mod quantity;
pub mod report;
pub mod rules;
pub mod validate;

use std::time::Instant;

pub use bundle::{Bundle, BundleError, Manifests, Target, revision};
pub use engine::Engine;
pub use report::{Check, CheckKind, EmulatorReport};

/// Runs every check of `bundle`. Without an engine the container checks are
/// reported as failed, with how to start one: a report never passes by
/// skipping.
pub async fn run(bundle: &Bundle, engine: Option<&Engine>) -> EmulatorReport {
    let started = Instant::now();
    let revision = revision(&bundle.app);
    let mut checks = rules::checks(&bundle.rules);
    checks.extend(functions::checks(engine, &bundle.functions).await);
    checks.push(health::check(engine, &bundle.app, &revision).await);
    EmulatorReport::new(
        &bundle.name(),
        &revision,
        checks,
        started.elapsed().as_millis() as u64,
    )
}

/// What `winky emulate` runs: the manifests' validation checks, then every
/// check of `target` — an App's, or, without an App, its Rules' tests and
/// Functions' cases. Without an App the report has no revision.
pub async fn emulate(manifests: &Manifests, target: &Target, engine: Option<&Engine>) -> EmulatorReport {
    let started = Instant::now();
    let mut checks = manifests.checks.clone();
    let (name, revision) = match target {
        Target::App(bundle) => {
            let report = run(bundle, engine).await;
            checks.extend(report.checks);
            (report.app, report.revision)
        }
        Target::WithoutApp {
            app,
            functions,
            rules,
        } => {
            checks.extend(rules::checks(rules));
            checks.extend(functions::checks(engine, functions).await);
            (app.clone(), String::new())
        }
    };
    EmulatorReport::new(&name, &revision, checks, started.elapsed().as_millis() as u64)
}
