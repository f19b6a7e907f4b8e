//! The operator runs as the ServiceAccount of `deploy/rbac.yaml`, with the
//! apiserver's RBAC judging every request: Apps, Functions and Rules are
//! reconciled, children applied and pruned, statuses and Events written, the
//! Lease held, a stage namespace created and a promoted revision run and
//! cleaned up there — and the account can do nothing it was not granted.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use winky_crds::promotion::{RevisionSnapshot, snapshot_name};
use winky_crds::{App, Function, Promotion, PromotionPolicy, Rule};
use winky_e2e::{ControlPlane, InProcessOperator, apply_json, eventually, gone_or_going, workspace_root};

const WAIT: Duration = Duration::from_secs(30);
const OPERATOR: &str = "system:serviceaccount:winky-system:winky-operator";

/// `kubectl auth can-i VERB WHAT -n NS --as OPERATOR [--subresource S]`,
/// where `what` is `type`, `type/name` or `type:subresource`.
fn operator_can(cp: &ControlPlane, verb: &str, what: &str, ns: &str) -> bool {
    let (what, subresource) = what.split_once(':').unwrap_or((what, ""));
    let subresource = format!("--subresource={subresource}");
    let mut args = vec!["auth", "can-i", verb, what, "-n", ns, "--as", OPERATOR];
    if subresource != "--subresource=" {
        args.push(&subresource);
    }
    let out = cp.kubectl_command(&args).output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(answer == "yes" || answer == "no", "can-i said {answer:?}");
    answer == "yes"
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Option<String> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready" || c.type_ == "Progressing")
        .map(|c| c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_needs_no_more_than_its_rbac() {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").try_init();
    let cp = ControlPlane::shared();
    let admin = cp.client().await.unwrap();
    let rbac = workspace_root().join("deploy/rbac.yaml");
    cp.kubectl(&["apply", "--server-side", "-f", rbac.to_str().unwrap()])
        .unwrap();
    let ns = cp.namespace(&admin, "rbac").await.unwrap();
    let ns = ns.name();
    // The Lease lives where --lease-namespace says; here, the test namespace.
    cp.kubectl(&[
        "create",
        "rolebinding",
        "winky-operator-leader-election",
        "-n",
        ns,
        "--clusterrole=winky-operator-leader-election",
        "--serviceaccount=winky-system:winky-operator",
    ])
    .unwrap();

    // What the account may do (RBAC caches catch up with a new binding
    // shortly, hence eventually)…
    for (verb, what) in [
        ("watch", "apps.winky.dev"),
        ("patch", "apps.winky.dev:status"),
        ("update", "apps.winky.dev:finalizers"),
        ("create", "deployments.apps"),
        ("delete", "poddisruptionbudgets.policy"),
        ("create", "leases.coordination.k8s.io"),
        ("update", "leases.coordination.k8s.io/winky-operator"),
        ("watch", "gitsources.winky.dev"),
        ("patch", "apps.winky.dev"),
        ("delete", "functions.winky.dev"),
        ("get", "secrets"),
        ("watch", "promotions.winky.dev"),
        ("create", "promotions.winky.dev"),
        ("patch", "promotions.winky.dev:status"),
        ("watch", "controllerrevisions.apps"),
        ("create", "controllerrevisions.apps"),
        ("delete", "controllerrevisions.apps"),
        ("watch", "namespaces"),
        ("create", "namespaces"),
        ("delete", "configmaps"),
        ("delete", "networkpolicies.networking.k8s.io"),
        ("watch", "ingresses.networking.k8s.io"),
        ("delete", "ingresses.networking.k8s.io"),
    ] {
        eventually(
            &format!("the operator to be allowed to {verb} {what}"),
            WAIT,
            || async { operator_can(cp, verb, what, ns).then_some(()) },
        )
        .await;
    }
    // …and what it may not.
    for (verb, what) in [
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "secrets"),
        ("get", "deployments.apps"),
        ("delete", "promotionpolicies.winky.dev"),
        ("patch", "gitsources.winky.dev"),
        ("delete", "promotions.winky.dev"),
        ("update", "promotions.winky.dev"),
        ("get", "configmaps"),
        ("create", "pods"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("update", "leases.coordination.k8s.io/another-lease"),
    ] {
        assert!(
            !operator_can(cp, verb, what, ns),
            "the operator may {verb} {what}"
        );
    }
    assert!(!operator_can(
        cp,
        "create",
        "leases.coordination.k8s.io",
        "default"
    ));

    let operator = InProcessOperator::start(cp.client_as(OPERATOR).await.unwrap(), ns, "rbac-operator");
    apply_json::<App>(
        &admin,
        ns,
        json!({"apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "notes"},
               "spec": {"image": "registry.example/notes:1", "port": 8080, "replicas": 2}}),
    )
    .await;
    apply_json::<Function>(
        &admin,
        ns,
        json!({"apiVersion": "winky.dev/v1alpha1", "kind": "Function", "metadata": {"name": "digest"},
               "spec": {"app": "notes", "image": "registry.example/fn:1",
                        "trigger": {"schedule": {"cron": "0 7 * * *"}}, "memory": "128Mi", "timeoutSeconds": 15}}),
    )
    .await;
    apply_json::<Rule>(
        &admin,
        ns,
        json!({"apiVersion": "winky.dev/v1alpha1", "kind": "Rule", "metadata": {"name": "owners"},
               "spec": {"app": "notes",
                        "rules": [{"match": "/notes/{id}", "allow": {"read": "request.auth != null"}}],
                        "tests": [{"name": "signed in reads",
                                   "request": {"auth": {"uid": "a"}, "method": "get", "path": "/notes/1"},
                                   "expect": "allow"}]}}),
    )
    .await;

    let apps: Api<App> = Api::namespaced(admin.clone(), ns);
    let functions: Api<Function> = Api::namespaced(admin.clone(), ns);
    let rules: Api<Rule> = Api::namespaced(admin.clone(), ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(admin.clone(), ns);
    eventually("every status written as the operator", WAIT, || async {
        let app = ready(&apps.get("notes").await.ok()?.status?.conditions)?;
        let function = ready(&functions.get("digest").await.ok()?.status?.conditions)?;
        let rule = ready(&rules.get("owners").await.ok()?.status?.conditions)?;
        let pdb = pdbs.get_opt("notes").await.ok()??;
        (rule == "Published").then_some((app, function, pdb))
    })
    .await;
    assert!(
        Api::<CronJob>::namespaced(admin.clone(), ns)
            .get_opt("digest-fn")
            .await
            .unwrap()
            .is_some()
    );
    let events = eventually("an Event recorded by the operator", WAIT, || async {
        let list = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), ns)
            .list(&Default::default())
            .await
            .ok()?;
        let ours: Vec<String> = list
            .items
            .into_iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("winky-operator"))
            .map(|e| e.reason.unwrap_or_default())
            .collect();
        (!ours.is_empty()).then_some(ours)
    })
    .await;
    assert!(events.iter().any(|r| r == "RevisionApplied"), "{events:?}");

    // Pruning: one replica drops the disruption budget; a new trigger deletes the CronJob.
    apps.patch(
        "notes",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    functions
        .patch(
            "digest",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"trigger": {"schedule": null, "http": {"path": "/digest"}}}})),
        )
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    let cron_jobs: Api<CronJob> = Api::namespaced(admin.clone(), ns);
    eventually("the budget and the CronJob pruned", WAIT, || async {
        let pdb_gone = pdbs.get_opt("notes").await.ok()?.is_none();
        let cron_gone = gone_or_going(&cron_jobs, "digest-fn").await?;
        let deployment = deployments.get_opt("digest-fn").await.ok()?.is_some();
        (pdb_gone && cron_gone && deployment).then_some(())
    })
    .await;
    // And back: the Deployment and the Service go.
    functions
        .patch(
            "digest",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"trigger": {"http": null, "schedule": {"cron": "0 7 * * *"}}}})),
        )
        .await
        .unwrap();
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(admin.clone(), ns);
    eventually("the Deployment and Service pruned", WAIT, || async {
        let deployment_gone = gone_or_going(&deployments, "digest-fn").await?;
        let service_gone = gone_or_going(&services, "digest-fn").await?;
        let cron_job = cron_jobs.get_opt("digest-fn").await.ok()?.is_some();
        (deployment_gone && service_gone && cron_job).then_some(())
    })
    .await;

    // The Rule's finalizer is removed by the operator: the Rule goes.
    rules.delete("owners", &DeleteParams::default()).await.unwrap();
    eventually("the Rule deleted through its finalizer", WAIT, || async {
        rules.get_opt("owners").await.ok()?.is_none().then_some(())
    })
    .await;

    // A stage in a namespace of its own: the namespace created, the
    // promoted revision run there from its snapshot, and, when the App goes,
    // its children there deleted by its finalizer.
    let stage_ns = format!("{ns}-stage");
    let policy_name = format!("rbac-{ns}");
    let policies: Api<PromotionPolicy> = Api::all(admin.clone());
    let policy: PromotionPolicy = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "PromotionPolicy", "metadata": {"name": policy_name},
        "spec": {"stages": [{"name": "preview", "namespace": "{app.namespace}-stage",
                             "gates": {"approvals": {"count": 1}}}]},
    }))
    .unwrap();
    policies.create(&PostParams::default(), &policy).await.unwrap();
    apply_json::<App>(
        &admin,
        ns,
        json!({"apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "staged"},
               "spec": {"image": "registry.example/staged:1", "port": 8080, "policy": policy_name}}),
    )
    .await;
    let staged = eventually("the staged App's revision", WAIT, || async {
        let app = apps.get("staged").await.ok()?;
        app.status.as_ref()?.revision.as_ref()?;
        Some(app)
    })
    .await;
    let revision = staged.status.clone().unwrap().revision.unwrap();
    let snapshot = RevisionSnapshot {
        revision: revision.clone(),
        app: staged.spec.clone(),
    };
    let snapshot: ControllerRevision = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": snapshot_name("staged", &revision.id),
                     "labels": {"winky.dev/app": "staged", "app.kubernetes.io/managed-by": "winky-operator"}},
        "data": snapshot, "revision": 1,
    }))
    .unwrap();
    // The Promotion controller may have kept it already.
    let _ = Api::<ControllerRevision>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &snapshot)
        .await;
    let promotions: Api<Promotion> = Api::namespaced(admin.clone(), ns);
    let promotion: Promotion = serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "Promotion", "metadata": {"name": "rbac-preview"},
        "spec": {"app": "staged", "stage": "preview", "revision": {"id": revision.id}},
    }))
    .unwrap();
    promotions
        .create(&PostParams::default(), &promotion)
        .await
        .unwrap();
    // The Promotion controller may put a Promotion it saw Pending back to
    // AwaitingApproval (the gate nobody passes); a Promoted one it leaves.
    eventually("the Promotion to stay Promoted", WAIT, || async {
        promotions
            .patch_status(
                "rbac-preview",
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&json!({"apiVersion": "winky.dev/v1alpha1", "kind": "Promotion",
                                      "status": {"phase": "Promoted"}})),
            )
            .await
            .ok()?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let phase = promotions.get("rbac-preview").await.ok()?.status?.phase;
        (phase == winky_crds::promotion::Phase::Promoted).then_some(())
    })
    .await;
    let stage_deployments: Api<Deployment> = Api::namespaced(admin.clone(), &stage_ns);
    eventually("the stage's Deployment in its own namespace", WAIT, || async {
        stage_deployments.get_opt("staged").await.ok()?.map(|_| ())
    })
    .await;
    apps.delete("staged", &DeleteParams::default()).await.unwrap();
    eventually(
        "the staged App gone, its stage's children with it",
        WAIT,
        || async {
            let app_gone = apps.get_opt("staged").await.ok()?.is_none();
            let child_gone = gone_or_going(&stage_deployments, "staged").await?;
            (app_gone && child_gone).then_some(())
        },
    )
    .await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .delete(&stage_ns, &DeleteParams::default())
        .await;
    let _ = policies.delete(&policy_name, &DeleteParams::default()).await;

    // The apiserver refused nothing on the way: a 403 at any step of any
    // reconcile is counted under category="forbidden", and a refused list or
    // watch of any input in winky_watch_errors_total.
    let exposition = operator.health.metrics.encode();
    let refused: Vec<&str> = exposition
        .lines()
        .filter(|l| {
            (l.starts_with("winky_reconcile_errors_total{") && l.contains(r#"category="forbidden""#))
                || l.starts_with("winky_watch_errors_total{")
        })
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    operator.stop().await.unwrap();
}
