//! The desired children of a Function, built purely from the Function and its
//! App. Unit-tested without a server; the e2e tests prove the apiserver's Pod
//! Security admission accepts every pod template built here.
//!
//! | trigger    | workload                          | reachable from            |
//! |------------|-----------------------------------|---------------------------|
//! | `http`     | Deployment + Service (port 80)    | its App's pods; anyone when the App is public (its Ingress routes here) |
//! | `schedule` | CronJob (one run at a time)       | nothing                   |
//! | `document` | Deployment, subscribed to the App | nothing                   |
//!
//! A document-triggered function subscribes to its App's event stream: it
//! gets `WINKY_EVENTS_URL` (the App's Service, `/_winky/events` with the
//! collection and events as query) and its NetworkPolicy allows egress to its
//! App's pods on the App's port — and nowhere else unless the spec says so.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec, ResourceRequirements, Service,
    ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use winky_crds::function::DocumentEvent;
use winky_crds::keys::REVISION_ANNOTATION;
use winky_crds::{App, Function};

use crate::naming;
use crate::workload::{self, env_value};

/// The port an HTTP function listens on inside its container.
pub const HTTP_PORT: i32 = 8080;
/// The port of an HTTP function's Service.
pub const SERVICE_PORT: i32 = 80;

/// Seconds between SIGTERM and SIGKILL when a function pod stops.
const GRACE_SECONDS: i64 = 10;

/// Which workload runs the function.
// One value per reconcile, moved once: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    /// `http`: a Deployment behind a Service.
    Http {
        deployment: Deployment,
        service: Service,
    },
    /// `schedule`: a CronJob.
    Schedule { cron_job: CronJob },
    /// `document`: a Deployment subscribed to the App's events.
    Document { deployment: Deployment },
}

impl Workload {
    /// `(kind, name)` of the object that runs the function, for status.
    pub fn reference(&self) -> (&'static str, String) {
        match self {
            Self::Http { deployment, .. } | Self::Document { deployment } => {
                ("Deployment", deployment.name_any())
            }
            Self::Schedule { cron_job } => ("CronJob", cron_job.name_any()),
        }
    }
}

/// Every child of a Function.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub workload: Workload,
    pub service_account: ServiceAccount,
    pub network_policy: NetworkPolicy,
}

/// Name of every child of a Function ([`naming::function_child`]).
pub fn child_name(function: &Function) -> String {
    naming::function_child(&function.name_any())
}

/// Labels on every child of the Function ([`naming::function_labels`]).
pub fn labels(function: &Function) -> BTreeMap<String, String> {
    naming::function_labels(&function.name_any(), &function.spec.app)
}

/// The label selector of the Function's pods.
pub fn selector_labels(function: &Function) -> BTreeMap<String, String> {
    naming::function_selector(&function.name_any())
}

