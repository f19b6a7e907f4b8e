//! The desired children of an App in one stage, built purely from a
//! validated [`Plan`]: from the plan's spec (the App's own, or the snapshot
//! of the revision promoted into the stage), into the stage's namespace.
//! No client here: every builder is unit-tested from YAML fixtures.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use winky_crds::App;
use winky_crds::keys::REVISION_ANNOTATION;

use super::validate::Plan;
use crate::naming;
use crate::workload::{self, env_value};

pub use crate::workload::RUN_AS;
/// Default CPU limit when the App sets none.
pub const DEFAULT_CPU: &str = winky_crds::defaults::APP_CPU;
/// Default memory limit when the App sets none.
pub const DEFAULT_MEMORY: &str = winky_crds::defaults::APP_MEMORY;
/// Where the runtime configuration is mounted in the container.
pub const RUNTIME_DIR: &str = "/etc/winky";
/// Key of the runtime configuration in the ConfigMap.
pub const RUNTIME_KEY: &str = "runtime.json";
/// The port of an HTTP Function's Service
/// ([`crate::function::build::SERVICE_PORT`]).
const FUNCTION_SERVICE_PORT: i32 = crate::function::build::SERVICE_PORT;

/// An HTTP Function of the App: what its Ingress routes, and what its
/// runtime configuration tells it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HttpFunction {
    /// The Function's name; its Service is [`naming::function_child`].
    pub name: String,
    /// `spec.trigger.http.path`.
    pub path: String,
}

/// What an App's children need besides its plan, read from the caches and
/// the operator's flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Surroundings {
    /// The App's Functions with an HTTP trigger (they run in the App's own
    /// namespace only), sorted by name.
    pub http_functions: Vec<HttpFunction>,
    /// IngressClass of an Ingress whose App names none (`--ingress-class`).
    pub ingress_class: Option<String>,
}

impl Surroundings {
    /// The HTTP Functions a stage reaches: those of the App when the stage
    /// runs in the App's namespace, where they run (an Ingress routes only to
    /// Services of its own namespace, and a Function admits only the pods of
    /// its namespace); none elsewhere.
    fn functions<'s>(&'s self, plan: &Plan<'_>) -> &'s [HttpFunction] {
        if plan.in_app_namespace() {
            &self.http_functions
        } else {
            &[]
        }
    }
}

/// Every child of an App. Adding a field here breaks the exhaustive
/// destructuring in `apply`, so a new child cannot be built and then forgotten.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// Runs the app.
    pub deployment: Deployment,
    /// Exposes it inside the cluster.
    pub service: Service,
    /// Its identity; the token is not mounted.
    pub service_account: ServiceAccount,
    /// Its runtime configuration.
    pub config_map: ConfigMap,
    /// Who may reach it and what it may reach.
    pub network_policy: NetworkPolicy,
    /// Keeps one pod up during voluntary disruptions, when there are several.
    pub pod_disruption_budget: Option<PodDisruptionBudget>,
    /// Serves it (and its HTTP Functions) from outside the cluster, when public.
    pub ingress: Option<Ingress>,
}

/// Labels on every child of the App in its stage ([`naming::stage_labels`]).
pub fn labels(plan: &Plan<'_>) -> BTreeMap<String, String> {
    naming::stage_labels(&plan.name, &plan.app_namespace, &plan.target.stage)
}

/// The label selector of the App's pods (immutable once a Deployment exists).
pub fn selector_labels(plan: &Plan<'_>) -> BTreeMap<String, String> {
    naming::app_selector(&plan.name, &plan.target.stage)
}

impl Children {
    /// Kind, namespace and name of every child.
    pub fn names(&self) -> Vec<(&'static str, &str, &str)> {
        fn of<'m>(kind: &'static str, meta: &'m ObjectMeta) -> (&'static str, &'m str, &'m str) {
            (
                kind,
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            )
        }
        let mut names = vec![
            of("Deployment", &self.deployment.metadata),
            of("Service", &self.service.metadata),
            of("ServiceAccount", &self.service_account.metadata),
            of("ConfigMap", &self.config_map.metadata),
            of("NetworkPolicy", &self.network_policy.metadata),
        ];
        if let Some(pdb) = &self.pod_disruption_budget {
            names.push(of("PodDisruptionBudget", &pdb.metadata));
        }
        if let Some(ingress) = &self.ingress {
            names.push(of("Ingress", &ingress.metadata));
        }
        names
    }
}

/// Builds every child.
pub fn children(plan: &Plan<'_>, around: &Surroundings) -> Children {
    Children {
        deployment: deployment(plan),
        service: service(plan),
        service_account: service_account(plan),
        config_map: config_map(plan, around),
        network_policy: network_policy(plan),
        pod_disruption_budget: pod_disruption_budget(plan),
        ingress: ingress(plan, around),
    }
}

