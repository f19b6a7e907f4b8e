//! kube-apiserver restarted in the middle of a promotion, end to end: the
//! real `winky-operator` binary against a control plane of the test's own,
//! whose kube-apiserver is stopped for a few seconds while production soaks.
//! Production is promoted exactly once after it, nothing is promoted
//! twice. (A change made in the first seconds after the restart is not
//! always seen for minutes: an open finding, see docs/promotions.md.)

use std::time::{Duration, Instant};

use winky_crds::App;
use winky_crds::promotion::{Phase, Promotion};
use winky_e2e::{ControlPlane, OperatorProcess, apply_json, apply_policy, eventually, promotions};

fn phase(p: &Promotion) -> Phase {
    p.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn promoted_count(p: &Promotion) -> usize {
    p.status
        .iter()
        .flat_map(|s| s.history.iter())
        .filter(|h| h.event == "Promoted")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_apiserver_restart_in_the_middle_of_a_promotion_loses_nothing() {
    // A control plane of its own: the shared one keeps serving the other tests.
    let root = winky_e2e::workspace_root().join("target/e2e");
    let mut cp = ControlPlane::start(&root, "restart").unwrap();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "restart").await.unwrap();
    let ns = ns.name().to_string();
    let policy_name = format!("{ns}-soak");
    apply_policy(
        &client,
        &policy_name,
        serde_json::json!({"stages": [
            {"name": "preview", "autoPromote": true},
            {"name": "production", "autoPromote": true, "gates": {"soak": "8s"}},
        ]}),
    )
    .await;
    let log = cp.dir().join("operator.log");
    let _operator = OperatorProcess::start(cp.kubeconfig(), &ns, &log);
    let _: App = apply_json(
        &client,
        &ns,
        serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "notes"},
            "spec": {"image": "notes:1", "port": 8080, "policy": policy_name},
        }),
    )
    .await;
    // production soaks; the apiserver goes away for 3 s in the middle of it.
    let soaking = eventually("production soaking", Duration::from_secs(30), || async {
        promotions(&client, &ns)
            .await
            .into_iter()
            .find(|p| p.spec.stage == "production" && phase(p) == Phase::Verifying)
    })
    .await;
    let revision = soaking.spec.revision.id.clone();
    let restarted = Instant::now();
    cp.restart_apiserver(Duration::from_secs(3)).unwrap();
    println!("kube-apiserver back after {:?}", restarted.elapsed());
    let client = cp.client().await.unwrap();
    let promoted = eventually(
        "production promoted after the restart",
        Duration::from_secs(60),
        || async {
            promotions(&client, &ns)
                .await
                .into_iter()
                .find(|p| p.spec.stage == "production" && phase(p) == Phase::Promoted)
        },
    )
    .await;
    assert_eq!(promoted.spec.revision.id, revision);
    assert_eq!(promoted_count(&promoted), 1, "{:?}", promoted.status);
    let all = promotions(&client, &ns).await;
    for p in &all {
        assert!(promoted_count(p) <= 1, "{:?} promoted twice", p.metadata.name);
    }
}
