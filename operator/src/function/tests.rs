use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use winky_crds::{App, Function};

use super::build::{self, Workload};
use super::status::Invalid;
use super::validate;
use crate::context::Settings;

const APP: &str = r#"
apiVersion: winky.dev/v1alpha1
kind: App
metadata: {name: notes, namespace: notes, uid: 00000000-0000-0000-0000-000000000001}
spec: {image: registry.example/notes:1, port: 8080, replicas: 2}
"#;

fn function(trigger: &str, extra: &str) -> Function {
    let yaml = format!(
        "apiVersion: winky.dev/v1alpha1\nkind: Function\nmetadata: {{name: resize, namespace: notes, uid: 00000000-0000-0000-0000-000000000002}}\n\
         spec:\n  app: notes\n  image: registry.example/resize:1\n  trigger: {trigger}\n{extra}"
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

fn app() -> App {
    serde_saphyr::from_str(APP).unwrap()
}

fn assert_hardened(template: &PodTemplateSpec, memory: &str) {
    let pod = template.spec.as_ref().unwrap();
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert_eq!(pod.automount_service_account_token, Some(false));
    let container = &pod.containers[0];
    let context = container.security_context.as_ref().unwrap();
    assert_eq!(context.read_only_root_filesystem, Some(true));
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(
        context.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    let limits = container.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, memory);
    assert!(limits.contains_key("cpu"));
}

fn env(template: &PodTemplateSpec) -> BTreeMap<String, String> {
    template.spec.as_ref().unwrap().containers[0]
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect()
}

#[test]
fn an_http_function_is_a_hardened_deployment_behind_a_service_reachable_from_its_app_only() {
    let f = function("{http: {path: /api/resize}}", "");
    let children = build::children(&f, &app(), "r-0123456789");
    let Workload::Http { deployment, service } = &children.workload else {
        panic!("{:?}", children.workload)
    };
    assert_eq!(deployment.metadata.name.as_deref(), Some("resize-fn"));
    assert_eq!(service.metadata.name.as_deref(), Some("resize-fn"));
    let template = &deployment.spec.as_ref().unwrap().template;
    assert_hardened(template, "512Mi");
    assert_eq!(env(template)["WINKY_TIMEOUT_SECONDS"], "30");
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("Function", Some(true)));

    let policy = children.network_policy.spec.unwrap();
    assert_eq!(policy.policy_types.unwrap(), vec!["Ingress", "Egress"]);
    // Both policy types with no egress rule: no egress at all.
    assert_eq!(policy.egress, None, "no egress at all");
    let ingress = policy.ingress.unwrap();
    assert_eq!(ingress.len(), 1);
    let from = ingress[0].from.as_ref().unwrap()[0]
        .pod_selector
        .as_ref()
        .unwrap();
    let labels = from.match_labels.as_ref().unwrap();
    assert_eq!(labels["winky.dev/app"], "notes");
    assert_eq!(labels["winky.dev/owner-kind"], "App");
}

#[test]
fn function_pods_are_never_selected_as_pods_of_their_app() {
    let f = function("{http: {path: /api/resize}}", "");
    let labels = build::children(&f, &app(), "r").workload;
    let Workload::Http { deployment, .. } = labels else {
        panic!()
    };
    let pod_labels = deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    let app = app();
    let app_plan = crate::app::validate::validate(
        &app,
        &crate::app::validate::Inputs {
            policy_exists: None,
            vault_configured: false,
        },
    )
    .unwrap();
    let app_selector = crate::app::build::selector_labels(&app_plan);
    assert!(
        !app_selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "{pod_labels:?} matches the App's selector {app_selector:?}"
    );
}

#[test]
fn a_scheduled_function_is_a_cron_job_that_runs_once_at_a_time_within_its_timeout() {
    let f = function(
        "{schedule: {cron: '*/5 * * * *'}}",
        "  memory: 128Mi\n  timeoutSeconds: 20\n",
    );
    let children = build::children(&f, &app(), "r");
    let Workload::Schedule { cron_job } = &children.workload else {
        panic!()
    };
    let spec = &cron_job.spec;
    assert_eq!(spec.schedule, "*/5 * * * *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let job = spec.job_template.spec.as_ref().unwrap();
    assert_eq!(job.backoff_limit, Some(0));
    assert_eq!(job.active_deadline_seconds, Some(20));
    assert_eq!(
        job.template.spec.as_ref().unwrap().restart_policy.as_deref(),
        Some("Never")
    );
    assert_hardened(&job.template, "128Mi");
    // Both policy types with no ingress rule: nothing may connect.
    let policy = children.network_policy.spec.unwrap();
    assert_eq!(policy.policy_types.unwrap(), vec!["Ingress", "Egress"]);
    assert_eq!(policy.ingress, None);
}

#[test]
fn a_document_function_subscribes_to_its_app_and_may_reach_only_it() {
    let f = function("{document: {collection: notes, events: [create, update]}}", "");
    let children = build::children(&f, &app(), "r");
    let Workload::Document { deployment } = &children.workload else {
        panic!()
    };
    let template = &deployment.spec.as_ref().unwrap().template;
    assert_eq!(
        env(template)["WINKY_EVENTS_URL"],
        "http://notes:8080/_winky/events?collection=notes&events=create,update"
    );
    let egress = children.network_policy.spec.unwrap().egress.unwrap();
    assert_eq!(egress.len(), 1);
    let port = egress[0].ports.as_ref().unwrap()[0].port.clone();
    assert_eq!(
        port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
            8080
        ))
    );
}

