//! The App health check: the App's image starts in the sandbox (network
//! `none`) and answers its readiness probe (or liveness, or `/`). The probe
//! runs in a second, busybox-only container that joins the App's network
//! namespace, so the App is reached on its loopback and on nothing else.

use std::time::{Duration, Instant};

use winky_crds::App;

use crate::engine::{Engine, RunSpec};
use crate::images;
use crate::quantity;
use crate::report::{Check, CheckKind};

/// How long an App gets to answer its probe.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub async fn check(engine: Option<&Engine>, app: &App, revision: &str) -> Check {
    let started = Instant::now();
    let name = format!(
        "{} answers its health probe",
        app.metadata.name.as_deref().unwrap_or_default()
    );
    let (passed, message, logs) = match engine {
        None => (false, crate::engine::NO_ENGINE.into(), String::new()),
        Some(engine) => match probe(engine, app, revision).await {
            Ok((message, logs)) => (true, message, logs),
            Err((message, logs)) => (false, message, logs),
        },
    };
    Check::finished(name, CheckKind::AppHealth, started, passed, message, &logs)
}

async fn probe(engine: &Engine, app: &App, revision: &str) -> Result<(String, String), (String, String)> {
    let spec = &app.spec;
    let fail = |message: String| (message, String::new());
    match engine.has_image(&spec.image).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(fail(format!(
                "image {image} is not in the container engine: build it and load it \
                 (`hack/images.sh SOCKET` for the examples, or `winky image import {image} PROGRAM` \
                 for a static program)",
                image = spec.image
            )));
        }
        Err(e) => return Err(fail(e.to_string())),
    }
    let probe_image = images::probe_image(engine)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let probes = spec.probes.clone().unwrap_or_default();
    let path = probes.readiness.or(probes.liveness).unwrap_or_else(|| "/".into());
    let resources = spec.resources.clone().unwrap_or_default();
    let app_spec = RunSpec {
        image: spec.image.clone(),
        entrypoint: spec.command.clone(),
        command: spec.args.clone(),
        env: [
            ("PORT", spec.port.to_string()),
            ("WINKY_APP", app.metadata.name.clone().unwrap_or_default()),
            ("WINKY_REVISION", revision.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(spec.env.iter().map(|e| (e.name.clone(), e.value.clone())))
        .collect(),
        stdin: None,
        memory_bytes: resources
            .memory
            .as_deref()
            .and_then(quantity::bytes)
            .unwrap_or_else(|| {
                quantity::bytes(winky_crds::defaults::APP_MEMORY).expect("the default parses")
            }),
        nano_cpus: resources
            .cpu
            .as_deref()
            .and_then(quantity::nano_cpus)
            .unwrap_or_else(|| {
                quantity::nano_cpus(winky_crds::defaults::APP_CPU).expect("the default parses")
            }),
        timeout: DEADLINE,
        network_of: None,
    };
    let container = engine
        .start_detached(&app_spec)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let url = format!("http://127.0.0.1:{}{path}", spec.port);
    let started = Instant::now();
    let result = loop {
        if let Ok(Some(code)) = engine.exited(&container.id).await {
            break Err(format!(
                "the App's container exited with {} before answering {path}",
                code.unwrap_or(-1)
            ));
        }
        let probe = RunSpec {
            image: probe_image.clone(),
            entrypoint: vec!["/bin/wget".into()],
            // busybox 1.35's wget crashes with `-T` or `-O /dev/null` here; the run's own
            // deadline bounds the probe, and its output is discarded.
            command: vec!["-q".into(), "-O".into(), "-".into(), url.clone()],
            env: vec![],
            stdin: None,
            memory_bytes: 32 << 20,
            nano_cpus: 250_000_000,
            timeout: Duration::from_secs(5),
            network_of: Some(container.id.clone()),
        };
        match engine.run(&probe).await {
            Ok(outcome) if outcome.exit_code == Some(0) => {
                break Ok(format!(
                    "answered GET {path} on port {} after {} ms",
                    spec.port,
                    started.elapsed().as_millis()
                ));
            }
            Ok(_) => {}
            Err(e) => break Err(e.to_string()),
        }
        if started.elapsed() > DEADLINE {
            break Err(format!(
                "no answer on GET {path} (port {}) within {} s",
                spec.port,
                DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let logs = engine.logs(&container.id).await;
    engine.remove(&container.id).await;
    result.map(|m| (m, logs.clone())).map_err(|m| (m, logs))
}