fn metadata(function: &Function) -> ObjectMeta {
    ObjectMeta {
        name: Some(child_name(function)),
        namespace: function.namespace(),
        labels: Some(labels(function)),
        owner_references: owner_reference(function).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(function: &Function) -> Option<OwnerReference> {
    let mut owner = function.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

/// Builds every child; `revision` is the App revision the function ships with.
pub fn children(function: &Function, app: &App, revision: &str) -> Children {
    let trigger = &function.spec.trigger;
    let template = pod_template(function, app, revision);
    let workload = if trigger.schedule.is_some() {
        Workload::Schedule {
            cron_job: cron_job(function, template),
        }
    } else if trigger.http.is_some() {
        Workload::Http {
            deployment: deployment(function, template),
            service: service(function),
        }
    } else {
        Workload::Document {
            deployment: deployment(function, template),
        }
    };
    Children {
        workload,
        service_account: ServiceAccount {
            metadata: metadata(function),
            automount_service_account_token: Some(function.spec.service_account_token),
            ..ServiceAccount::default()
        },
        network_policy: network_policy(function, app),
    }
}

fn events_query(events: &[DocumentEvent]) -> String {
    events
        .iter()
        .map(|e| match e {
            DocumentEvent::Create => "create",
            DocumentEvent::Update => "update",
            DocumentEvent::Delete => "delete",
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The hardened pod template every trigger shares.
pub fn pod_template(function: &Function, app: &App, revision: &str) -> PodTemplateSpec {
    let spec = &function.spec;
    let (tmp_volume, tmp_mount) = workload::tmp_volume();
    let limits = BTreeMap::from([
        ("cpu".to_string(), Quantity(spec.cpu.clone())),
        ("memory".to_string(), Quantity(spec.memory.clone())),
    ]);
    let mut env: Vec<EnvVar> = vec![
        env_value("WINKY_APP", &spec.app),
        env_value("WINKY_FUNCTION", &function.name_any()),
        env_value("WINKY_REVISION", revision),
        env_value("WINKY_TIMEOUT_SECONDS", &spec.timeout_seconds.to_string()),
    ];
    let trigger = &spec.trigger;
    if let Some(http) = &trigger.http {
        env.push(env_value("WINKY_TRIGGER", "http"));
        env.push(env_value("WINKY_HTTP_PATH", &http.path));
        env.push(env_value("PORT", &HTTP_PORT.to_string()));
    } else if let Some(schedule) = &trigger.schedule {
        env.push(env_value("WINKY_TRIGGER", "schedule"));
        env.push(env_value("WINKY_SCHEDULE", &schedule.cron));
    } else if let Some(document) = &trigger.document {
        env.push(env_value("WINKY_TRIGGER", "document"));
        env.push(env_value(
            "WINKY_EVENTS_URL",
            &format!(
                "http://{}:{}/_winky/events?collection={}&events={}",
                app.name_any(),
                app.spec.port,
                document.collection,
                events_query(&document.events)
            ),
        ));
    }
    env.extend(spec.env.iter().map(|e| env_value(&e.name, &e.value)));
    env.extend(workload::secret_env(&spec.secrets));

    let container = Container {
        name: "function".into(),
        image: Some(spec.image.clone()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        ports: trigger.http.as_ref().map(|_| {
            vec![ContainerPort {
                name: Some("http".into()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }]
        }),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: Some(limits.clone()),
            limits: Some(limits),
            ..ResourceRequirements::default()
        }),
        security_context: Some(workload::container_security_context()),
        volume_mounts: Some(vec![tmp_mount]),
        ..Container::default()
    };
    let mut pod_labels = labels(function);
    pod_labels.extend(selector_labels(function));
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(BTreeMap::from([(
                REVISION_ANNOTATION.to_string(),
                revision.to_string(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(child_name(function)),
            automount_service_account_token: Some(spec.service_account_token),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(GRACE_SECONDS),
            security_context: Some(workload::pod_security_context()),
            containers: vec![container],
            volumes: Some(vec![tmp_volume]),
            ..PodSpec::default()
        }),
    }
}

fn deployment(function: &Function, template: PodTemplateSpec) -> Deployment {
    Deployment {
        metadata: metadata(function),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector_labels(function)),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn service(function: &Function) -> Service {
    Service {
        metadata: metadata(function),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(function)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// One run at a time, stopped at the function's timeout, never retried
/// (a retry would run the function twice), short history.
fn cron_job(function: &Function, mut template: PodTemplateSpec) -> CronJob {
    let timeout = i64::from(function.spec.timeout_seconds);
    if let Some(pod) = template.spec.as_mut() {
        pod.restart_policy = Some("Never".into());
        pod.active_deadline_seconds = Some(timeout);
    }
    CronJob {
        metadata: metadata(function),
        spec: CronJobSpec {
            schedule: function
                .spec
                .trigger
                .schedule
                .as_ref()
                .map(|s| s.cron.clone())
                .unwrap_or_default(),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(60),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(function)),
                    ..ObjectMeta::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(0),
                    active_deadline_seconds: Some(timeout),
                    ttl_seconds_after_finished: Some(3600),
                    template,
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        status: None,
    }
}

/// No network by default: ingress only from the pods of its App (and only
/// for HTTP functions; from anywhere when the App is public, as its Ingress
/// routes the function's path here and the ingress controller's pods must
/// reach it), egress only to what the spec allows — plus DNS when it allows
/// anything, and the App's port for document subscriptions.
pub fn network_policy(function: &Function, app: &App) -> NetworkPolicy {
    let spec = &function.spec;
    let app_pods = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(naming::app_pods(&spec.app)),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let ingress: Vec<NetworkPolicyIngressRule> = match &spec.trigger.http {
        Some(_) => vec![NetworkPolicyIngressRule {
            // No `from`: every source, like the public App's own policy.
            from: (!app.spec.ingress.public).then(|| vec![app_pods.clone()]),
            ports: Some(vec![workload::tcp_port(HTTP_PORT)]),
        }],
        None => vec![],
    };
    let mut egress: Vec<NetworkPolicyEgressRule> = Vec::new();
    if !spec.network.egress.is_empty() {
        egress.push(workload::dns_egress());
        egress.extend(workload::cidr_egress(&spec.network.egress));
    }
    if spec.trigger.document.is_some() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![app_pods]),
            ports: Some(vec![workload::tcp_port(app.spec.port)]),
        });
    }
    NetworkPolicy {
        metadata: metadata(function),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(function)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            // Empty lists are left out, not sent: the apiserver drops them, and
            // a server-side apply that sends one changes the managed fields on
            // every apply, so each reconcile's write woke the next one (a hot
            // loop of ~100 reconciles a second per Function). Absent rules with
            // both policy types deny all the same.
            ingress: (!ingress.is_empty()).then_some(ingress),
            egress: (!egress.is_empty()).then_some(egress),
        }),
    }
}
