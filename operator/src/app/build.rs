//! The desired children of an App, built purely from a validated [`Plan`].
//! No client here: every builder is unit-tested from YAML fixtures.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use winky_crds::App;
use winky_crds::keys::{
    APP_LABEL, MANAGED_BY_LABEL, NAME_LABEL, OWNER_KIND_LABEL, REVISION_ANNOTATION, STAGE_LABEL,
};

use super::validate::Plan;
use crate::MANAGED_BY;

/// UID and GID the App's container runs as (the "nonroot" user of distroless images).
pub const RUN_AS: i64 = 65532;
/// Default CPU limit when the App sets none.
pub const DEFAULT_CPU: &str = "250m";
/// Default memory limit when the App sets none.
pub const DEFAULT_MEMORY: &str = "256Mi";
/// Where the runtime configuration is mounted in the container.
pub const RUNTIME_DIR: &str = "/etc/winky";
/// Key of the runtime configuration in the ConfigMap.
pub const RUNTIME_KEY: &str = "runtime.json";

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
}

/// Labels on every child of the App in its stage.
pub fn labels(plan: &Plan<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), plan.name.clone()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (APP_LABEL.to_string(), plan.name.clone()),
        (STAGE_LABEL.to_string(), plan.target.stage.clone()),
        (OWNER_KIND_LABEL.to_string(), "App".to_string()),
    ])
}

/// The label selector of the App's pods (immutable once a Deployment exists).
pub fn selector_labels(plan: &Plan<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), plan.name.clone()),
        (STAGE_LABEL.to_string(), plan.target.stage.clone()),
    ])
}

/// Name of the runtime ConfigMap of an App.
pub fn config_map_name(app: &str) -> String {
    format!("{app}-runtime")
}

/// Builds every child.
pub fn children(plan: &Plan<'_>) -> Children {
    Children {
        deployment: deployment(plan),
        service: service(plan),
        service_account: service_account(plan),
        config_map: config_map(plan),
        network_policy: network_policy(plan),
        pod_disruption_budget: pod_disruption_budget(plan),
    }
}

fn metadata(plan: &Plan<'_>, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.target.namespace.clone()),
        labels: Some(labels(plan)),
        owner_references: owner_reference(plan.app).map(|o| vec![o]),
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
    let spec = &plan.app.spec;
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
    env.extend(spec.secrets.iter().filter_map(|s| {
        // Vault references are resolved into a Secret by the Vault integration;
        // validation refuses them while no Vault is configured.
        let r = s.secret_key_ref.as_ref()?;
        Some(EnvVar {
            name: s.name.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        })
    }));

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
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "runtime".into(),
                mount_path: RUNTIME_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };

    let mut pod_labels = labels(plan);
    pod_labels.extend(selector_labels(plan));
    Deployment {
        metadata: metadata(plan, plan.name.clone()),
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
                    service_account_name: Some(plan.name.clone()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "runtime".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: config_map_name(&plan.name),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "tmp".into(),
                            empty_dir: Some(EmptyDirVolumeSource {
                                size_limit: Some(Quantity("64Mi".into())),
                                ..EmptyDirVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// The ClusterIP Service, on the App's port.
pub fn service(plan: &Plan<'_>) -> Service {
    Service {
        metadata: metadata(plan, plan.name.clone()),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(plan)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: plan.app.spec.port,
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
        metadata: metadata(plan, plan.name.clone()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The runtime ConfigMap: what the backend runtime provisions for the App, as
/// JSON under `runtime.json`. Other controllers (rules) own other keys of the
/// same ConfigMap through their own field managers.
pub fn config_map(plan: &Plan<'_>) -> ConfigMap {
    let runtime = plan.app.spec.runtime.clone().unwrap_or_default();
    let document = serde_json::json!({
        "app": plan.name,
        "stage": plan.target.stage,
        "revision": plan.revision,
        "auth": runtime.auth,
        "collections": runtime.collections,
        "storage": runtime.storage,
    });
    ConfigMap {
        metadata: metadata(plan, config_map_name(&plan.name)),
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
    let spec = &plan.app.spec;
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
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_string(),
                    "kube-system".to_string(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(
            ["UDP", "TCP"]
                .into_iter()
                .map(|protocol| NetworkPolicyPort {
                    port: Some(IntOrString::Int(53)),
                    protocol: Some(protocol.into()),
                    ..NetworkPolicyPort::default()
                })
                .collect(),
        ),
    };
    let mut egress = vec![dns];
    egress.extend(spec.egress.iter().map(|rule| NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: rule.cidr.clone(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: (!rule.ports.is_empty()).then(|| {
            rule.ports
                .iter()
                .map(|p| NetworkPolicyPort {
                    port: Some(IntOrString::Int(*p)),
                    protocol: Some("TCP".into()),
                    ..NetworkPolicyPort::default()
                })
                .collect()
        }),
    }));
    NetworkPolicy {
        metadata: metadata(plan, plan.name.clone()),
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

/// A PodDisruptionBudget allowing one pod down at a time, when there is more than one.
pub fn pod_disruption_budget(plan: &Plan<'_>) -> Option<PodDisruptionBudget> {
    (plan.app.spec.replicas > 1).then(|| PodDisruptionBudget {
        metadata: metadata(plan, plan.name.clone()),
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
