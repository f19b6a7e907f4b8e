//! The App controller against the real kube-apiserver and
//! kube-controller-manager: children, owner references, conditions, one-patch
//! updates, no-op reconciles, garbage collection and unsatisfiable specs.
//! Stages of a PromotionPolicy: e2e/tests/stages.rs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use winky_crds::{App, PromotionPolicy};
use winky_e2e::{ControlPlane, InProcessOperator, TestNamespace, eventually};

const WAIT: Duration = Duration::from_secs(30);

struct Env {
    client: Client,
    ns: TestNamespace,
    operator: InProcessOperator,
}

async fn env(prefix: &str) -> Env {
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, prefix).await.unwrap();
    let operator = InProcessOperator::start(client.clone(), ns.name(), &format!("{prefix}-operator"));
    Env { client, ns, operator }
}

fn app(name: &str, replicas: i32, image: &str) -> App {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": name},
        "spec": {
            "image": image,
            "port": 8080,
            "replicas": replicas,
            "probes": {"readiness": "/readyz"},
            "runtime": {"auth": {"providers": ["email"]}},
        },
    }))
    .unwrap()
}

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
        .unwrap()
}

fn condition(app: &App, type_: &str) -> Option<(String, String)> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// The resourceVersion of every child, by kind.
async fn child_versions(client: &Client, ns: &str, name: &str) -> BTreeMap<&'static str, String> {
    let rv = |o: Option<String>| o.unwrap_or_default();
    BTreeMap::from([
        (
            "Deployment",
            rv(get::<Deployment>(client, ns, name)
                .await
                .and_then(|o| o.resource_version())),
        ),
        (
            "Service",
            rv(get::<Service>(client, ns, name)
                .await
                .and_then(|o| o.resource_version())),
        ),
        (
            "ServiceAccount",
            rv(get::<ServiceAccount>(client, ns, name)
                .await
                .and_then(|o| o.resource_version())),
        ),
        (
            "ConfigMap",
            rv(get::<ConfigMap>(client, ns, &format!("{name}-runtime"))
                .await
                .and_then(|o| o.resource_version())),
        ),
        (
            "NetworkPolicy",
            rv(get::<NetworkPolicy>(client, ns, name)
                .await
                .and_then(|o| o.resource_version())),
        ),
        (
            "PodDisruptionBudget",
            rv(get::<PodDisruptionBudget>(client, ns, name)
                .await
                .and_then(|o| o.resource_version())),
        ),
    ])
}

