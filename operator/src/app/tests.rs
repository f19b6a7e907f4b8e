//! Unit tests of validate, build and status, from the YAML fixtures beside
//! this file. No server involved.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::jiff::Timestamp;
use winky_crds::App;
use winky_crds::common::{SecretEnv, VaultRef};

use super::build;
use super::stages;
use super::status::{self, Outcome, StageOutcome};
use super::validate::{self, Inputs, Invalid};
use crate::conditions::{DEGRADED, PROGRESSING, READY};
use crate::revision;
use crate::rollout::{self, Rollout};

const FIXTURES: &str = include_str!("fixtures.yaml");

fn fixture(name: &str) -> App {
    let apps: Vec<App> = serde_saphyr::from_multiple(FIXTURES).expect("fixtures parse");
    apps.into_iter()
        .find(|a| a.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

const OK: Inputs = Inputs {
    policy_exists: None,
    vault_configured: false,
};

#[test]
fn deployment_is_restricted_and_carries_the_spec() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let d = build::deployment(&plan);
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some(app.spec.image.as_str()));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["cpu"].0, "500m");
    assert_eq!(limits["memory"].0, "128Mi");
    let env = c.env.as_ref().unwrap();
    let smtp = env.iter().find(|e| e.name == "SMTP_TOKEN").unwrap();
    let secret = smtp.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((secret.name.as_str(), secret.key.as_str()), ("smtp", "token"));
    assert!(smtp.value.is_none(), "a secret's value never appears in the spec");
    assert!(
        env.iter()
            .any(|e| e.name == "LOG_LEVEL" && e.value.as_deref() == Some("info"))
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    let annotations = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert_eq!(annotations["winky.dev/revision"], plan.revision);
}

#[test]
fn every_child_is_owned_by_the_app_and_labelled() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let children = build::children(&plan, &Default::default());
    let metas = [
        &children.deployment.metadata,
        &children.service.metadata,
        &children.service_account.metadata,
        &children.config_map.metadata,
        &children.network_policy.metadata,
        &children.pod_disruption_budget.as_ref().unwrap().metadata,
    ];
    for meta in metas {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("App", "notes"));
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.uid, "0b1c2d3e-0000-4000-8000-000000000001");
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["winky.dev/app"], "notes");
        assert_eq!(labels["winky.dev/stage"], "default");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "winky-operator");
        assert_eq!(meta.namespace.as_deref(), Some("notes"));
    }
}

#[test]
fn service_and_service_account() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let svc = build::service(&plan);
    let spec = svc.spec.unwrap();
    assert_eq!(spec.ports.unwrap()[0].port, 8080);
    assert_eq!(spec.selector.unwrap()["winky.dev/app"], "notes");
    assert_eq!(
        build::service_account(&plan).automount_service_account_token,
        Some(false)
    );
}

#[test]
fn runtime_config_map_describes_the_backend() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let cm = build::config_map(&plan, &Default::default());
    assert_eq!(cm.metadata.name.as_deref(), Some("notes-runtime"));
    let doc: serde_json::Value = serde_json::from_str(&cm.data.unwrap()["runtime.json"]).unwrap();
    assert_eq!(doc["auth"]["providers"][0], "email");
    assert_eq!(doc["collections"][0]["fields"][0]["name"], "owner");
    assert_eq!(doc["revision"], plan.revision.as_str());
}

#[test]
fn network_policy_admits_only_what_the_app_allows() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let spec = build::network_policy(&plan).spec.unwrap();
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string(), "Egress".to_string()][..])
    );
    let from = spec.ingress.as_ref().unwrap()[0].from.as_ref().unwrap();
    assert_eq!(from.len(), 2, "same namespace and the named namespaces");
    let ns = from[1]
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_expressions
        .as_ref()
        .unwrap();
    assert_eq!(ns[0].values.as_deref(), Some(&["gateway".to_string()][..]));
    let egress = spec.egress.unwrap();
    assert_eq!(egress.len(), 2, "DNS and the declared CIDR");
    assert_eq!(
        egress[1].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap().cidr,
        "203.0.113.0/24"
    );

    let public = fixture("solo");
    let plan = validate::validate(&public, &OK).unwrap();
    let spec = build::network_policy(&plan).spec.unwrap();
    assert!(spec.ingress.unwrap()[0].from.is_none(), "public: any source");
    assert_eq!(spec.egress.unwrap().len(), 1, "only DNS");
}

