//! An App's revision snapshots are a bounded history, end to end: the real
//! kube-apiserver and the operator keep the ten newest ControllerRevisions of
//! an App, and never the one a stage runs or would roll back to.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ControllerRevision;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use winky_crds::App;
use winky_crds::promotion::{Phase, Promotion};
use winky_e2e::{ControlPlane, InProcessOperator, apply_json, apply_policy, eventually};
use winky_promotion::pipeline::SNAPSHOT_HISTORY;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_newest_snapshots_stay_and_never_one_a_stage_needs() {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "history").await.unwrap();
    let ns = ns.name().to_string();
    // preview promotes every revision at once; production waits for an
    // approval nobody gives (for the newest revision promoted into preview).
    let policy = format!("{ns}-history");
    apply_policy(
        &client,
        &policy,
        serde_json::json!({"stages": [
            {"name": "preview", "autoPromote": true},
            {"name": "production", "gates": {"approvals": {"count": 1}}},
        ]}),
    )
    .await;
    let _operator = InProcessOperator::start(client.clone(), &ns, "history-operator");
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), &ns);
    let snapshots: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let mut revisions = Vec::new();
    for i in 0..SNAPSHOT_HISTORY + 4 {
        let _: App = apply_json(
            &client,
            &ns,
            serde_json::json!({
                "apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "notes"},
                "spec": {"image": format!("notes:{i}"), "port": 8080, "policy": policy},
            }),
        )
        .await;
        // Each revision promoted into preview before the next comes.
        let revision = eventually(&format!("revision {i} in preview"), WAIT, || async {
            promotions
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|p| {
                    p.spec.stage == "preview"
                        && !revisions.contains(&p.spec.revision.id)
                        && p.status.as_ref().is_some_and(|s| s.phase == Phase::Promoted)
                })
                .map(|p| p.spec.revision.id)
        })
        .await;
        revisions.push(revision);
    }
    let kept = eventually("the history bounded", WAIT, || async {
        let names: Vec<String> = snapshots
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .iter()
            .map(|s| s.name_any())
            .collect();
        (names.len() == SNAPSHOT_HISTORY).then_some(names)
    })
    .await;
    let has = |revision: &str| kept.iter().any(|n| n == &format!("notes-{revision}"));
    // Preview runs the last revision (production waits for it) and would
    // roll back to the one before: both stay; the four oldest went.
    let n = revisions.len();
    assert!(has(&revisions[n - 1]) && has(&revisions[n - 2]), "{kept:?}");
    for gone in &revisions[..n - SNAPSHOT_HISTORY] {
        assert!(!has(gone), "{gone} is still kept: {kept:?}");
    }
}
