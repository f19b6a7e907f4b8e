//! Each stage of a PromotionPolicy runs, in its own namespace, the revision
//! Promoted into it — from the revision's snapshot, not from the App's
//! current spec — against the real kube-apiserver and
//! kube-controller-manager.
//!
//! The test acts as the Promotion controller would: it keeps each revision
//! as a ControllerRevision `<app>-<revision>` and writes Promotions (their
//! phase through the status subresource). Its policy gates every stage on an
//! approval nobody gives, so that whatever else runs in the operator
//! promotes nothing by itself. No node runs pods here: the test looks at
//! objects, never at readiness.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use winky_crds::promotion::{RevisionSnapshot, snapshot_name};
use winky_crds::{App, Promotion, PromotionPolicy};
use winky_e2e::{ControlPlane, InProcessOperator, eventually};

const WAIT: Duration = Duration::from_secs(30);

async fn get<K>(client: &Client, ns: &str, name: &str) -> Option<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// The image of the Deployment `name` in `ns`, if it exists.
async fn image(client: &Client, ns: &str, name: &str) -> Option<String> {
    let d = get::<Deployment>(client, ns, name).await?;
    d.spec?.template.spec?.containers.first()?.image.clone()
}

/// The metadata of every child of the App named `name` in `ns`, by kind
/// (`None` for a child that is not there).
async fn children(client: &Client, ns: &str, name: &str) -> BTreeMap<&'static str, Option<ObjectMeta>> {
    let meta = |o: Option<ObjectMeta>| o;
    BTreeMap::from([
        (
            "Deployment",
            meta(get::<Deployment>(client, ns, name).await.map(|o| o.metadata)),
        ),
        (
            "Service",
            meta(get::<Service>(client, ns, name).await.map(|o| o.metadata)),
        ),
        (
            "ServiceAccount",
            meta(get::<ServiceAccount>(client, ns, name).await.map(|o| o.metadata)),
        ),
        (
            "ConfigMap",
            meta(
                get::<ConfigMap>(client, ns, &format!("{name}-runtime"))
                    .await
                    .map(|o| o.metadata),
            ),
        ),
        (
            "NetworkPolicy",
            meta(get::<NetworkPolicy>(client, ns, name).await.map(|o| o.metadata)),
        ),
        (
            "PodDisruptionBudget",
            meta(
                get::<PodDisruptionBudget>(client, ns, name)
                    .await
                    .map(|o| o.metadata),
            ),
        ),
    ])
}

/// Whether every child is gone (or going).
fn all_gone(children: &BTreeMap<&'static str, Option<ObjectMeta>>) -> bool {
    children
        .values()
        .all(|m| m.as_ref().is_none_or(|m| m.deletion_timestamp.is_some()))
}

/// What the Promotion controller does for each revision: keep it as a
/// ControllerRevision the App owns. It may have done so already (it runs in
/// the operator too): then its snapshot is the same revision of the same spec.
async fn keep_snapshot(client: &Client, ns: &str, app: &App) -> String {
    let revision = app.status.as_ref().unwrap().revision.clone().unwrap();
    let snapshot = RevisionSnapshot {
        revision: revision.clone(),
        app: app.spec.clone(),
    };
    let object: ControllerRevision = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": snapshot_name(&app.name_any(), &revision.id),
            "labels": {"winky.dev/app": app.name_any(), "app.kubernetes.io/managed-by": "winky-operator"},
            "ownerReferences": [app.controller_owner_ref(&()).unwrap()],
        },
        "data": snapshot,
        "revision": 1,
    }))
    .unwrap();
    match Api::<ControllerRevision>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating the snapshot: {e}"),
    }
    revision.id
}

/// Creates the Promotion `name` of `revision` into `stage`, and promotes it.
async fn promote(client: &Client, ns: &str, name: &str, stage: &str, revision: &str) {
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), ns);
    let promotion: Promotion = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {"name": name},
        "spec": {"app": "notes", "stage": stage, "revision": {"id": revision}},
    }))
    .unwrap();
    promotions
        .create(&PostParams::default(), &promotion)
        .await
        .unwrap();
    // The Promotion controller runs in the operator too, and may have seen
    // the new Promotion while it was still Pending: its gates (an approval
    // nobody gives) then put it back to AwaitingApproval. A Promoted one it
    // leaves alone, so promote until it stays.
    eventually(&format!("{name} to stay Promoted"), WAIT, || async {
        set_phase(client, ns, name, "Promoted").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let phase = promotions.get(name).await.ok()?.status?.phase;
        (phase == winky_crds::promotion::Phase::Promoted).then_some(())
    })
    .await;
}

