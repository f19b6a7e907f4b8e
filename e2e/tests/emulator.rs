//! The emulator against a real container engine (podman with runc, through
//! its Docker API): the three examples pass `winky emulate`, a wrong
//! expectation fails it, and the sandbox holds — a function that eats memory
//! is killed, one that reaches for the network finds none, one that never
//! returns is stopped at its timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use winky_crds::Function;
use winky_e2e::engine::ContainerEngine;
use winky_e2e::{apply_json, workspace_binary, workspace_root};
use winky_emulator::engine::Engine;
use winky_emulator::functions;

fn scratch(name: &str) -> PathBuf {
    // Short: the engine's socket path must fit in a unix socket address.
    let dir = workspace_root()
        .join("target/e2e")
        .join(format!("emu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One engine at a time in this binary: two podman services side by side
/// have been seen to leave a container in `stopped` for good.
static ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn engine_with_images(dir: &Path) -> ContainerEngine {
    let engine = ContainerEngine::start(&dir.join("engine")).unwrap();
    engine
        .load_example_images(&workspace_binary("winky").unwrap())
        .unwrap();
    engine
}

async fn emulate(args: &[&str]) -> (i32, Value, String) {
    let output = tokio::process::Command::new(workspace_binary("winky").unwrap())
        .current_dir(workspace_root())
        .args(["emulate", "--output", "json"])
        .args(args)
        .env_remove("WINKY_ENGINE")
        .env_remove("DOCKER_HOST")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (output.status.code().unwrap_or(-1), report, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_pass_winky_emulate_and_a_wrong_expectation_fails_it() {
    let _one_at_a_time = ENGINE.lock().await;
    let dir = scratch("examples");
    let engine = engine_with_images(&dir);
    let socket = engine.socket().display().to_string();
    for app in ["notes", "shop", "chat"] {
        let path = format!("examples/{app}");
        let (code, report, stderr) = emulate(&["-f", &path, "--engine", &socket]).await;
        assert_eq!(code, 0, "{app}: {report:#}\n{stderr}");
        assert_eq!(report["app"], app);
        assert!(report["revision"].as_str().unwrap().starts_with("r-"));
        assert_eq!(report["passed"], true);
        let checks = report["checks"].as_array().unwrap();
        for kind in ["rule-test", "function", "app-health"] {
            assert!(checks.iter().any(|c| c["kind"] == kind), "{app}: no {kind} check");
        }
        for check in checks {
            for key in ["name", "kind", "passed", "durationMs", "message", "logs"] {
                assert!(check.get(key).is_some(), "{app}: {key} missing in {check}");
            }
        }
        let function = checks.iter().find(|c| c["kind"] == "function").unwrap();
        let health = checks.iter().find(|c| c["kind"] == "app-health").unwrap();
        println!(
            "{app}: {} checks in {} ms; function case {} ms ({}); app health {} ms",
            checks.len(),
            report["durationMs"],
            function["durationMs"],
            function["message"].as_str().unwrap(),
            health["durationMs"]
        );
    }

    // A test case that expects what the function does not print fails the run.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for file in ["app.yaml", "rules.yaml"] {
        std::fs::copy(
            workspace_root().join("examples/shop").join(file),
            broken.join(file),
        )
        .unwrap();
    }
    let function =
        std::fs::read_to_string(workspace_root().join("examples/shop/functions/checkout.yaml")).unwrap();
    assert!(
        function.contains("'\"total\":25'") || function.contains("\"total\\\":25"),
        "{function}"
    );
    let function = function
        .replace("total\\\":25", "total\\\":26")
        .replace("\"total\":25", "\"total\":26");
    std::fs::write(broken.join("checkout.yaml"), function).unwrap();
    let (code, report, _) = emulate(&["-f", broken.to_str().unwrap(), "--engine", &socket]).await;
    assert_eq!(code, 1);
    assert_eq!(report["passed"], false);
    let failed: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .contains("does not contain"),
        "{:#}",
        failed[0]
    );
    assert!(
        failed[0]["logs"].as_str().unwrap().contains("\"total\":25"),
        "the logs show what it printed"
    );

    // Without an engine the container checks fail and say how to get one; nothing passes by skipping.
    // Run outside the checkout: in it, the engine of a running `make up` would be found.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(workspace_binary("winky").unwrap())
        .current_dir(elsewhere.path())
        .args(["emulate", "--output", "json", "-f"])
        .arg(workspace_root().join("examples/notes"))
        .env_remove("WINKY_ENGINE")
        .env_remove("DOCKER_HOST")
        .output()
        .await
        .unwrap();
    let (code, stderr) = (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(code, 1);
    assert!(stderr.contains("hack/podman.sh start"), "{stderr}");
    let container_checks: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "function" || c["kind"] == "app-health")
        .collect();
    assert!(!container_checks.is_empty() && container_checks.iter().all(|c| c["passed"] == false));
}

fn probe_function(mode: &str, memory: &str, timeout_seconds: i32) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "winky.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": format!("probe-{mode}")},
        "spec": {"app": "sandbox", "image": "localhost/winky-probe-fn:latest", "args": [mode],
                 "trigger": {"http": {"path": "/probe"}}, "memory": memory, "timeoutSeconds": timeout_seconds,
                 "tests": [{"name": mode, "input": {"json": {"hello": "world"}},
                            "expect": {"exitCode": 0, "outputContains": "hello"}}]},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_stops_memory_hogs_network_access_and_endless_functions() {
    let _one_at_a_time = ENGINE.lock().await;
    let dir = scratch("sandbox");
    let container_engine = engine_with_images(&dir);
    let engine = Engine::connect(container_engine.socket()).await.unwrap();
    let run = |function: Function| {
        let engine = engine.clone();
        async move {
            let test = function.spec.tests[0].clone();
            let outcome = engine.run(&functions::run_spec(&function, &test)).await.unwrap();
            let (passed, message) = functions::judge(&function, &test, &outcome);
            (outcome, passed, message)
        }
    };

    // The control: a well-behaved function passes.
    let (outcome, passed, message) = run(probe_function("echo", "64Mi", 10)).await;
    assert!(passed, "{message}: {outcome:?}");

    // Memory: 64 MiB limit, the probe keeps allocating 16 MiB chunks.
    let (outcome, passed, message) = run(probe_function("memory", "64Mi", 30)).await;
    assert!(outcome.oom_killed, "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(137));
    assert!(!passed && message.contains("OOMKilled"), "{message}");
    assert!(
        outcome.stdout.contains("holding 16 MiB") && !outcome.stdout.contains("holding 80 MiB"),
        "{}",
        outcome.stdout
    );
    println!(
        "memory: {message}; last line: {:?}",
        outcome.stdout.lines().last()
    );

    // Network: no interface but loopback, nothing reachable.
    let (outcome, passed, message) = run(probe_function("network", "64Mi", 30)).await;
    assert!(!passed, "{message}");
    assert_eq!(outcome.exit_code, Some(3), "{outcome:?}");
    assert!(!outcome.stdout.contains("REACHED"), "{}", outcome.stdout);
    let interfaces = outcome
        .stdout
        .lines()
        .find(|l| l.starts_with("interfaces:"))
        .unwrap();
    assert!(
        interfaces.contains("127.0.0.1")
            && !interfaces.contains("10.")
            && interfaces == "interfaces: [127.0.0.1/8 ::1/128]",
        "{interfaces}"
    );
    println!("network: {}", outcome.stdout.trim().replace('\n', " | "));

    // Time: the probe never returns; its timeout is 2 s.
    // Killed by the deadline (SIGKILL: 137), not before it, and not by the OOM killer.
    let (outcome, passed, message) = run(probe_function("hang", "64Mi", 2)).await;
    assert!(outcome.timed_out && outcome.kill_latency.is_some(), "{outcome:?}");
    assert_eq!(outcome.exit_code, Some(137), "{outcome:?}");
    assert!(!outcome.oom_killed, "{outcome:?}");
    // The 2 s count from the start: the process ran at least that long.
    assert!(
        outcome.ran_for - outcome.start_latency >= Duration::from_secs(2),
        "{outcome:?}"
    );
    assert!(!passed && message.contains("timeout of 2 s"), "{message}");
    println!(
        "timeout: {message}; ended after {:?} (the engine took {:?} to report the kill, {:?} to remove it)",
        outcome.ran_for,
        outcome.kill_latency.unwrap(),
        outcome.duration - outcome.ran_for
    );
}

/// Server-side applies an App, Function or Rule given as JSON.
async fn apply_object(client: &kube::Client, namespace: &str, object: &Value) {
    match object["kind"].as_str().unwrap() {
        "App" => drop(apply_json::<winky_crds::App>(client, namespace, object.clone()).await),
        "Function" => drop(apply_json::<Function>(client, namespace, object.clone()).await),
        "Rule" => drop(apply_json::<winky_crds::Rule>(client, namespace, object.clone()).await),
        kind => panic!("no {kind} in the shop example"),
    }
}

/// The shop example's objects, moved into `namespace`.
fn shop_objects(namespace: &str) -> Vec<serde_json::Value> {
    let mut objects = Vec::new();
    for file in ["app.yaml", "rules.yaml", "functions/checkout.yaml"] {
        let text = std::fs::read_to_string(workspace_root().join("examples/shop").join(file)).unwrap();
        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
        for mut document in documents {
            if document["kind"] == "Namespace" {
                continue;
            }
            document["metadata"]["namespace"] = json!(namespace);
            if document["kind"] == "App" {
                // The shared control plane has no PromotionPolicy "default"; promotion is not under test.
                document["spec"].as_object_mut().unwrap().remove("policy");
            }
            objects.push(document);
        }
    }
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_runs_the_emulator_for_each_revision_and_reports_it_in_status() {
    use kube::api::Api;
    use winky_crds::App;
    use winky_e2e::{ControlPlane, InProcessOperator, eventually};

    let _one_at_a_time = ENGINE.lock().await;
    let dir = scratch("operator");
    let container_engine = engine_with_images(&dir);
    let cp = ControlPlane::shared();
    let client = cp.client().await.unwrap();
    let ns = cp.namespace(&client, "emulate").await.unwrap();
    let operator = InProcessOperator::start_with_engine(
        client.clone(),
        ns.name(),
        "emulate-operator",
        Some(container_engine.socket().to_path_buf()),
    );
    let started = std::time::Instant::now();
    for object in shop_objects(ns.name()) {
        apply_object(&client, ns.name(), &object).await;
    }
    let apps: Api<App> = Api::namespaced(client.clone(), ns.name());
    let app = eventually(
        "status.emulator of the revision",
        Duration::from_secs(60),
        || async {
            let app = apps.get("shop").await.ok()?;
            let status = app.status.as_ref()?;
            let (emulator, revision) = (status.emulator.as_ref()?, status.revision.as_ref()?);
            // The App and its Function arrive by separate watches: a first run
            // may check the App before its Function is cached; the Function's
            // arrival runs it again, with the Function.
            (emulator.revision == revision.id && emulator.by_kind.contains_key("function")).then_some(app)
        },
    )
    .await;
    println!(
        "apply → emulator result in the App's status: {} ms",
        started.elapsed().as_millis()
    );
    let emulator = app.status.unwrap().emulator.unwrap();
    assert!(emulator.passed, "{emulator:?}");
    assert_eq!(emulator.failed, 0);
    assert_eq!(emulator.by_kind["rule-test"], 20);
    assert_eq!(emulator.by_kind["function"], 1);
    assert_eq!(emulator.by_kind["app-health"], 1);
    let functions: Api<Function> = Api::namespaced(client.clone(), ns.name());
    let checkout = eventually(
        "the Function's emulator result",
        Duration::from_secs(60),
        || async { functions.get("shop-checkout").await.ok()?.status?.emulator },
    )
    .await;
    assert!(
        checkout.passed && checkout.cases_passed == 1 && checkout.cases_failed == 0,
        "{checkout:?}"
    );

    // A new revision whose function case fails: the status says so.
    let mut function = shop_objects(ns.name())
        .into_iter()
        .find(|o| o["kind"] == "Function")
        .unwrap();
    function["spec"]["tests"][0]["expect"]["outputContains"] = json!("\"total\":26");
    let mut app_object = shop_objects(ns.name())
        .into_iter()
        .find(|o| o["kind"] == "App")
        .unwrap();
    app_object["spec"]["replicas"] = json!(3);
    for object in [&function, &app_object] {
        apply_object(&client, ns.name(), object).await;
    }
    let failed = eventually(
        "a failed emulator result for the new revision",
        Duration::from_secs(60),
        || async {
            let status = apps.get("shop").await.ok()?.status?;
            let emulator = status.emulator?;
            (emulator.revision == status.revision?.id && !emulator.passed).then_some(emulator)
        },
    )
    .await;
    assert_eq!(failed.failed, 1, "{failed:?}");
    operator.stop().await.unwrap();
}