/// The metadata of a child: in the stage's namespace, labelled, and owned
/// by the App when that is its own namespace (Kubernetes allows no owner in
/// another; the App's finalizer deletes those children instead).
fn metadata(plan: &Plan<'_>, name: String) -> ObjectMeta {
    let owner = if plan.in_app_namespace() {
        owner_reference(plan.app)
    } else {
        None
    };
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.target.namespace.clone()),
        labels: Some(labels(plan)),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn owner_reference(app: &App) -> Option<OwnerReference> {
    let mut owner = app.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

/// The Deployment: Pod Security "restricted" compatible, token not mounted,
/// read-only root filesystem with a writable `/tmp`.
pub fn deployment(plan: &Plan<'_>) -> Deployment {
    let spec = plan.spec.as_ref();
    let resources = spec.resources.clone().unwrap_or_default();
    let cpu = Quantity(resources.cpu.unwrap_or_else(|| DEFAULT_CPU.into()));
    let memory = Quantity(resources.memory.unwrap_or_else(|| DEFAULT_MEMORY.into()));
    let limits = BTreeMap::from([
        ("cpu".to_string(), cpu.clone()),
        ("memory".to_string(), memory.clone()),
    ]);

    let mut env: Vec<EnvVar> = vec![
        env_value("WINKY_APP", &plan.name),
        env_value("WINKY_STAGE", &plan.target.stage),
        env_value("WINKY_REVISION", &plan.revision),
        env_value("WINKY_RUNTIME_CONFIG", &format!("{RUNTIME_DIR}/{RUNTIME_KEY}")),
        env_value("PORT", &spec.port.to_string()),
    ];
    env.extend(spec.env.iter().map(|e| env_value(&e.name, &e.value)));
    env.extend(workload::secret_env(&spec.secrets));

    let probe = |path: &Option<String>, failure_threshold: i32| {
        path.as_ref().map(|p| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(p.clone()),
                port: IntOrString::String("http".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            failure_threshold: Some(failure_threshold),
            ..Probe::default()
        })
    };
    let probes = spec.probes.clone().unwrap_or_default();

    let (tmp_volume, tmp_mount) = workload::tmp_volume();
    let container = Container {
        name: "app".into(),
        image: Some(spec.image.clone()),
        command: (!spec.command.is_empty()).then(|| spec.command.clone()),
        args: (!spec.args.is_empty()).then(|| spec.args.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: spec.port,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env),
        resources: Some(ResourceRequirements {
            limits: Some(limits),
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), cpu),
                ("memory".to_string(), memory),
            ])),
            ..ResourceRequirements::default()
        }),
        liveness_probe: probe(&probes.liveness, 3),
        readiness_probe: probe(&probes.readiness, 1),
        security_context: Some(workload::container_security_context()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "runtime".into(),
                mount_path: RUNTIME_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            tmp_mount,
        ]),
        ..Container::default()
    };

    let mut pod_labels = labels(plan);
    pod_labels.extend(selector_labels(plan));
    Deployment {
        metadata: metadata(plan, plan.child.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(plan)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        REVISION_ANNOTATION.to_string(),
                        plan.revision.clone(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(plan.child.clone()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(workload::pod_security_context()),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "runtime".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: naming::runtime_config_map(&plan.child),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        tmp_volume,
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The ClusterIP Service, on the App's port.
pub fn service(plan: &Plan<'_>) -> Service {
    Service {
        metadata: metadata(plan, plan.child.clone()),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(plan)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: plan.spec.port,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The ServiceAccount; its token is never mounted automatically.
pub fn service_account(plan: &Plan<'_>) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(plan, plan.child.clone()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The in-cluster URL of the HTTP Function `function` of an App of `namespace`.
pub fn function_url(function: &str, namespace: &str) -> String {
    format!(
        "http://{}.{namespace}.svc:{FUNCTION_SERVICE_PORT}",
        naming::function_child(function)
    )
}

/// The runtime ConfigMap: what the backend runtime provisions for the App, as
/// JSON under `runtime.json`, and the in-cluster URL of each HTTP Function it
/// may call. Other controllers (rules) own other keys of the same ConfigMap
/// through their own field managers.
pub fn config_map(plan: &Plan<'_>, around: &Surroundings) -> ConfigMap {
    let runtime = plan.spec.runtime.clone().unwrap_or_default();
    let functions: serde_json::Map<String, serde_json::Value> = around
        .functions(plan)
        .iter()
        .map(|f| {
            let url = function_url(&f.name, &plan.target.namespace);
            (f.name.clone(), serde_json::json!({"path": f.path, "url": url}))
        })
        .collect();
    let document = serde_json::json!({
        "app": plan.name,
        "stage": plan.target.stage,
        "revision": plan.revision,
        "auth": runtime.auth,
        "collections": runtime.collections,
        "storage": runtime.storage,
        "functions": functions,
    });
    ConfigMap {
        metadata: metadata(plan, naming::runtime_config_map(&plan.child)),
        data: Some(BTreeMap::from([(
            RUNTIME_KEY.to_string(),
            serde_json::to_string_pretty(&document).unwrap_or_default(),
        )])),
        ..ConfigMap::default()
    }
}

/// The NetworkPolicy: ingress only from the App's own namespace and the
/// namespaces it names (or anywhere when public), on its port; egress only to
/// cluster DNS and the declared destinations.
pub fn network_policy(plan: &Plan<'_>) -> NetworkPolicy {
    let spec = plan.spec.as_ref();
    let port = NetworkPolicyPort {
        port: Some(IntOrString::Int(spec.port)),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    };
    let from = if spec.ingress.public {
        None // no `from`: every source
    } else {
        let mut peers = vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }];
        if !spec.ingress.from_namespaces.is_empty() {
            peers.push(NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "kubernetes.io/metadata.name".into(),
                        operator: "In".into(),
                        values: Some(spec.ingress.from_namespaces.clone()),
                    }]),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            });
        }
        Some(peers)
    };
    let mut egress = vec![workload::dns_egress()];
    egress.extend(workload::cidr_egress(&spec.egress));
    NetworkPolicy {
        metadata: metadata(plan, plan.child.clone()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(plan)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from,
                ports: Some(vec![port]),
            }]),
            egress: Some(egress),
        }),
    }
}

