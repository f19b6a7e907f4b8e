//! The SLO gate of a promotion, end to end: the Promotion controller reads
//! the real Prometheus (Debian's package) scraping a workload that follows
//! the metrics contract, as the observed stage's App would. No data waits;
//! healthy traffic promotes; errors reject.

use std::time::Duration;

use kube::{Api, Client};
use winky_crds::App;
use winky_crds::promotion::{GateState, Phase, Promotion};
use winky_e2e::prometheus::{LoadSpec, MetricsWorkload, Prometheus, drive_load};
use winky_e2e::{ControlPlane, InProcessOperator, apply_json, apply_policy, eventually, promotions};

const WAIT: Duration = Duration::from_secs(60);

async fn promotion(client: &Client, ns: &str, stage: &str, revision: &str) -> Option<Promotion> {
    promotions(client, ns)
        .await
        .into_iter()
        .find(|p| p.spec.stage == stage && p.spec.revision.id == revision)
}

/// The App `notes` running `image` under `policy`.
fn notes(policy: &str, image: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "notes"},
        "spec": {"image": image, "port": 8080, "policy": policy},
    })
}

async fn revision_of(client: &Client, ns: &str) -> String {
    let apps: Api<App> = Api::namespaced(client.clone(), ns);
    eventually("the App's revision", WAIT, || async {
        apps.get("notes").await.ok()?.status?.revision.map(|r| r.id)
    })
    .await
}

async fn phase_is(client: &Client, ns: &str, stage: &str, revision: &str, phase: Phase) -> Promotion {
    eventually(&format!("{stage} {revision} {phase:?}"), WAIT, || async {
        let p = promotion(client, ns, stage, revision).await?;
        (p.status.as_ref()?.phase == phase).then_some(p)
    })
    .await
}

