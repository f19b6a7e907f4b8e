//! Unit tests of validate, build and status, from the YAML fixtures beside
//! this file. No server involved.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::jiff::Timestamp;
use winky_crds::App;
use winky_crds::common::{SecretEnv, VaultRef};

use super::build;
use super::status::{self, Outcome};
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
    let children = build::children(&plan);
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
    let cm = build::config_map(&plan);
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
    let s = status::desired_status(
        &app,
        &Outcome::Applied {
            plan: &plan,
            deployment: &rolling,
        },
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
    let s = status::desired_status(
        &app,
        &Outcome::Applied {
            plan: &plan,
            deployment: &done,
        },
        now,
    );
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