/// Writes the phase of the Promotion `name` through its status subresource.
async fn set_phase(client: &Client, ns: &str, name: &str, phase: &str) {
    let status = json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "Promotion",
        "status": {"phase": phase},
    });
    Api::<Promotion>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&status))
        .await
        .unwrap();
}

/// The revision each stage of the App runs, by stage, from its status.
fn stage_revisions(app: &App) -> Vec<(String, String, Option<String>)> {
    app.status
        .iter()
        .flat_map(|s| &s.stages)
        .map(|s| (s.name.clone(), s.namespace.clone(), s.revision.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_runs_the_revision_promoted_into_it() {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").try_init();
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let test_ns = cp.namespace(&client, "stages").await.unwrap();
    let ns = test_ns.name();
    // Cluster-scoped names, derived from the test's namespace: unique per run.
    let preview_ns = format!("{ns}-preview");
    let policy_name = format!("stages-{ns}");

    let policies: Api<PromotionPolicy> = Api::all(client.clone());
    let policy: PromotionPolicy = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "PromotionPolicy",
        "metadata": {"name": policy_name},
        "spec": {"stages": [
            {"name": "preview", "namespace": "{app.namespace}-preview", "gates": {"approvals": {"count": 1}}},
            {"name": "production", "namespace": "{app.namespace}", "gates": {"approvals": {"count": 1}}},
        ]},
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();
    let operator = InProcessOperator::start(client.clone(), ns, "stages-operator");

    let apps: Api<App> = Api::namespaced(client.clone(), ns);
    let app: App = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": "notes"},
        "spec": {"image": "registry.example/notes:1", "port": 8080, "replicas": 2, "policy": policy_name},
    }))
    .unwrap();
    let uid = apps
        .create(&PostParams::default(), &app)
        .await
        .unwrap()
        .uid()
        .unwrap();

    // The App gets its finalizer and a status: its revision, both stages,
    // nothing running.
    let app = eventually("the App's finalizer and stages", WAIT, || async {
        let app = apps.get("notes").await.ok()?;
        let finalized = app.finalizers().iter().any(|f| f == "winky.dev/stage-cleanup");
        let stages = stage_revisions(&app);
        (finalized && stages.len() == 2 && app.status.as_ref()?.revision.is_some()).then_some(app)
    })
    .await;
    assert_eq!(
        stage_revisions(&app),
        [
            ("preview".into(), preview_ns.clone(), None),
            ("production".into(), ns.to_string(), None),
        ]
    );
    let ready = app
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotPromoted")
    );
    assert!(get::<Deployment>(&client, ns, "notes").await.is_none());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(
        namespaces.get_opt(&preview_ns).await.unwrap().is_none(),
        "no stage runs: no stage namespace yet"
    );

    // Revision 1 promoted into preview.
    let r1 = keep_snapshot(&client, ns, &app).await;
    promote(&client, ns, "e2e-preview-1", "preview", &r1).await;
    let preview = eventually("preview's children", WAIT, || async {
        let c = children(&client, &preview_ns, "notes").await;
        c.values().all(Option::is_some).then_some(c)
    })
    .await;
    for (kind, meta) in &preview {
        let meta = meta.as_ref().unwrap();
        assert!(
            meta.owner_references.as_ref().is_none_or(Vec::is_empty),
            "{kind}: no owner across namespaces"
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["winky.dev/app"], "notes", "{kind}");
        assert_eq!(labels["winky.dev/app-namespace"], ns, "{kind}");
        assert_eq!(labels["winky.dev/stage"], "preview", "{kind}");
    }
    assert_eq!(
        image(&client, &preview_ns, "notes").await.as_deref(),
        Some("registry.example/notes:1")
    );
    let created = namespaces.get(&preview_ns).await.unwrap();
    let labels = created.labels();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "winky-operator");
    assert_eq!(labels["winky.dev/stage-of"], format!("{ns}.notes"));
    assert!(
        get::<Deployment>(&client, ns, "notes").await.is_none(),
        "production runs nothing"
    );
    eventually("preview in the App's status", WAIT, || async {
        let app = apps.get("notes").await.ok()?;
        (stage_revisions(&app)[0].2.as_deref() == Some(r1.as_str())).then_some(())
    })
    .await;

    // A new revision, promoted nowhere: preview keeps running revision 1.
    apps.patch(
        "notes",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"image": "registry.example/notes:2"}})),
    )
    .await
    .unwrap();
    let app = eventually("the new revision in the App's status", WAIT, || async {
        let app = apps.get("notes").await.ok()?;
        let current = app.status.as_ref()?.revision.as_ref()?.id.clone();
        (current != r1 && app.status.as_ref()?.observed_generation == app.metadata.generation).then_some(app)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        image(&client, &preview_ns, "notes").await.as_deref(),
        Some("registry.example/notes:1"),
        "preview runs what was promoted into it"
    );
    assert_eq!(stage_revisions(&app)[0].2.as_deref(), Some(r1.as_str()));

    // Revision 2 promoted into preview: the old Promotion retires, preview rolls.
    let r2 = keep_snapshot(&client, ns, &app).await;
    set_phase(&client, ns, "e2e-preview-1", "Retired").await;
    promote(&client, ns, "e2e-preview-2", "preview", &r2).await;
    eventually("preview to roll to revision 2", WAIT, || async {
        let image = image(&client, &preview_ns, "notes").await?;
        (image == "registry.example/notes:2").then_some(())
    })
    .await;

    // Revision 2 promoted into production: children in the App's namespace,
    // owned by it.
    promote(&client, ns, "e2e-production-2", "production", &r2).await;
    let production = eventually("production's children", WAIT, || async {
        let c = children(&client, ns, "notes").await;
        c.values().all(Option::is_some).then_some(c)
    })
    .await;
    for (kind, meta) in &production {
        let owner = &meta.as_ref().unwrap().owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("App", uid.as_str(), Some(true)),
            "{kind}"
        );
        assert_eq!(
            meta.as_ref().unwrap().labels.as_ref().unwrap()["winky.dev/stage"],
            "production"
        );
    }
    assert_eq!(
        image(&client, ns, "notes").await.as_deref(),
        Some("registry.example/notes:2")
    );
    eventually("both stages in the App's status", WAIT, || async {
        let app = apps.get("notes").await.ok()?;
        let revisions: Vec<Option<String>> = stage_revisions(&app).into_iter().map(|s| s.2).collect();
        (revisions == [Some(r2.clone()), Some(r2.clone())]).then_some(())
    })
    .await;

    // Preview's Promoted Promotion goes: preview runs nothing, its children
    // go; production's stay.
    Api::<Promotion>::namespaced(client.clone(), ns)
        .delete("e2e-preview-2", &DeleteParams::default())
        .await
        .unwrap();
    eventually("preview's children deleted", WAIT, || async {
        all_gone(&children(&client, &preview_ns, "notes").await).then_some(())
    })
    .await;
    assert!(
        children(&client, ns, "notes").await.values().all(Option::is_some),
        "production keeps running"
    );
    eventually("preview idle in the App's status", WAIT, || async {
        let app = apps.get("notes").await.ok()?;
        stage_revisions(&app)[0].2.is_none().then_some(())
    })
    .await;

    // Promoted into preview again, then the App goes: its finalizer deletes
    // the children in the preview namespace, which itself stays.
    promote(&client, ns, "e2e-preview-3", "preview", &r2).await;
    eventually("preview's children again", WAIT, || async {
        let c = children(&client, &preview_ns, "notes").await;
        c.values().all(Option::is_some).then_some(())
    })
    .await;
    apps.delete("notes", &DeleteParams::default()).await.unwrap();
    eventually("the App gone through its finalizer", WAIT, || async {
        apps.get_opt("notes").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("preview's children deleted by the finalizer", WAIT, || async {
        all_gone(&children(&client, &preview_ns, "notes").await).then_some(())
    })
    .await;
    let kept = namespaces.get(&preview_ns).await.unwrap();
    assert!(
        kept.metadata.deletion_timestamp.is_none(),
        "the stage namespace stays"
    );

    operator.stop().await.unwrap();
    let _ = namespaces.delete(&preview_ns, &DeleteParams::default()).await;
    let _ = policies.delete(&policy_name, &DeleteParams::default()).await;
}
