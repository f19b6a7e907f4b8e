//! Every failure visible (issue 13): a child the apiserver refuses to apply
//! becomes `Ready=False` with reason `ApplyFailed` and the apiserver's
//! message, and a Warning Event, on the App, Function and Rule controllers
//! alike; the operator keeps retrying with backoff, and the object recovers
//! on its own once the apiserver accepts the child. And the names the CRDs
//! allow at their limits do give children the apiserver accepts.
//!
//! What refuses the child is what a cluster administrator would use: a
//! ValidatingAdmissionPolicy, bound to the test's namespace only. The CRDs
//! cannot prevent it, so only the operator can report it.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use winky_crds::common::Condition;
use winky_crds::{App, Function, Rule};
use winky_e2e::{ControlPlane, InProcessOperator, TestNamespace, eventually};

const WAIT: Duration = Duration::from_secs(30);
/// Long enough for a retry after a few failures (backoff 1 s, doubling, ±20 %).
const RETRY_WAIT: Duration = Duration::from_secs(90);

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

fn object<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).unwrap()
}

fn app(name: &str, image: &str) -> App {
    object(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "App",
        "metadata": {"name": name},
        "spec": {"image": image, "port": 8080},
    }))
}

/// A ValidatingAdmissionPolicy that refuses, in `namespace` only, the
/// `resource` objects (`group`, `apps` or `""`) for which `refuse` (CEL over
/// `object`) holds, with `message`; named after the namespace. Returns once
/// the apiserver enforces it: a server-side dry run of `probe` is refused.
async fn refuse<K>(
    client: &Client,
    namespace: &str,
    resource: (&str, &str),
    refuse: &str,
    message: &str,
    probe: K,
) where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let (group, plural) = resource;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let policy: ValidatingAdmissionPolicy = object(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": namespace},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [group], "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"], "resources": [plural],
            }]},
            "validations": [{"expression": format!("!({refuse})"), "message": message}],
        },
    }));
    policies.create(&PostParams::default(), &policy).await.unwrap();
    let binding: ValidatingAdmissionPolicyBinding = object(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": namespace},
        "spec": {
            "policyName": namespace,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }));
    bindings.create(&PostParams::default(), &binding).await.unwrap();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the admission policy to be enforced", WAIT, || async {
        match api.create(&dry_run, &probe).await {
            Err(kube::Error::Api(e)) if e.message.contains(message) => Some(()),
            _ => None,
        }
    })
    .await;
}

/// Stops refusing: deletes the binding of [`refuse`] in `namespace`.
async fn stop_refusing(client: &Client, namespace: &str) {
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    bindings
        .delete(namespace, &DeleteParams::default())
        .await
        .unwrap();
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    policies
        .delete(namespace, &DeleteParams::default())
        .await
        .unwrap();
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The Warning Events about the `kind` object `name`, reason `reason`: their
/// notes and how often each was seen.
async fn warnings(client: &Client, ns: &str, kind: &str, name: &str, reason: &str) -> Vec<(String, i32)> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let Ok(list) = events.list(&ListParams::default()).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .map(|e| {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (e.note.unwrap_or_default(), count)
        })
        .collect()
}