/// Waits until the Deployment controller has caught up with the Deployment.
async fn settled_deployment(client: &Client, ns: &str, name: &str) -> Deployment {
    eventually(
        "the Deployment controller to observe the Deployment",
        WAIT,
        || async {
            let d = get::<Deployment>(client, ns, name).await?;
            let s = d.status.as_ref()?;
            let want = d.spec.as_ref()?.replicas?;
            // No node runs the pods, so a rollout never completes: "settled" means
            // the controller saw the latest spec and created its pods.
            (s.observed_generation == d.metadata.generation && s.updated_replicas == Some(want)).then_some(d)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_app_gets_every_child_owned_and_a_condition() {
    let Env { client, ns, operator } = env("app-apply").await;
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    // The time printed includes the operator's own start (leader election,
    // the first list of every watched kind) and the ~2 s a fresh apiserver
    // takes for its first custom-resource create (docs/control-plane.md). It
    // is a figure, not a gate: a loaded machine must not fail a correct operator.
    let started = Instant::now();
    let created = apps
        .create(
            &PostParams::default(),
            &app("notes", 2, "registry.example/notes:1"),
        )
        .await
        .unwrap();
    let uid = created.uid().unwrap();

    let ready_or_progressing = eventually("all children and a condition", WAIT, || async {
        let versions = child_versions(&client, ns.name(), "notes").await;
        if versions.values().any(String::is_empty) {
            return None;
        }
        let app = apps.get("notes").await.ok()?;
        let c = condition(&app, "Ready").or_else(|| condition(&app, "Progressing"))?;
        Some(c)
    })
    .await;
    let took = started.elapsed();
    eprintln!("apply → all children and a condition: {} ms", took.as_millis());

    // With the operator warm, the same takes well under a second.
    let warm = Instant::now();
    apps.create(&PostParams::default(), &app("warm", 1, "registry.example/warm:1"))
        .await
        .unwrap();
    eventually("children of a second App", WAIT, || async {
        let versions = child_versions(&client, ns.name(), "warm").await;
        let has_condition = apps
            .get("warm")
            .await
            .ok()
            .and_then(|a| condition(&a, "Progressing"))
            .is_some();
        // No PodDisruptionBudget for one replica.
        (versions.values().filter(|v| !v.is_empty()).count() == 5 && has_condition).then_some(())
    })
    .await;
    eprintln!(
        "apply → all children and a condition, operator warm: {} ms",
        warm.elapsed().as_millis()
    );
    assert_eq!(
        ready_or_progressing.0, "False",
        "no node runs the pods: Ready is False while rolling out"
    );

    let app = apps.get("notes").await.unwrap();
    assert_eq!(
        condition(&app, "Progressing"),
        Some(("True".into(), "RolloutInProgress".into()))
    );
    assert_eq!(
        condition(&app, "Degraded"),
        Some(("False".into(), "AsExpected".into()))
    );
    let status = app.status.unwrap();
    assert_eq!(status.observed_generation, app.metadata.generation);
    assert!(status.revision.unwrap().id.starts_with("r-"));

    for meta in [
        get::<Deployment>(&client, ns.name(), "notes")
            .await
            .unwrap()
            .meta()
            .clone(),
        get::<Service>(&client, ns.name(), "notes")
            .await
            .unwrap()
            .meta()
            .clone(),
        get::<ServiceAccount>(&client, ns.name(), "notes")
            .await
            .unwrap()
            .meta()
            .clone(),
        get::<ConfigMap>(&client, ns.name(), "notes-runtime")
            .await
            .unwrap()
            .meta()
            .clone(),
        get::<NetworkPolicy>(&client, ns.name(), "notes")
            .await
            .unwrap()
            .meta()
            .clone(),
        get::<PodDisruptionBudget>(&client, ns.name(), "notes")
            .await
            .unwrap()
            .meta()
            .clone(),
    ] {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("App", uid.as_str(), Some(true)),
            "{:?}",
            meta.name
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/managed-by"], "winky-operator");
        assert_eq!(labels["winky.dev/app"], "notes");
        let managers: Vec<_> = meta
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.as_deref())
            .collect();
        assert!(
            managers.contains(&"winky-operator"),
            "{:?}: applied by the field manager winky-operator, found {managers:?}",
            meta.name
        );
    }

    // The namespace enforces Pod Security "restricted": the ReplicaSet
    // controller can only create the pods if the template complies.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    eventually("2 pods admitted under the restricted profile", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("winky.dev/app=notes"))
            .await
            .ok()?;
        (list.items.len() == 2).then_some(())
    })
    .await;

    let events: Api<Event> = Api::namespaced(client.clone(), ns.name());
    let reasons = eventually("Events for the App", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("App"))
            .filter_map(|e| e.reason.clone())
            .collect();
        (reasons.len() >= 2).then_some(reasons)
    })
    .await;
    assert!(reasons.contains(&"RevisionApplied".to_string()), "{reasons:?}");
    assert!(reasons.contains(&"RolloutInProgress".to_string()), "{reasons:?}");
    assert!(operator.metric(r#"winky_reconciles_total{controller="app",result="success"}"#) >= 1.0);
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_changes_the_deployment_in_one_patch() {
    let Env { client, ns, operator } = env("app-image").await;
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app("shop", 1, "registry.example/shop:1"))
        .await
        .unwrap();
    let before = settled_deployment(&client, ns.name(), "shop").await;

    let patch = serde_json::json!({"spec": {"image": "registry.example/shop:2"}});
    apps.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let after = eventually("the new image in the Deployment", WAIT, || async {
        let d = get::<Deployment>(&client, ns.name(), "shop").await?;
        let image = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .image
            .clone()?;
        (image == "registry.example/shop:2").then_some(d)
    })
    .await;
    assert_eq!(
        after.metadata.generation,
        before.metadata.generation.map(|g| g + 1),
        "the image and the revision annotation change together, in one write"
    );
    let settled = settled_deployment(&client, ns.name(), "shop").await;
    assert_eq!(
        settled.metadata.generation, after.metadata.generation,
        "no further spec writes"
    );
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_with_nothing_to_change_writes_nothing() {
    let Env { client, ns, operator } = env("app-noop").await;
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app("chat", 2, "registry.example/chat:1"))
        .await
        .unwrap();
    settled_deployment(&client, ns.name(), "chat").await;
    // Let the status write caused by the settled Deployment land first.
    let app_before = eventually("status to reflect the settled rollout", WAIT, || async {
        let a = apps.get("chat").await.ok()?;
        let progressing = a
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing")?;
        progressing.message.ends_with("2 updated").then_some(a.clone())
    })
    .await;
    let versions = child_versions(&client, ns.name(), "chat").await;
    let sample = r#"winky_reconciles_total{controller="app",result="success"}"#;
    let reconciles = operator.metric(sample);

    // A metadata-only change triggers a reconcile but changes no child.
    let patch = serde_json::json!({"metadata": {"annotations": {"example.com/touched": "yes"}}});
    apps.patch("chat", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("another reconcile", WAIT, || async {
        (operator.metric(sample) > reconciles).then_some(())
    })
    .await;

    assert_eq!(
        child_versions(&client, ns.name(), "chat").await,
        versions,
        "children were rewritten"
    );
    let app_after = apps.get("chat").await.unwrap();
    assert_eq!(app_after.status, app_before.status, "status was rewritten");
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_app_lets_the_garbage_collector_remove_every_child() {
    let Env { client, ns, operator } = env("app-delete").await;
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app("gone", 2, "registry.example/gone:1"))
        .await
        .unwrap();
    eventually("all children", WAIT, || async {
        let v = child_versions(&client, ns.name(), "gone").await;
        (!v.values().any(String::is_empty)).then_some(())
    })
    .await;
    apps.delete("gone", &DeleteParams::foreground()).await.unwrap();
    eventually(
        "the garbage collector to remove every child",
        Duration::from_secs(60),
        || async {
            let v = child_versions(&client, ns.name(), "gone").await;
            v.values().all(String::is_empty).then_some(())
        },
    )
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_replicas_prune_the_disruption_budget() {
    let Env { client, ns, operator } = env("app-prune").await;
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app("web", 2, "registry.example/web:1"))
        .await
        .unwrap();
    eventually("a PodDisruptionBudget", WAIT, || async {
        get::<PodDisruptionBudget>(&client, ns.name(), "web").await
    })
    .await;
    let patch = serde_json::json!({"spec": {"replicas": 1}});
    apps.patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("the PodDisruptionBudget to be pruned", WAIT, || async {
        get::<PodDisruptionBudget>(&client, ns.name(), "web")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        get::<Deployment>(&client, ns.name(), "web").await.is_some(),
        "only the budget goes"
    );

    // A child deleted by hand comes back: its deletion triggers the App.
    let services: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let old_uid = services.get("web").await.unwrap().uid();
    services.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the Service to be recreated", WAIT, || async {
        let svc = get::<Service>(&client, ns.name(), "web").await?;
        (svc.uid() != old_uid).then_some(())
    })
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsatisfiable_app_is_degraded_and_recovers_when_its_policy_appears() {
    let Env { client, ns, operator } = env("app-degraded").await;
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    let policy_name = format!("policy-{}", ns.name());
    let mut a = app("lonely", 1, "registry.example/lonely:1");
    a.spec.policy = Some(policy_name.clone());
    apps.create(&PostParams::default(), &a).await.unwrap();

    let degraded = await_condition(apps.clone(), "lonely", |a: Option<&App>| {
        a.and_then(|a| condition(a, "Degraded"))
            .is_some_and(|(s, _)| s == "True")
    });
    let app = tokio::time::timeout(WAIT, degraded)
        .await
        .expect("Degraded in time")
        .unwrap()
        .unwrap();
    assert_eq!(condition(&app, "Degraded").unwrap().1, "PolicyNotFound");
    let message = &app
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message;
    assert!(message.contains(&policy_name), "{message}");
    assert!(
        get::<Deployment>(&client, ns.name(), "lonely").await.is_none(),
        "nothing applied"
    );
    // No hot loop: an invalid spec waits for a change.
    let invalid = r#"winky_reconciles_total{controller="app",result="invalid"}"#;
    // Let the reconcile that the Degraded status write itself triggers pass.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = operator.metric(invalid);
    // A missing sample reads as 0: the invalid reconcile must have been counted.
    assert!(count >= 1.0, "no {invalid} sample");
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("invalid reconciles: {count} then {}", operator.metric(invalid));
    assert_eq!(
        operator.metric(invalid),
        count,
        "an invalid App must wait for a change, not be reconciled again"
    );

    let policies: Api<PromotionPolicy> = Api::all(client.clone());
    let policy: PromotionPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1",
        "kind": "PromotionPolicy",
        "metadata": {"name": policy_name},
        "spec": {"stages": [{"name": "preview", "autoPromote": true, "gates": {"emulator": true}}]},
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();
    let recovered = await_condition(apps.clone(), "lonely", |a: Option<&App>| {
        a.and_then(|a| condition(a, "Degraded"))
            .is_some_and(|(s, _)| s == "False")
    });
    tokio::time::timeout(WAIT, recovered)
        .await
        .expect("recovered in time")
        .unwrap();
    // The App follows the policy now: its stages are the policy's, each
    // running what was promoted into it (e2e/tests/stages.rs), not its spec.
    let app = eventually("the policy's stages in the status", WAIT, || async {
        let app = apps.get("lonely").await.ok()?;
        let stages = &app.status.as_ref()?.stages;
        (stages.len() == 1 && stages[0].name == "preview").then_some(app)
    })
    .await;
    assert_eq!(app.status.unwrap().stages[0].namespace, ns.name());
    // Its finalizer (a stage may run in another namespace) needs the
    // operator: the App goes before it stops.
    apps.delete("lonely", &DeleteParams::default()).await.unwrap();
    eventually("the App gone", WAIT, || async {
        apps.get_opt("lonely").await.ok()?.is_none().then_some(())
    })
    .await;
    policies
        .delete(&policy_name, &DeleteParams::default())
        .await
        .unwrap();
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_of_two_replicas_leads() {
    let Env { client, ns, operator } = env("app-leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns.name());
    eventually("the first replica to lead", WAIT, || async {
        (operator.metric("winky_leader") == 1.0).then_some(())
    })
    .await;
    let second = InProcessOperator::start(client.clone(), ns.name(), "second");
    // Give the second replica several retry periods to try.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(second.metric("winky_leader"), 0.0, "two leaders at once");
    let lease = leases.get("winky-operator").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("app-leader-operator")
    );

    // The leader releases the Lease on shutdown; the follower takes over.
    operator.stop().await.unwrap();
    eventually("the second replica to take over", WAIT, || async {
        (second.metric("winky_leader") == 1.0).then_some(())
    })
    .await;
    second.stop().await.unwrap();
}