#[test]
fn pod_disruption_budget_only_with_several_replicas() {
    let notes = fixture("notes");
    assert!(build::pod_disruption_budget(&validate::validate(&notes, &OK).unwrap()).is_some());
    let solo = fixture("solo");
    assert_eq!(solo.spec.replicas, 1, "replicas defaults to 1");
    assert!(build::pod_disruption_budget(&validate::validate(&solo, &OK).unwrap()).is_none());
}

#[test]
fn a_missing_policy_or_vault_cannot_be_satisfied() {
    let mut app = fixture("solo");
    app.spec.policy = Some("default".into());
    let missing = Inputs {
        policy_exists: Some(false),
        ..OK
    };
    let err = validate::validate(&app, &missing).unwrap_err();
    assert_eq!(
        err,
        Invalid::PolicyNotFound {
            policy: "default".into()
        }
    );
    assert!(err.message().contains("\"default\""));
    let present = Inputs {
        policy_exists: Some(true),
        ..OK
    };
    assert!(validate::validate(&app, &present).is_ok());

    app.spec.secrets.push(SecretEnv {
        name: "DB_PASSWORD".into(),
        vault: Some(VaultRef {
            path: "apps/solo/db".into(),
            key: "password".into(),
        }),
        secret_key_ref: None,
    });
    let err = validate::validate(&app, &present).unwrap_err();
    assert_eq!(err.reason(), "VaultNotConfigured");
    assert!(
        !err.message().contains("password"),
        "no secret material in messages"
    );
}

#[test]
fn revision_is_stable_and_follows_the_spec() {
    let app = fixture("notes");
    assert_eq!(revision::of(&app), revision::of(&fixture("notes")));
    assert!(revision::of(&app).starts_with("r-"));
    let mut changed = app.clone();
    changed.spec.image = "registry.example/notes:2".into();
    assert_ne!(revision::of(&app), revision::of(&changed));
}

/// The outcomes of applying `stages`, whose Deployments are `deployments`.
fn outcomes<'a>(
    stages: &'a [stages::Stage<'a>],
    deployments: &[Option<&'a Deployment>],
) -> Vec<StageOutcome<'a>> {
    stages
        .iter()
        .zip(deployments)
        .map(|(stage, deployment)| StageOutcome {
            stage,
            deployment: *deployment,
        })
        .collect()
}

fn with_status(mut d: Deployment, ready: i32, updated: i32) -> Deployment {
    d.metadata.generation = Some(1);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(updated.max(ready)),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        updated_replicas: Some(updated),
        ..DeploymentStatus::default()
    });
    d
}

#[test]
fn conditions_follow_the_rollout() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let now = Timestamp::from_second(1_800_000_000).unwrap();

    let rolling = with_status(build::deployment(&plan), 1, 2);
    assert!(matches!(rollout::rollout(&rolling), Rollout::InProgress(_)));
    let stages = stages::unstaged(plan.clone());
    let s = status::desired_status(
        &app,
        &Outcome::Applied(&outcomes(&stages, &[Some(&rolling)])),
        now,
    );
    let get = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(
        (get(READY).status.as_str(), get(PROGRESSING).status.as_str()),
        ("False", "True")
    );
    assert_eq!(get(PROGRESSING).reason, "RolloutInProgress");
    assert_eq!(s.observed_generation, Some(3));
    assert_eq!(s.revision.as_ref().unwrap().id, plan.revision);
    assert_eq!(s.stages[0].replicas.as_deref(), Some("1/2"));

    let done = with_status(build::deployment(&plan), 2, 2);
    let s = status::desired_status(&app, &Outcome::Applied(&outcomes(&stages, &[Some(&done)])), now);
    let ready = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Available")
    );
    assert_eq!(s.url.as_deref(), Some("http://notes.notes.svc:8080"));
}

#[test]
fn an_unsatisfiable_spec_is_degraded_with_its_reason() {
    let app = fixture("solo");
    let invalid = Invalid::PolicyNotFound {
        policy: "gone".into(),
    };
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let s = status::desired_status(&app, &Outcome::Invalid(&invalid), now);
    let degraded = s.conditions.iter().find(|c| c.type_ == DEGRADED).unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "PolicyNotFound")
    );
    assert!(s.revision.is_none(), "nothing was applied");
}

