//! What a new user expects and did not get (issue 13), against the real
//! kube-apiserver and kube-controller-manager: a public App's Ingress routes
//! `/` to it and each HTTP Function's path to the Function, follows the
//! Functions and goes when the App stops being public; a Function whose App
//! is deleted runs nothing and comes back with it; an image with neither tag
//! nor digest is refused by the apiserver, a `document` trigger on a
//! collection the App does not declare by the operator.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use winky_crds::{App, Function};
use winky_e2e::{ControlPlane, InProcessOperator, TestNamespace, apply_json, eventually, gone_or_going};

const WAIT: Duration = Duration::from_secs(30);

async fn env(prefix: &str, ingress_class: Option<&str>) -> (Client, TestNamespace, InProcessOperator) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,winky_operator=info")
        .try_init();
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, prefix).await.unwrap();
    let class = ingress_class.map(str::to_string);
    let operator =
        InProcessOperator::start_with(client.clone(), ns.name(), &format!("{prefix}-operator"), |o| {
            o.settings.ingress_class = class;
        });
    (client, ns, operator)
}

async fn apply_app(client: &Client, ns: &str, spec: serde_json::Value) -> App {
    let mut full = json!({"image": "registry.example/notes:1", "port": 8080, "replicas": 1});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    apply_json(
        client,
        ns,
        json!({"apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "notes"}, "spec": full}),
    )
    .await
}

async fn apply_function(client: &Client, ns: &str, name: &str, trigger: serde_json::Value) -> Function {
    apply_json(
        client,
        ns,
        json!({"apiVersion": "winky.dev/v1alpha1", "kind": "Function", "metadata": {"name": name},
               "spec": {"app": "notes", "image": "registry.example/fn:1", "trigger": trigger,
                        "memory": "128Mi", "timeoutSeconds": 15}}),
    )
    .await
}

/// `(path, service, port)` of each path of the Ingress's rules, with the host.
fn routes(ingress: &Ingress) -> (Option<String>, Vec<(String, String, i32)>) {
    let rules = ingress
        .spec
        .as_ref()
        .and_then(|s| s.rules.clone())
        .unwrap_or_default();
    let host = rules.first().and_then(|r| r.host.clone());
    let paths = rules
        .iter()
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
        .map(|p| {
            let service = p.backend.service.clone().unwrap_or_default();
            let port = service.port.and_then(|p| p.number).unwrap_or_default();
            (p.path.clone().unwrap_or_default(), service.name, port)
        })
        .collect();
    (host, paths)
}

/// `functions` of the App's `runtime.json`.
async fn runtime_functions(config_maps: &Api<ConfigMap>) -> Option<serde_json::Value> {
    let cm = config_maps.get_opt("notes-runtime").await.ok()??;
    let doc: serde_json::Value = serde_json::from_str(cm.data?.get("runtime.json")?).ok()?;
    Some(doc["functions"].clone())
}

fn condition(function: &Function, type_: &str) -> Option<(String, String)> {
    let c = function
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

/// Whether the operator recorded a Warning Event `reason` on the Function `name`.
async fn warned(client: &Client, ns: &str, name: &str, reason: &str) -> Option<()> {
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .ok()?;
    events
        .items
        .iter()
        .any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Function")
        })
        .then_some(())
}

#[tokio::test]
async fn a_public_app_gets_an_ingress_that_follows_its_http_functions() {
    let (client, ns, operator) = env("ingress", Some("winky-test")).await;
    let ns = ns.name();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let network_policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);

    apply_app(
        &client,
        ns,
        json!({"ingress": {"public": true, "host": "{stage}.notes.example.com", "tlsSecret": "notes-tls"}}),
    )
    .await;
    apply_function(&client, ns, "resize", json!({"http": {"path": "/api/resize"}})).await;
    // Neither schedule nor document Functions are routed.
    apply_function(&client, ns, "digest", json!({"schedule": {"cron": "0 7 * * *"}})).await;

    let ingress = eventually("the Ingress with the App's and resize's routes", WAIT, || async {
        let ingress = ingresses.get_opt("notes").await.ok()??;
        (routes(&ingress).1.len() == 2).then_some(ingress)
    })
    .await;
    let (host, paths) = routes(&ingress);
    assert_eq!(host.as_deref(), Some("default.notes.example.com"));
    assert_eq!(
        paths,
        vec![
            ("/".to_string(), "notes".to_string(), 8080),
            ("/api/resize".to_string(), "resize-fn".to_string(), 80),
        ]
    );
    let spec = ingress.spec.as_ref().unwrap();
    assert_eq!(
        spec.ingress_class_name.as_deref(),
        Some("winky-test"),
        "--ingress-class"
    );
    let tls = spec.tls.as_ref().unwrap();
    assert_eq!(tls[0].secret_name.as_deref(), Some("notes-tls"));
    assert_eq!(
        tls[0].hosts.as_deref(),
        Some(&["default.notes.example.com".to_string()][..])
    );
    let owner = &ingress.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("App", "notes"));

    // The App is told where its Functions are; the ingress controller may
    // reach the routed Function.
    eventually("resize's URL in runtime.json", WAIT, || async {
        let functions = runtime_functions(&config_maps).await?;
        (functions
            == json!({"resize": {"path": "/api/resize", "url": format!("http://resize-fn.{ns}.svc:80")}}))
        .then_some(())
    })
    .await;
    eventually("resize's NetworkPolicy admits any source", WAIT, || async {
        let policy = network_policies.get_opt("resize-fn").await.ok()??;
        let ingress = policy.spec?.ingress?;
        (ingress.len() == 1 && ingress[0].from.is_none()).then_some(())
    })
    .await;

    // A Function added: its prefix routed (up to its template).
    apply_function(&client, ns, "items", json!({"http": {"path": "/api/items/{id}"}})).await;
    eventually("items routed", WAIT, || async {
        let ingress = ingresses.get_opt("notes").await.ok()??;
        routes(&ingress)
            .1
            .contains(&("/api/items".to_string(), "items-fn".to_string(), 80))
            .then_some(())
    })
    .await;

    // A Function removed: its route goes, and its URL.
    Api::<Function>::namespaced(client.clone(), ns)
        .delete("resize", &DeleteParams::default())
        .await
        .unwrap();
    eventually("resize's route and URL gone", WAIT, || async {
        let ingress = ingresses.get_opt("notes").await.ok()??;
        let paths: Vec<String> = routes(&ingress).1.into_iter().map(|(p, _, _)| p).collect();
        let functions = runtime_functions(&config_maps).await?;
        let urls: Vec<&String> = functions.as_object()?.keys().collect();
        (paths == ["/", "/api/items"] && urls == ["items"]).then_some(())
    })
    .await;

    // No longer public: the Ingress goes.
    Api::<App>::namespaced(client.clone(), ns)
        .patch(
            "notes",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"ingress": {"public": false}}})),
        )
        .await
        .unwrap();
    eventually("the Ingress deleted", WAIT, || async {
        gone_or_going(&ingresses, "notes").await?.then_some(())
    })
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn a_function_without_its_app_runs_nothing_and_comes_back_with_it() {
    let (client, ns, operator) = env("fn-orphan", None).await;
    let ns = ns.name();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let network_policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let functions: Api<Function> = Api::namespaced(client.clone(), ns);

    apply_app(&client, ns, json!({})).await;
    apply_function(&client, ns, "resize", json!({"http": {"path": "/api/resize"}})).await;
    eventually("resize's children", WAIT, || async {
        deployments.get_opt("resize-fn").await.ok()??;
        services.get_opt("resize-fn").await.ok()??;
        network_policies.get_opt("resize-fn").await.ok()??;
        service_accounts.get_opt("resize-fn").await.ok()??;
        Some(())
    })
    .await;

    Api::<App>::namespaced(client.clone(), ns)
        .delete("notes", &DeleteParams::default())
        .await
        .unwrap();
    eventually("nothing of resize left, and AppNotFound", WAIT, || async {
        let all_gone = gone_or_going(&deployments, "resize-fn").await?
            && gone_or_going(&services, "resize-fn").await?
            && gone_or_going(&network_policies, "resize-fn").await?
            && gone_or_going(&service_accounts, "resize-fn").await?;
        let f = functions.get("resize").await.ok()?;
        let ready = condition(&f, "Ready")?;
        let no_workload = f.status.as_ref()?.workload.is_none();
        (all_gone && no_workload && ready == ("False".to_string(), "AppNotFound".to_string())).then_some(())
    })
    .await;
    eventually("a Warning Event AppNotFound", WAIT, || {
        warned(&client, ns, "resize", "AppNotFound")
    })
    .await;

    // The App is back: so is the Function.
    apply_app(&client, ns, json!({})).await;
    eventually("resize running again", WAIT, || async {
        deployments.get_opt("resize-fn").await.ok()??;
        services.get_opt("resize-fn").await.ok()??;
        network_policies.get_opt("resize-fn").await.ok()??;
        let f = functions.get("resize").await.ok()?;
        let (_, reason) = condition(&f, "Ready")?;
        (reason != "AppNotFound" && f.status?.workload.is_some()).then_some(())
    })
    .await;
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn an_untagged_image_and_an_undeclared_collection_are_refused() {
    let (client, ns, operator) = env("refused", None).await;
    let ns = ns.name();
    let apps: Api<App> = Api::namespaced(client.clone(), ns);
    let functions: Api<Function> = Api::namespaced(client.clone(), ns);
    let dry_run = PatchParams {
        dry_run: true,
        ..PatchParams::apply("e2e").force()
    };

    // The apiserver: neither tag nor digest (a registry port is no tag).
    for image in ["registry.example/notes", "registry.local:5000/notes"] {
        let app = json!({"apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "untagged"},
                         "spec": {"image": image, "port": 8080}});
        let err = apps
            .patch("untagged", &dry_run, &Patch::Apply(&app))
            .await
            .expect_err(image);
        assert!(
            err.to_string()
                .contains("image must name a tag (name:1.2.0) or a digest"),
            "{image}: {err}"
        );
        let function = json!({"apiVersion": "winky.dev/v1alpha1", "kind": "Function", "metadata": {"name": "untagged"},
                              "spec": {"app": "notes", "image": image, "trigger": {"http": {"path": "/x"}}}});
        let err = functions
            .patch("untagged", &dry_run, &Patch::Apply(&function))
            .await
            .expect_err(image);
        assert!(
            err.to_string().contains("image must name a tag"),
            "{image}: {err}"
        );
    }
    let digest = format!("registry.local:5000/notes@sha256:{}", "a".repeat(64));
    for image in ["registry.local:5000/notes:1.2.0", digest.as_str()] {
        let app = json!({"apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "tagged"},
                         "spec": {"image": image, "port": 8080}});
        apps.patch("tagged", &dry_run, &Patch::Apply(&app))
            .await
            .unwrap_or_else(|e| panic!("{image}: {e}"));
    }

    // A certificate is for a host.
    let app = json!({"apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "hostless"},
                     "spec": {"image": "registry.example/notes:1", "port": 8080,
                              "ingress": {"public": true, "tlsSecret": "notes-tls"}}});
    let err = apps
        .patch("hostless", &dry_run, &Patch::Apply(&app))
        .await
        .expect_err("tlsSecret without host");
    assert!(
        err.to_string().contains("ingress.tlsSecret needs ingress.host"),
        "{err}"
    );

    // The operator: a collection the App does not declare.
    apply_app(
        &client,
        ns,
        json!({"runtime": {"collections": [{"name": "notes"}]}}),
    )
    .await;
    apply_function(
        &client,
        ns,
        "audit",
        json!({"document": {"collection": "orders", "events": ["create"]}}),
    )
    .await;
    eventually("CollectionNotFound", WAIT, || async {
        let f = functions.get("audit").await.ok()?;
        (condition(&f, "Ready")? == ("False".to_string(), "CollectionNotFound".to_string())).then_some(())
    })
    .await;
    eventually("a Warning Event CollectionNotFound", WAIT, || {
        warned(&client, ns, "audit", "CollectionNotFound")
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    assert!(deployments.get_opt("audit-fn").await.unwrap().is_none());

    // Declared: the Function runs.
    apply_app(
        &client,
        ns,
        json!({"runtime": {"collections": [{"name": "notes"}, {"name": "orders"}]}}),
    )
    .await;
    eventually("audit's Deployment once orders is declared", WAIT, || async {
        deployments.get_opt("audit-fn").await.ok()?
    })
    .await;
    operator.stop().await.unwrap();
}

/// `winky emulate` refuses what the cluster would: its offline validation
/// (the embedded CRDs and their CEL rules) refuses the same images and
/// paths, with the same messages.
#[test]
fn the_offline_validation_refuses_them_too() {
    let schemas = winky_emulator::validate::schemas();
    let violations = |object: serde_json::Value| {
        let validation = schemas.validate(&object).expect("a winky.dev object");
        assert!(validation.unchecked.is_empty(), "{:?}", validation.unchecked);
        validation
            .violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let app = |image: &str| {
        json!({"apiVersion": "winky.dev/v1alpha1", "kind": "App", "metadata": {"name": "notes"},
               "spec": {"image": image, "port": 8080}})
    };
    for image in ["registry.example/notes", "registry.local:5000/notes"] {
        let found = violations(app(image));
        assert!(
            found.contains("image must name a tag (name:1.2.0) or a digest"),
            "{image}: {found}"
        );
    }
    let digest = format!("registry.local:5000/notes@sha256:{}", "a".repeat(64));
    for image in ["registry.local:5000/notes:1.2.0", digest.as_str()] {
        assert_eq!(violations(app(image)), "", "{image}");
    }
    let function = |path: &str| {
        json!({"apiVersion": "winky.dev/v1alpha1", "kind": "Function", "metadata": {"name": "resize"},
               "spec": {"app": "notes", "image": "registry.example/fn:1", "trigger": {"http": {"path": path}}}})
    };
    for path in ["/", "/{id}", "/api//resize", "/api/../x"] {
        assert!(!violations(function(path)).is_empty(), "{path}");
    }
    assert_eq!(violations(function("/api/items/{id}")), "");
}