fn slo_gate(p: &Promotion) -> (GateState, String) {
    let gate = p
        .status
        .as_ref()
        .unwrap()
        .gates
        .iter()
        .find(|g| g.name == "slo")
        .unwrap();
    (gate.state, gate.evidence.clone().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn production_waits_for_the_slos_of_preview_then_promotes_or_rejects() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,winky_operator=info")
        .try_init();
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "promote-slo").await.unwrap();
    let ns = ns.name().to_string();
    // The observed stage's workload, scraped with its namespace label.
    let workload = MetricsWorkload::start(&format!("{ns}-preview"), "notes", "preview")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path(), &[workload.scrape_target()], Duration::from_secs(1))
        .await
        .unwrap();
    let policy = format!("{ns}-slo");
    apply_policy(
        &client,
        &policy,
        serde_json::json!({
            "prometheus": {"url": prometheus.url()},
            "stages": [
                {"name": "preview", "namespace": "{app.namespace}-preview", "autoPromote": true},
                {"name": "production", "autoPromote": true, "gates": {"slo": {
                    "observe": "preview", "window": "1m", "availability": "99.5", "errorRate": "0.5"}}},
            ],
        }),
    )
    .await;
    let _operator = InProcessOperator::start(client.clone(), &ns, "slo-operator");
    let _: App = apply_json(&client, &ns, notes(&policy, "notes:1")).await;
    let r1 = revision_of(&client, &ns).await;
    phase_is(&client, &ns, "preview", &r1, Phase::Promoted).await;

    // No traffic yet: the gate waits, it never passes.
    let waiting = phase_is(&client, &ns, "production", &r1, Phase::Verifying).await;
    let (state, evidence) = slo_gate(&waiting);
    assert_eq!(state, GateState::Waiting, "{evidence}");

    // Healthy traffic in preview: production is promoted, with the readings on record.
    let spec = LoadSpec {
        requests: 200,
        duration: Duration::from_secs(10),
        concurrency: 4,
    };
    drive_load(&workload.url(), spec).await.unwrap();
    let started = std::time::Instant::now();
    let promoted = phase_is(&client, &ns, "production", &r1, Phase::Promoted).await;
    println!(
        "healthy traffic answered → production promoted: {:?}",
        started.elapsed()
    );
    let gate = promoted
        .status
        .as_ref()
        .unwrap()
        .gates
        .iter()
        .find(|g| g.name == "slo")
        .unwrap()
        .clone();
    assert_eq!(gate.state, GateState::Passed);
    assert_eq!(
        gate.readings.get("availability").map(String::as_str),
        Some("100.00"),
        "{gate:?}"
    );
    assert!(
        gate.evidence
            .as_deref()
            .unwrap_or_default()
            .contains("in preview"),
        "{gate:?}"
    );

    // Preview starts failing one request in ten; then a new revision comes:
    // production judges it on the window that holds the errors, and rejects it.
    workload.set_error_ratio(0.1);
    drive_load(&workload.url(), spec).await.unwrap();
    let errors = format!("sum(winky_http_requests_total{{code=\"500\",namespace=\"{ns}-preview\"}})");
    eventually("Prometheus to see the errors", WAIT, || async {
        (prometheus.query(&errors).await.value().unwrap_or(0.0) >= 20.0).then_some(())
    })
    .await;
    let _: App = apply_json(&client, &ns, notes(&policy, "notes:2")).await;
    let r2 = eventually("a new revision", WAIT, || async {
        let r = revision_of(&client, &ns).await;
        (r != r1).then_some(r)
    })
    .await;
    let rejected = phase_is(&client, &ns, "production", &r2, Phase::Rejected).await;
    let (state, evidence) = slo_gate(&rejected);
    assert_eq!(state, GateState::Failed, "{evidence}");
    assert!(
        evidence.contains("availability") || evidence.contains("error rate"),
        "{evidence}"
    );
    // r1 keeps running in production.
    let still = promotion(&client, &ns, "production", &r1).await.unwrap();
    assert_eq!(still.status.unwrap().phase, Phase::Promoted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_breach_after_promotion_rolls_the_stage_back_and_sticks() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "rollback-slo").await.unwrap();
    let ns = ns.name().to_string();
    // Production's own traffic: the stage watched after each promotion.
    let workload = MetricsWorkload::start(&ns, "notes", "production").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path(), &[workload.scrape_target()], Duration::from_secs(1))
        .await
        .unwrap();
    let policy = format!("{ns}-watch");
    apply_policy(
        &client,
        &policy,
        serde_json::json!({
            "prometheus": {"url": prometheus.url()},
            "stages": [
                {"name": "production", "autoPromote": true,
                 "rollback": {"onSLOBreach": true, "watch": "10m"}},
            ],
        }),
    )
    .await;
    let _operator = InProcessOperator::start(client.clone(), &ns, "rollback-operator");
    let _: App = apply_json(&client, &ns, notes(&policy, "notes:1")).await;
    let r1 = revision_of(&client, &ns).await;
    phase_is(&client, &ns, "production", &r1, Phase::Promoted).await;
    let _: App = apply_json(&client, &ns, notes(&policy, "notes:2")).await;
    let r2 = eventually("a new revision", WAIT, || async {
        let r = revision_of(&client, &ns).await;
        (r != r1).then_some(r)
    })
    .await;
    phase_is(&client, &ns, "production", &r2, Phase::Promoted).await;

    // r2 fails one request in five: production goes back to r1.
    workload.set_error_ratio(0.2);
    let started = std::time::Instant::now();
    drive_load(
        &workload.url(),
        LoadSpec {
            requests: 300,
            duration: Duration::from_secs(15),
            concurrency: 4,
        },
    )
    .await
    .unwrap();
    let rolled_back = phase_is(&client, &ns, "production", &r2, Phase::RolledBack).await;
    println!(
        "errors injected → production rolled back: {:?}",
        started.elapsed()
    );
    let entry = rolled_back
        .status
        .as_ref()
        .unwrap()
        .history
        .iter()
        .find(|h| h.event == "RolledBack")
        .unwrap()
        .clone();
    assert_eq!(entry.actor, "operator");
    assert!(
        entry.message.starts_with("SLO breached in production") && entry.message.contains("error rate"),
        "{entry:?}"
    );
    let restored = phase_is(&client, &ns, "production", &r1, Phase::Promoted).await;
    let events: Vec<String> = restored
        .status
        .unwrap()
        .history
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(events.last().map(String::as_str), Some("Restored"), "{events:?}");
    // The App runs r1 in production again.
    let apps: Api<App> = Api::namespaced(client.clone(), &ns);
    eventually("production running r1 again", WAIT, || async {
        let stages = apps.get("notes").await.ok()?.status?.stages;
        stages
            .iter()
            .any(|s| s.name == "production" && s.revision.as_deref() == Some(r1.as_str()))
            .then_some(())
    })
    .await;

    // Sticky: more errors, time passing, nothing promotes r2 again, and r1
    // (put back, not watched) is not rolled back further.
    drive_load(
        &workload.url(),
        LoadSpec {
            requests: 100,
            duration: Duration::from_secs(5),
            concurrency: 2,
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let r2_now = promotion(&client, &ns, "production", &r2).await.unwrap();
    assert_eq!(r2_now.status.unwrap().phase, Phase::RolledBack);
    let r1_now = promotion(&client, &ns, "production", &r1).await.unwrap();
    assert_eq!(r1_now.status.unwrap().phase, Phase::Promoted);
}