#[test]
fn the_app_controller_never_sends_what_the_emulator_writes() {
    let mut app = fixture("solo");
    app.status = Some(
        serde_json::from_value(serde_json::json!({
            "emulator": {"revision": "r-1", "passed": false, "checks": 2, "failed": 1,
                         "failedChecks": [{"name": "f/c", "kind": "function", "message": "m"}],
                         "digest": "d", "finishedAt": "2026-01-01T00:00:00Z"},
            "lastHandledRequestedAt": "2026-01-01T00:00:00Z",
        }))
        .unwrap(),
    );
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let invalid = Invalid::PolicyNotFound {
        policy: "gone".into(),
    };
    for s in [
        status::desired_status(&app, &Outcome::Invalid(&invalid), now),
        status::without_emulator_fields(app.status.clone().unwrap()),
    ] {
        // Sent by the App controller's field manager, they would be its too,
        // and an App status write from a stale cache could undo a result.
        assert!(
            s.emulator.is_none() && s.last_handled_requested_at.is_none(),
            "{s:?}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert!(json.get("emulator").is_none() && json.get("lastHandledRequestedAt").is_none());
    }
}

#[test]
fn without_a_policy_the_app_runs_its_spec_in_one_stage_as_before() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let stages = stages::unstaged(plan);
    assert_eq!(stages.len(), 1);
    let target = &stages[0].target;
    assert_eq!(
        (
            target.stage.as_str(),
            target.namespace.as_str(),
            target.child.as_str()
        ),
        ("default", "notes", "notes")
    );
    let plan = stages[0].plan().unwrap();
    assert!(
        matches!(plan.spec, std::borrow::Cow::Borrowed(_)),
        "the App's own spec"
    );
    assert_eq!(plan.revision, revision::of(&app));
    let meta = build::deployment(plan).metadata;
    assert_eq!(meta.labels.unwrap()["winky.dev/app-namespace"], "notes");
    assert_eq!(meta.owner_references.unwrap().len(), 1);
}

// ---- stages -------------------------------------------------------------

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use winky_crds::Promotion;
use winky_crds::app::AppStatus;
use winky_crds::policy::PromotionPolicySpec;

use super::children::Keep;
use super::stages::{Run, Stage};

fn policy(stages: serde_json::Value) -> PromotionPolicySpec {
    serde_json::from_value(serde_json::json!({ "stages": stages })).unwrap()
}

/// preview in `<ns>-preview`, then production in the App's namespace.
fn two_stages() -> PromotionPolicySpec {
    policy(serde_json::json!([
        {"name": "preview", "namespace": "{app.namespace}-preview"},
        {"name": "production"},
    ]))
}

/// The fixture `notes`, following a policy, at image `image`.
fn staged_app(image: &str) -> App {
    let mut app = fixture("notes");
    app.spec.policy = Some("two".into());
    app.spec.image = image.into();
    app
}

const POLICY_OK: Inputs = Inputs {
    policy_exists: Some(true),
    vault_configured: false,
};

fn promotion(name: &str, stage: &str, revision: &str, phase: &str, created: &str) -> Arc<Promotion> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": name, "namespace": "notes", "creationTimestamp": created},
            "spec": {"app": "notes", "stage": stage, "revision": {"id": revision}},
            "status": {"phase": phase},
        }))
        .unwrap(),
    )
}

/// The snapshot of the App `app` as revision `revision`.
fn snapshot(app: &App, revision: &str) -> Arc<ControllerRevision> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": format!("notes-{revision}"), "namespace": "notes",
                         "labels": {"winky.dev/app": "notes"}},
            "data": {"revision": {"id": revision, "image": app.spec.image}, "app": app.spec},
            "revision": 1,
        }))
        .unwrap(),
    )
}

/// The stages of `app` under `policy`, with `promotions` and `snapshots` cached.
fn resolve<'a>(
    app: &'a App,
    policy: &PromotionPolicySpec,
    promotions: &[Arc<Promotion>],
    snapshots: &[Arc<ControllerRevision>],
) -> Result<Vec<Stage<'a>>, Invalid> {
    let plan = validate::validate(app, &POLICY_OK).unwrap();
    stages::resolve(app, &plan, policy, promotions, |revision| {
        snapshots
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(&format!("notes-{revision}")))
            .cloned()
    })
}