/// The prefix an Ingress routes for a Function's `path`: up to its first
/// templated segment (`/api/items/{id}` → `/api/items`), without a trailing
/// `/` (a `Prefix` path matches whole segments: `/api/items` matches
/// `/api/items/7` and not `/api/itemsx`).
pub fn ingress_prefix(path: &str) -> String {
    let literal: Vec<&str> = path
        .split('/')
        .skip(1)
        .take_while(|segment| !segment.contains('{'))
        .filter(|segment| !segment.is_empty())
        .collect();
    format!("/{}", literal.join("/"))
}

/// The host of the stage: `spec.ingress.host` with `{stage}` replaced.
pub fn ingress_host(plan: &Plan<'_>) -> Option<String> {
    let host = plan.spec.ingress.host.as_ref()?;
    Some(host.replace("{stage}", &plan.target.stage))
}

/// The Ingress of a public App: `/` to the App's Service and each HTTP
/// Function's path prefix ([`ingress_prefix`]) to the Function's Service,
/// on the spec's host (every host without one), with TLS from the spec's
/// Secret, in the spec's IngressClass, else the operator's, else the
/// cluster's default. None unless `spec.ingress.public`. Two Functions with
/// the same prefix: the first by name gets it; a prefix of `/` stays the App's.
pub fn ingress(plan: &Plan<'_>, around: &Surroundings) -> Option<Ingress> {
    let spec = plan.spec.as_ref();
    if !spec.ingress.public {
        return None;
    }
    let backend = |service: String, port: i32| IngressBackend {
        service: Some(IngressServiceBackend {
            name: service,
            port: Some(ServiceBackendPort {
                number: Some(port),
                ..ServiceBackendPort::default()
            }),
        }),
        ..IngressBackend::default()
    };
    let route = |path: String, backend: IngressBackend| HTTPIngressPath {
        path: Some(path),
        path_type: "Prefix".into(),
        backend,
    };
    let mut paths = vec![route("/".into(), backend(plan.child.clone(), spec.port))];
    let mut taken = BTreeSet::from(["/".to_string()]);
    let mut functions = around.functions(plan).to_vec();
    functions.sort();
    for function in functions {
        let prefix = ingress_prefix(&function.path);
        if taken.insert(prefix.clone()) {
            let service = naming::function_child(&function.name);
            paths.push(route(prefix, backend(service, FUNCTION_SERVICE_PORT)));
        }
    }
    let host = ingress_host(plan);
    let tls = spec.ingress.tls_secret.as_ref().map(|secret| {
        vec![IngressTLS {
            hosts: host.clone().map(|h| vec![h]),
            secret_name: Some(secret.clone()),
        }]
    });
    let class = spec
        .ingress
        .class_name
        .clone()
        .or_else(|| around.ingress_class.clone());
    Some(Ingress {
        metadata: metadata(plan, plan.child.clone()),
        spec: Some(IngressSpec {
            ingress_class_name: class,
            rules: Some(vec![IngressRule {
                host,
                http: Some(HTTPIngressRuleValue { paths }),
            }]),
            tls,
            ..IngressSpec::default()
        }),
        status: None,
    })
}

/// A PodDisruptionBudget allowing one pod down at a time, when there is more than one.
pub fn pod_disruption_budget(plan: &Plan<'_>) -> Option<PodDisruptionBudget> {
    (plan.spec.replicas > 1).then(|| PodDisruptionBudget {
        metadata: metadata(plan, plan.child.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(plan)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