/// Waits for `conditions` of the object to say `Ready=False`,
/// `Degraded=True`, both `ApplyFailed` with a message holding every one of
/// `parts`; returns that message.
async fn apply_failed_in_status<F, Fut>(what: &str, parts: &[&str], conditions: F) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<Vec<Condition>>>,
{
    let mut conditions = conditions;
    eventually(what, WAIT, || {
        let read = conditions();
        async move {
            let conditions = read.await?;
            let ready = find(&conditions, "Ready")?;
            let degraded = find(&conditions, "Degraded")?;
            let failed = ready.status == "False"
                && ready.reason == "ApplyFailed"
                && degraded.status == "True"
                && degraded.reason == "ApplyFailed"
                && parts.iter().all(|p| ready.message.contains(p));
            failed.then(|| ready.message.clone())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_deployment_is_in_the_apps_status_and_an_event_and_is_retried() {
    let Env { client, ns, operator } = env("fail-app").await;
    let message = "images from forbidden.example are not allowed here";
    let probe: Deployment = object(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "probe"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "forbidden.example/probe:1"}]},
            },
        },
    }));
    refuse(
        &client,
        ns.name(),
        ("apps", "deployments"),
        "object.spec.template.spec.containers.exists(c, c.image.startsWith('forbidden.example/'))",
        message,
        probe,
    )
    .await;

    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app("refused", "forbidden.example/app:1"))
        .await
        .unwrap();
    let status = apply_failed_in_status(
        "the refused Deployment in the App's status",
        &["applying Deployment refused", message],
        || async {
            let app = apps.get("refused").await.ok()?;
            Some(app.status?.conditions)
        },
    )
    .await;
    assert!(status.ends_with("retrying with backoff"), "{status}");
    let progressing = apps.get("refused").await.unwrap().status.unwrap();
    let progressing = find(&progressing.conditions, "Progressing").unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "ApplyFailed")
    );
    // A Warning Event, counted again on each retry: the operator keeps trying.
    let retried = eventually("the ApplyFailed Event, seen at least twice", WAIT, || async {
        let events = warnings(&client, ns.name(), "App", "refused", "ApplyFailed").await;
        events
            .into_iter()
            .find(|(note, count)| note.contains(message) && *count >= 2)
    })
    .await;
    assert!(retried.0.contains("applying Deployment refused"), "{}", retried.0);
    assert!(
        operator.metric(r#"winky_reconcile_errors_total{controller="app",category="apply"}"#) >= 2.0,
        "the failures are counted as errors too"
    );

    // Once the apiserver accepts it, a retry (no change to the App) applies it.
    stop_refusing(&client, ns.name()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    eventually("the Deployment applied by a retry", RETRY_WAIT, || async {
        deployments.get_opt("refused").await.ok()?
    })
    .await;
    eventually("the App's status to leave ApplyFailed", WAIT, || async {
        let status = apps.get("refused").await.ok()?.status?;
        let degraded = find(&status.conditions, "Degraded")?;
        let ready = find(&status.conditions, "Ready")?;
        (degraded.status == "False" && ready.reason != "ApplyFailed").then_some(())
    })
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_network_policy_is_in_the_functions_status_and_an_event() {
    let Env { client, ns, operator } = env("fail-fn").await;
    let message = "this NetworkPolicy is refused by the cluster's policy";
    let probe: NetworkPolicy = object(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "refused-probe"},
        "spec": {"podSelector": {}},
    }));
    refuse(
        &client,
        ns.name(),
        ("networking.k8s.io", "networkpolicies"),
        "object.metadata.name.startsWith('refused')",
        message,
        probe,
    )
    .await;

    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app("notes", "registry.example/notes:1"))
        .await
        .unwrap();
    let functions: Api<Function> = Api::namespaced(client.clone(), ns.name());
    let function: Function = object(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "refused"},
        "spec": {"app": "notes", "image": "registry.example/fn:1", "trigger": {"schedule": {"cron": "0 * * * *"}}},
    }));
    functions.create(&PostParams::default(), &function).await.unwrap();
    apply_failed_in_status(
        "the refused NetworkPolicy in the Function's status",
        &["applying NetworkPolicy refused-fn", message],
        || async {
            let function = functions.get("refused").await.ok()?;
            Some(function.status?.conditions)
        },
    )
    .await;
    let events = eventually("the Function's ApplyFailed Event", WAIT, || async {
        let events = warnings(&client, ns.name(), "Function", "refused", "ApplyFailed").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert!(events[0].0.contains(message), "{events:?}");
    // Nothing runs without its NetworkPolicy: the workload was never applied.
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    assert!(cron_jobs.get_opt("refused-fn").await.unwrap().is_none());

    stop_refusing(&client, ns.name()).await;
    eventually("the Function to be Ready after a retry", RETRY_WAIT, || async {
        let status = functions.get("refused").await.ok()?.status?;
        let ready = find(&status.conditions, "Ready")?;
        (ready.status == "True" && ready.reason == "Scheduled").then_some(())
    })
    .await;
    assert!(cron_jobs.get_opt("refused-fn").await.unwrap().is_some());
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rules_json_is_in_the_rules_status_and_an_event() {
    let Env { client, ns, operator } = env("fail-rule").await;
    let message = "these rules may not be published here";
    let probe: ConfigMap = object(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "probe"},
        "data": {"rules.json": "{\"rules\": [{\"name\": \"refused-by-policy\"}]}"},
    }));
    refuse(
        &client,
        ns.name(),
        ("", "configmaps"),
        "has(object.data) && 'rules.json' in object.data && object.data['rules.json'].contains('refused-by-policy')",
        message,
        probe,
    )
    .await;

    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app("notes", "registry.example/notes:1"))
        .await
        .unwrap();
    let rules: Api<Rule> = Api::namespaced(client.clone(), ns.name());
    let rule: Rule = object(serde_json::json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "Rule",
        "metadata": {"name": "refused-by-policy"},
        "spec": {
            "app": "notes",
            "rules": [{"match": "/notes/{id}", "allow": {"read": "request.auth != null"}}],
            "tests": [{"name": "anonymous does not read", "request": {"method": "get", "path": "/notes/1"}, "expect": "deny"}],
        },
    }));
    rules.create(&PostParams::default(), &rule).await.unwrap();
    apply_failed_in_status(
        "the refused ConfigMap in the Rule's status",
        &["applying ConfigMap notes-runtime", message],
        || async {
            let rule = rules.get("refused-by-policy").await.ok()?;
            Some(rule.status?.conditions)
        },
    )
    .await;
    let status = rules.get("refused-by-policy").await.unwrap().status.unwrap();
    assert_eq!(status.tests.map(|t| t.passed), Some(1), "the tests still ran");
    assert!(status.compiled_hash.is_none(), "nothing was published");
    let events = eventually("the Rule's ApplyFailed Event", WAIT, || async {
        let events = warnings(&client, ns.name(), "Rule", "refused-by-policy", "ApplyFailed").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert!(events[0].0.contains(message), "{events:?}");

    stop_refusing(&client, ns.name()).await;
    eventually("the Rule to be published after a retry", RETRY_WAIT, || async {
        let status = rules.get("refused-by-policy").await.ok()?.status?;
        let ready = find(&status.conditions, "Ready")?;
        (ready.status == "True" && ready.reason == "Published").then_some(())
    })
    .await;
    operator.stop().await.unwrap();
}

/// The longest names the CRDs accept give children the apiserver accepts,
/// and one character more is refused by the CRDs and would be by the
/// children: the limits are the children's, not tighter and not looser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_at_the_crds_limits_give_children_the_apiserver_accepts() {
    let Env { client, ns, operator } = env("fail-limits").await;
    let app_name = format!("a{}", "p".repeat(62));
    let http_name = format!("h{}", "t".repeat(59));
    let cron_name = format!("c{}", "r".repeat(48));
    assert_eq!((app_name.len(), http_name.len(), cron_name.len()), (63, 60, 49));

    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    apps.create(&PostParams::default(), &app(&app_name, "registry.example/long:1"))
        .await
        .unwrap();
    let functions: Api<Function> = Api::namespaced(client.clone(), ns.name());
    for (name, trigger) in [
        (&http_name, serde_json::json!({"http": {"path": "/h"}})),
        (&cron_name, serde_json::json!({"schedule": {"cron": "0 * * * *"}})),
    ] {
        let function: Function = object(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": name},
            "spec": {"app": app_name, "image": "registry.example/fn:1", "trigger": trigger},
        }));
        functions.create(&PostParams::default(), &function).await.unwrap();
    }

    let services: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns.name());
    eventually("every child at the limits", WAIT, || async {
        services.get_opt(&app_name).await.ok()??;
        deployments.get_opt(&app_name).await.ok()??;
        services.get_opt(&format!("{http_name}-fn")).await.ok()??;
        deployments.get_opt(&format!("{http_name}-fn")).await.ok()??;
        policies.get_opt(&format!("{http_name}-fn")).await.ok()??;
        cron_jobs.get_opt(&format!("{cron_name}-fn")).await.ok()??;
        Some(())
    })
    .await;
    for name in [&http_name, &cron_name] {
        let function = functions.get(name).await.unwrap();
        let degraded = function
            .status
            .as_ref()
            .and_then(|s| find(&s.conditions, "Degraded"))
            .map(|c| c.status.clone());
        assert_ne!(degraded.as_deref(), Some("True"), "{name}: {:?}", function.status);
    }

    // One character more would not do, and the CRDs refuse it: their limits
    // are exactly the children's.
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let err = apps
        .create(&dry_run, &app(&format!("{app_name}x"), "registry.example/long:1"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("an App's name may have at most 63 characters"),
        "{err}"
    );
    for (name, trigger, limit) in [
        (
            &http_name,
            serde_json::json!({"http": {"path": "/h"}}),
            "may have at most 60 characters",
        ),
        (
            &cron_name,
            serde_json::json!({"schedule": {"cron": "0 * * * *"}}),
            "may have at most 49 characters",
        ),
    ] {
        let function: Function = object(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": format!("{name}x")},
            "spec": {"app": app_name, "image": "registry.example/fn:1", "trigger": trigger},
        }));
        let err = functions.create(&dry_run, &function).await.unwrap_err();
        assert!(err.to_string().contains(limit), "{err}");
    }
    let mut cron_job = cron_jobs.get(&format!("{cron_name}-fn")).await.unwrap();
    cron_job.metadata = kube::api::ObjectMeta {
        name: Some(format!("{cron_name}x-fn")),
        ..Default::default()
    };
    let err = cron_jobs.create(&dry_run, &cron_job).await.unwrap_err();
    assert!(
        err.to_string().contains("must be no more than 52 characters"),
        "{err}"
    );
    let mut service = services.get(&format!("{http_name}-fn")).await.unwrap();
    service.metadata = kube::api::ObjectMeta {
        name: Some(format!("{http_name}x-fn")),
        ..Default::default()
    };
    service.spec.as_mut().unwrap().cluster_ip = None;
    service.spec.as_mut().unwrap().cluster_ips = None;
    let err = services.create(&dry_run, &service).await.unwrap_err();
    assert!(
        err.to_string().contains("must be no more than 63 characters"),
        "{err}"
    );
    assert_eq!(
        operator.metric(r#"winky_reconcile_errors_total{controller="function",category="apply"}"#),
        0.0
    );
    operator.stop().await.unwrap();
}