#[test]
fn stage_namespaces_and_names_follow_the_policy() {
    let defaults: winky_crds::PromotionPolicy =
        serde_saphyr::from_str(include_str!("../../../policies/defaults/promotion-policy.yaml")).unwrap();
    let targets = stages::targets("notes", "team", Some(&defaults.spec)).unwrap();
    let found: Vec<(&str, &str, &str)> = targets
        .iter()
        .map(|t| (t.stage.as_str(), t.namespace.as_str(), t.child.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("preview", "team-preview", "notes"),
            ("staging", "team-staging", "notes"),
            ("production", "team", "notes"),
        ]
    );

    // Two stages in the App's namespace: the last keeps the App's name.
    let shared = policy(serde_json::json!([
        {"name": "preview", "namespace": "{app.namespace}-preview"},
        {"name": "staging"},
        {"name": "production", "namespace": "{app.namespace}"},
    ]));
    let children: Vec<String> = stages::targets("notes", "team", Some(&shared))
        .unwrap()
        .into_iter()
        .map(|t| format!("{}/{}", t.namespace, t.child))
        .collect();
    assert_eq!(
        children,
        ["team-preview/notes", "team/notes-staging", "team/notes"]
    );

    let default = stages::targets("notes", "team", None).unwrap();
    assert_eq!(default.len(), 1);
    assert_eq!(default[0].stage, "default");

    let too_long = policy(serde_json::json!([{"name": "p", "namespace": "{app.namespace}-{app.name}"}]));
    let err = stages::targets(&"a".repeat(40), &"n".repeat(30), Some(&too_long)).unwrap_err();
    assert_eq!(err.reason(), "StageNamespaceInvalid");
    assert!(err.message().contains("\"p\""), "{}", err.message());

    let long_child = policy(serde_json::json!([{"name": "preview"}, {"name": "production"}]));
    let err = stages::targets(&"a".repeat(60), "team", Some(&long_child)).unwrap_err();
    assert_eq!(err.reason(), "StageNameTooLong");
}

#[test]
fn each_stage_runs_the_snapshot_promoted_into_it_not_the_apps_spec() {
    let old = staged_app("registry.example/notes:1");
    let app = staged_app("registry.example/notes:2");
    let promotions = [
        promotion("p0", "preview", "r-0", "Retired", "2030-01-01T00:00:00Z"),
        promotion("p1", "preview", "r-1", "Promoted", "2030-01-02T00:00:00Z"),
        // Another App's, and a stage not Promoted.
        promotion(
            "p2",
            "production",
            "r-1",
            "AwaitingApproval",
            "2030-01-02T00:00:00Z",
        ),
    ];
    let stages = resolve(&app, &two_stages(), &promotions, &[snapshot(&old, "r-1")]).unwrap();
    assert_eq!(stages.len(), 2);

    let preview = stages[0].plan().expect("preview runs r-1");
    assert_eq!(preview.revision, "r-1");
    assert_eq!(preview.target.namespace, "notes-preview");
    let d = build::deployment(preview);
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.containers[0].image.as_deref(),
        Some("registry.example/notes:1"),
        "the snapshot's image, not the App's current one"
    );
    assert_eq!(d.metadata.namespace.as_deref(), Some("notes-preview"));
    assert_eq!(d.metadata.name.as_deref(), Some("notes"));
    let children = build::children(preview, &Default::default());
    for (kind, namespace, _) in children.names() {
        assert_eq!(namespace, "notes-preview", "{kind}");
    }
    for meta in [&children.deployment.metadata, &children.config_map.metadata] {
        assert!(
            meta.owner_references.is_none(),
            "no owner reference across namespaces"
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["winky.dev/app"], "notes");
        assert_eq!(labels["winky.dev/app-namespace"], "notes");
        assert_eq!(labels["winky.dev/stage"], "preview");
    }
    let selector = d.spec.unwrap().selector.match_labels.unwrap();
    assert_eq!(selector["winky.dev/stage"], "preview");

    assert!(
        matches!(stages[1].run, Run::Idle),
        "nothing promoted into production"
    );
    assert_eq!(stages[1].target.namespace, "notes");

    // Promoted into production too: its children live in the App's
    // namespace, owned by it.
    let promotions = [
        promotion("p1", "preview", "r-1", "Promoted", "2030-01-02T00:00:00Z"),
        promotion("p3", "production", "r-1", "Promoted", "2030-01-03T00:00:00Z"),
    ];
    let stages = resolve(&app, &two_stages(), &promotions, &[snapshot(&old, "r-1")]).unwrap();
    let production = stages[1].plan().unwrap();
    let owners = build::service(production).metadata.owner_references.unwrap();
    assert_eq!(owners[0].name, "notes");
}

#[test]
fn the_newest_promoted_promotion_of_a_stage_wins() {
    let promotions = [
        promotion("b-old", "preview", "r-1", "Promoted", "2030-01-01T00:00:00Z"),
        promotion("a-new", "preview", "r-2", "Promoted", "2030-01-02T00:00:00Z"),
        promotion("c-back", "preview", "r-3", "RolledBack", "2030-01-03T00:00:00Z"),
    ];
    let found = stages::promoted(&promotions, "notes", "preview").unwrap();
    assert_eq!(found.metadata.name.as_deref(), Some("a-new"));
    assert!(stages::promoted(&promotions, "notes", "production").is_none());
    assert!(stages::promoted(&promotions, "shop", "preview").is_none());
}