#[test]
fn an_egress_allow_list_opens_dns_and_exactly_the_listed_destinations() {
    let f = function(
        "{http: {path: /x}}",
        "  network:\n    egress:\n      - {cidr: 203.0.113.0/24, ports: [443]}\n  serviceAccountToken: true\n",
    );
    let children = build::children(&f, &app(), "r");
    let egress = children.network_policy.spec.unwrap().egress.unwrap();
    assert_eq!(egress.len(), 2, "DNS and the CIDR");
    let cidr = egress[1].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap();
    assert_eq!(cidr.cidr, "203.0.113.0/24");
    assert_eq!(
        children.service_account.automount_service_account_token,
        Some(true)
    );
}

#[test]
fn a_missing_app_or_vault_is_reported_not_retried() {
    let f = function("{http: {path: /x}}", "");
    assert_eq!(
        validate(&f, None, &Settings::default()).unwrap_err(),
        Invalid::AppNotFound { app: "notes".into() }
    );
    let vault = function(
        "{http: {path: /x}}",
        "  secrets:\n    - {name: KEY, vault: {path: apps/notes, key: k}}\n",
    );
    let app = app();
    assert_eq!(
        validate(&vault, Some(&app), &Settings::default())
            .unwrap_err()
            .reason(),
        "VaultNotConfigured"
    );
    assert!(
        validate(
            &vault,
            Some(&app),
            &Settings {
                vault_configured: true,
                ..Settings::default()
            }
        )
        .is_ok()
    );
}

/// The paths of the empty lists in `value`.
fn empty_lists(value: &serde_json::Value, path: &str, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Array(items) if items.is_empty() => found.push(path.to_string()),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                empty_lists(item, &format!("{path}[{i}]"), found);
            }
        }
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                empty_lists(field, &format!("{path}.{key}"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn no_child_sends_an_empty_list() {
    // The apiserver drops empty lists; an apply that sends one rewrites the
    // managed fields every time, and the write wakes the next reconcile.
    for trigger in [
        "{http: {path: /api/resize}}",
        "{schedule: {cron: '0 7 * * *'}}",
        "{document: {collection: notes, events: [create]}}",
    ] {
        let children = build::children(&function(trigger, ""), &app(), "r-1");
        let mut objects = vec![
            serde_json::to_value(&children.service_account).unwrap(),
            serde_json::to_value(&children.network_policy).unwrap(),
        ];
        match &children.workload {
            Workload::Http { deployment, service } => {
                objects.push(serde_json::to_value(deployment).unwrap());
                objects.push(serde_json::to_value(service).unwrap());
            }
            Workload::Schedule { cron_job } => objects.push(serde_json::to_value(cron_job).unwrap()),
            Workload::Document { deployment } => objects.push(serde_json::to_value(deployment).unwrap()),
        }
        let mut found = Vec::new();
        for object in &objects {
            empty_lists(object, object["kind"].as_str().unwrap_or_default(), &mut found);
        }
        assert!(found.is_empty(), "{trigger}: {found:?}");
    }
}

#[test]
fn an_http_function_of_a_public_app_admits_every_source_as_its_ingress_routes_to_it() {
    let mut public = app();
    public.spec.ingress.public = true;
    let f = function("{http: {path: /api/resize}}", "");
    let policy = build::children(&f, &public, "r").network_policy.spec.unwrap();
    let ingress = policy.ingress.unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].from, None, "any source");
    assert_eq!(
        ingress[0].ports.as_ref().unwrap()[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(
            build::HTTP_PORT
        ))
    );
    assert_eq!(policy.egress, None, "still no egress");
}

#[test]
fn a_document_trigger_needs_a_collection_its_app_declares() {
    let f = function("{document: {collection: notes, events: [create]}}", "");
    let err = validate(&f, Some(&app()), &Settings::default()).unwrap_err();
    assert_eq!(err.reason(), "CollectionNotFound");
    assert!(err.message().contains("\"notes\""), "{}", err.message());

    let mut declared = app();
    declared.spec.runtime = Some(winky_crds::app::AppRuntime {
        collections: vec![winky_crds::app::Collection {
            name: "notes".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert!(validate(&f, Some(&declared), &Settings::default()).is_ok());
}

#[test]
fn without_its_app_a_function_reports_no_workload() {
    let mut f = function("{http: {path: /api/resize}}", "");
    f.status = Some(winky_crds::function::FunctionStatus {
        workload: Some(winky_crds::function::WorkloadRef {
            kind: "Deployment".into(),
            name: "resize-fn".into(),
        }),
        ..Default::default()
    });
    let now = k8s_openapi::jiff::Timestamp::now();
    let missing = Invalid::AppNotFound { app: "notes".into() };
    let status = super::status::desired_status(&f, &super::status::Outcome::Invalid(&missing), None, now);
    assert_eq!(status.workload, None, "its workload was deleted");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "AppNotFound")
    );

    let vault = Invalid::VaultNotConfigured {
        variable: "KEY".into(),
    };
    let status = super::status::desired_status(&f, &super::status::Outcome::Invalid(&vault), None, now);
    assert!(status.workload.is_some(), "what runs stays");
}