#[test]
fn a_promoted_revision_without_a_usable_snapshot_is_held() {
    let app = staged_app("registry.example/notes:2");
    let promotions = [promotion(
        "p1",
        "preview",
        "r-1",
        "Promoted",
        "2030-01-02T00:00:00Z",
    )];
    let stages = resolve(&app, &two_stages(), &promotions, &[]).unwrap();
    match &stages[0].run {
        Run::Held {
            revision,
            reason,
            degraded,
            message,
        } => {
            assert_eq!(
                (revision.as_str(), *reason, *degraded),
                ("r-1", "WaitingForSnapshot", false)
            );
            assert!(message.contains("notes-r-1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A snapshot of another revision under that name cannot run.
    let mut wrong = (*snapshot(&app, "r-9")).clone();
    wrong.metadata.name = Some("notes-r-1".into());
    let stages = resolve(&app, &two_stages(), &promotions, &[Arc::new(wrong)]).unwrap();
    assert!(matches!(
        stages[0].run,
        Run::Held {
            reason: "SnapshotUnreadable",
            degraded: true,
            ..
        }
    ));
}

#[test]
fn a_stage_is_held_while_its_namespace_goes_or_another_app_holds_its_names() {
    let old = staged_app("registry.example/notes:1");
    let app = staged_app("registry.example/notes:2");
    let promotions = [
        promotion("p1", "preview", "r-1", "Promoted", "2030-01-02T00:00:00Z"),
        promotion("p2", "production", "r-1", "Promoted", "2030-01-02T00:00:00Z"),
    ];
    let stages = resolve(&app, &two_stages(), &promotions, &[snapshot(&old, "r-1")]).unwrap();
    let held = stages::hold(
        stages,
        |ns| ns == "notes-preview",
        |ns, child| (ns == "notes" && child == "notes").then(|| "other/notes".to_string()),
    );
    assert!(matches!(
        held[0].run,
        Run::Held {
            reason: "NamespaceTerminating",
            degraded: false,
            ..
        }
    ));
    match &held[1].run {
        Run::Held { reason, message, .. } => {
            assert_eq!(*reason, "NameConflict");
            assert!(message.contains("other/notes"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_no_stage_keeps_is_deleted() {
    let old = staged_app("registry.example/notes:1");
    let app = staged_app("registry.example/notes:2");
    let promotions = [promotion(
        "p1",
        "preview",
        "r-1",
        "Promoted",
        "2030-01-02T00:00:00Z",
    )];
    let stages = resolve(&app, &two_stages(), &promotions, &[snapshot(&old, "r-1")]).unwrap();
    let built: Vec<_> = stages
        .iter()
        .map(|s| s.plan().map(|p| build::children(p, &Default::default())))
        .collect();
    let keep = Keep::of(&stages, &built);
    let preview = Some("preview");
    assert!(keep.keeps("Deployment", "notes-preview", "notes", preview));
    assert!(keep.keeps("ConfigMap", "notes-preview", "notes-runtime", preview));
    assert!(keep.keeps("PodDisruptionBudget", "notes-preview", "notes", preview));
    // production runs nothing: its children go.
    assert!(!keep.keeps("Deployment", "notes", "notes", Some("production")));
    // The default stage's children, from before the App had a policy.
    assert!(!keep.keeps("Deployment", "notes", "notes", Some("default")));
    // The same name for another stage: made anew (its selector differs).
    assert!(!keep.keeps("Deployment", "notes-preview", "notes", Some("production")));
    assert!(!keep.keeps("Deployment", "notes-preview", "notes", None));

    // One replica: no budget.
    let mut single = old.clone();
    single.spec.replicas = 1;
    let stages = resolve(&app, &two_stages(), &promotions, &[snapshot(&single, "r-1")]).unwrap();
    let built: Vec<_> = stages
        .iter()
        .map(|s| s.plan().map(|p| build::children(p, &Default::default())))
        .collect();
    let keep = Keep::of(&stages, &built);
    assert!(!keep.keeps("PodDisruptionBudget", "notes-preview", "notes", preview));
    assert!(keep.keeps("Service", "notes-preview", "notes", preview));

    // A held stage keeps whatever runs there.
    let stages = resolve(&app, &two_stages(), &promotions, &[]).unwrap();
    let keep = Keep::of(&stages, &[None, None]);
    assert!(keep.keeps("Deployment", "notes-preview", "notes", preview));
    assert!(keep.keeps("ConfigMap", "notes-preview", "anything", preview));
    assert!(!keep.keeps("Deployment", "notes", "notes", Some("production")));
}

#[test]
fn status_lists_every_stage_and_ready_means_every_running_stage_is_available() {
    let old = staged_app("registry.example/notes:1");
    let app = staged_app("registry.example/notes:2");
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let get = |s: &AppStatus, t: &str| {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone())
    };

    // Nothing promoted yet.
    let stages = resolve(&app, &two_stages(), &[], &[]).unwrap();
    let s = status::desired_status(&app, &Outcome::Applied(&outcomes(&stages, &[None, None])), now);
    assert_eq!(get(&s, READY), ("False".into(), "NotPromoted".into()));
    assert_eq!(get(&s, PROGRESSING), ("False".into(), "NotPromoted".into()));
    assert_eq!(get(&s, DEGRADED), ("False".into(), "AsExpected".into()));
    let names: Vec<(&str, &str)> = s
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.namespace.as_str()))
        .collect();
    assert_eq!(names, [("preview", "notes-preview"), ("production", "notes")]);
    assert!(s.stages.iter().all(|s| s.revision.is_none() && s.phase.is_none()));
    assert_eq!(
        s.revision.as_ref().unwrap().id,
        revision::of(&app),
        "the App's current revision"
    );
    assert_eq!(s.revision.as_ref().unwrap().image, "registry.example/notes:2");
    assert!(s.url.is_none());

    // preview runs r-1 and is available; production runs nothing: Ready.
    let promotions = [promotion(
        "p1",
        "preview",
        "r-1",
        "Promoted",
        "2030-01-02T00:00:00Z",
    )];
    let stages = resolve(&app, &two_stages(), &promotions, &[snapshot(&old, "r-1")]).unwrap();
    let done = with_status(build::deployment(stages[0].plan().unwrap()), 2, 2);
    let s = status::desired_status(
        &app,
        &Outcome::Applied(&outcomes(&stages, &[Some(&done), None])),
        now,
    );
    assert_eq!(get(&s, READY), ("True".into(), "Available".into()));
    let preview = &s.stages[0];
    assert_eq!(preview.revision.as_deref(), Some("r-1"));
    assert_eq!(preview.phase.as_deref(), Some("Available"));
    assert_eq!(preview.replicas.as_deref(), Some("2/2"));
    assert_eq!(
        preview.url.as_deref(),
        Some("http://notes.notes-preview.svc:8080")
    );
    assert_eq!(preview.since.as_deref(), Some(now.to_string().as_str()));
    assert_eq!(s.url, preview.url, "the first stage that runs");
    assert!(s.stages[1].revision.is_none());
    assert_ne!(s.revision.as_ref().unwrap().id, "r-1");

    // production rolls out r-1 as well: Progressing, not Ready; preview's
    // `since` stays.
    let mut app_later = app.clone();
    app_later.status = Some(s.clone());
    let promotions = [
        promotion("p1", "preview", "r-1", "Promoted", "2030-01-02T00:00:00Z"),
        promotion("p2", "production", "r-1", "Promoted", "2030-01-03T00:00:00Z"),
    ];
    let stages = resolve(&app_later, &two_stages(), &promotions, &[snapshot(&old, "r-1")]).unwrap();
    let rolling = with_status(build::deployment(stages[1].plan().unwrap()), 0, 1);
    let later = Timestamp::from_second(1_800_000_100).unwrap();
    let s = status::desired_status(
        &app_later,
        &Outcome::Applied(&outcomes(&stages, &[Some(&done), Some(&rolling)])),
        later,
    );
    assert_eq!(get(&s, READY), ("False".into(), "RolloutInProgress".into()));
    assert_eq!(get(&s, PROGRESSING), ("True".into(), "RolloutInProgress".into()));
    let ready = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
    assert!(ready.message.starts_with("production: "), "{}", ready.message);
    assert_eq!(s.stages[0].since.as_deref(), Some(now.to_string().as_str()));
    assert_eq!(s.stages[1].since.as_deref(), Some(later.to_string().as_str()));
    assert_eq!(s.stages[1].phase.as_deref(), Some("Progressing"));

    // A held stage with an unreadable snapshot degrades the App.
    let stages = stages::hold(
        stages,
        |_| false,
        |ns, _| (ns == "notes").then(|| "x/notes".into()),
    );
    let s = status::desired_status(
        &app_later,
        &Outcome::Applied(&outcomes(&stages, &[Some(&done), None])),
        later,
    );
    assert_eq!(get(&s, DEGRADED), ("True".into(), "NameConflict".into()));
    assert_eq!(s.stages[1].phase.as_deref(), Some("Degraded"));
}

#[test]
fn stage_events_name_the_stage_and_its_revision() {
    let old = staged_app("registry.example/notes:1");
    let app = staged_app("registry.example/notes:2");
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let promotions = [promotion(
        "p1",
        "preview",
        "r-1",
        "Promoted",
        "2030-01-02T00:00:00Z",
    )];
    let stages = resolve(&app, &two_stages(), &promotions, &[snapshot(&old, "r-1")]).unwrap();
    let running = status::desired_status(&app, &Outcome::Applied(&outcomes(&stages, &[None, None])), now);
    let events = super::status_events(&AppStatus::default(), &running, &status::images(&stages), true);
    let applied: Vec<&str> = events
        .iter()
        .filter(|e| e.reason == "RevisionApplied")
        .filter_map(|e| e.note.as_deref())
        .collect();
    assert_eq!(
        applied,
        ["applied revision r-1 (image registry.example/notes:1) to stage preview in namespace notes-preview"]
    );

    let idle = resolve(&app, &two_stages(), &[], &[]).unwrap();
    let stopped = status::desired_status(&app, &Outcome::Applied(&outcomes(&idle, &[None, None])), now);
    let events = super::status_events(&running, &stopped, &status::images(&idle), true);
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    assert!(reasons.contains(&"StageStopped"), "{reasons:?}");
    assert!(!events.iter().any(|e| e.reason == "RevisionApplied"));
}

#[test]
fn a_stage_namespace_is_restricted_and_says_whose_it_is() {
    let ns = super::stage_namespace("team-preview", &crate::index::AppKey::new("team", "notes"));
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "winky-operator");
    assert_eq!(labels["winky.dev/stage-of"], "team.notes");
    assert_eq!(ns.metadata.name.as_deref(), Some("team-preview"));
}

#[tokio::test]
async fn only_a_promotions_phase_wakes_its_app() {
    use futures::StreamExt;
    use kube::runtime::watcher::Event;
    let with_history = |phase: &str, entries: usize| {
        let mut p = (*promotion("p1", "preview", "r-1", phase, "2030-01-02T00:00:00Z")).clone();
        let status = p.status.as_mut().unwrap();
        for i in 0..entries {
            status.history.push(winky_crds::promotion::HistoryEntry {
                at: format!("2030-01-02T00:00:0{i}Z"),
                event: "GateWaiting".into(),
                actor: "operator".into(),
                message: String::new(),
            });
        }
        p
    };
    let events = futures::stream::iter([
        Event::Init,
        Event::InitApply(with_history("Pending", 0)),
        Event::InitDone,
        Event::Apply(with_history("AwaitingApproval", 1)),
        // History appended, same phase: nothing to do.
        Event::Apply(with_history("AwaitingApproval", 2)),
        Event::Apply(with_history("Promoted", 3)),
        Event::Delete(with_history("Promoted", 3)),
    ])
    .map(Ok);
    let passed: Vec<String> = super::wiring::phase_changes(events)
        .map(|p| format!("{:?}", p.unwrap().status.unwrap().phase))
        .collect()
        .await;
    assert_eq!(passed, ["Pending", "AwaitingApproval", "Promoted", "Promoted"]);
}

fn http_functions(pairs: &[(&str, &str)]) -> build::Surroundings {
    build::Surroundings {
        http_functions: pairs
            .iter()
            .map(|(name, path)| build::HttpFunction {
                name: (*name).into(),
                path: (*path).into(),
            })
            .collect(),
        ingress_class: None,
    }
}

/// `(path, service, port)` of every path of the Ingress's one rule.
fn routes(ingress: &k8s_openapi::api::networking::v1::Ingress) -> Vec<(String, String, i32)> {
    let rules = ingress.spec.as_ref().unwrap().rules.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    rules[0]
        .http
        .as_ref()
        .unwrap()
        .paths
        .iter()
        .map(|p| {
            assert_eq!(p.path_type, "Prefix");
            let service = p.backend.service.as_ref().unwrap();
            (
                p.path.clone().unwrap(),
                service.name.clone(),
                service.port.as_ref().unwrap().number.unwrap(),
            )
        })
        .collect()
}

#[test]
fn only_a_public_app_has_an_ingress() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let around = http_functions(&[("resize", "/api/resize")]);
    let children = build::children(&plan, &around);
    assert!(children.ingress.is_none());
    assert!(!children.names().iter().any(|(kind, _, _)| *kind == "Ingress"));
}

#[test]
fn the_ingress_routes_slash_to_the_app_and_each_http_function_path_to_its_service() {
    let app = fixture("solo");
    let plan = validate::validate(&app, &OK).unwrap();
    let around = http_functions(&[
        ("resize", "/api/resize"),
        ("items", "/api/items/{id}/tags"),
        ("thumbs", "/api/resize/"), // the prefix of resize, first by name: resize keeps it
    ]);
    let children = build::children(&plan, &around);
    let ingress = children.ingress.clone().expect("public: an Ingress");
    assert!(children.names().contains(&("Ingress", "team", "solo")));
    assert_eq!(
        routes(&ingress),
        vec![
            ("/".into(), "solo".into(), 3000),
            ("/api/items".into(), "items-fn".into(), 80),
            ("/api/resize".into(), "resize-fn".into(), 80),
        ]
    );
    let spec = ingress.spec.as_ref().unwrap();
    assert_eq!(spec.rules.as_ref().unwrap()[0].host, None, "every host");
    assert_eq!(spec.tls, None);
    assert_eq!(spec.ingress_class_name, None, "the cluster's default class");
    let meta = &ingress.metadata;
    assert_eq!(meta.owner_references.as_ref().unwrap()[0].kind, "App");
    assert_eq!(meta.labels.as_ref().unwrap()["winky.dev/app"], "solo");
    // Nothing the apiserver would drop (a changed apply each time).
    let json = serde_json::to_string(&ingress).unwrap();
    assert!(!json.contains("[]"), "{json}");
}

#[test]
fn the_ingress_takes_host_tls_and_class_from_the_spec_else_the_operator() {
    let mut app = fixture("solo");
    app.spec.ingress.host = Some("{stage}.solo.example.com".into());
    app.spec.ingress.tls_secret = Some("solo-tls".into());
    let plan = validate::validate(&app, &OK).unwrap();
    let around = build::Surroundings {
        ingress_class: Some("nginx".into()),
        ..Default::default()
    };
    let ingress = build::ingress(&plan, &around).unwrap();
    let spec = ingress.spec.unwrap();
    let host = "default.solo.example.com".to_string();
    assert_eq!(spec.rules.unwrap()[0].host.as_ref(), Some(&host));
    let tls = spec.tls.unwrap();
    assert_eq!(tls[0].secret_name.as_deref(), Some("solo-tls"));
    assert_eq!(tls[0].hosts.as_deref(), Some(&[host][..]));
    assert_eq!(
        spec.ingress_class_name.as_deref(),
        Some("nginx"),
        "--ingress-class"
    );

    app.spec.ingress.class_name = Some("traefik".into());
    let plan = validate::validate(&app, &OK).unwrap();
    let spec = build::ingress(&plan, &around).unwrap().spec.unwrap();
    assert_eq!(
        spec.ingress_class_name.as_deref(),
        Some("traefik"),
        "the spec's wins"
    );
}

#[test]
fn ingress_prefixes_stop_at_the_first_template() {
    assert_eq!(build::ingress_prefix("/api/resize"), "/api/resize");
    assert_eq!(build::ingress_prefix("/api/resize/"), "/api/resize");
    assert_eq!(build::ingress_prefix("/api/items/{id}"), "/api/items");
    assert_eq!(build::ingress_prefix("/a/{x}/b"), "/a");
}

#[test]
fn the_runtime_config_lists_the_http_functions_in_cluster_urls() {
    let app = fixture("notes");
    let plan = validate::validate(&app, &OK).unwrap();
    let around = http_functions(&[("resize", "/api/resize")]);
    let cm = build::config_map(&plan, &around);
    let doc: serde_json::Value = serde_json::from_str(&cm.data.unwrap()["runtime.json"]).unwrap();
    assert_eq!(
        doc["functions"],
        serde_json::json!({"resize": {"path": "/api/resize", "url": "http://resize-fn.notes.svc:80"}})
    );

    // A stage in another namespace reaches no Function: they run in the
    // App's namespace only, and admit only the pods of theirs.
    let mut elsewhere = plan.clone();
    elsewhere.target = validate::Target {
        stage: "preview".into(),
        namespace: "notes-preview".into(),
    };
    let cm = build::config_map(&elsewhere, &around);
    let doc: serde_json::Value = serde_json::from_str(&cm.data.unwrap()["runtime.json"]).unwrap();
    assert_eq!(doc["functions"], serde_json::json!({}));
    let mut public = app.clone();
    public.spec.ingress.public = true;
    let mut elsewhere = validate::validate(&public, &OK).unwrap();
    elsewhere.target.namespace = "notes-preview".into();
    let ingress = build::ingress(&elsewhere, &around).unwrap();
    assert_eq!(routes(&ingress).len(), 1, "only / in another namespace");
}
