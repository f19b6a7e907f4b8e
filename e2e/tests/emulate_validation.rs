//! `winky emulate` does not pass what the cluster refuses (issue 13): the
//! built binary on the file that once gave "3 checks, 0 failed" — every
//! object is validated offline against the CRDs' schemas and CEL rules and
//! fails with its field path, before any container is needed; a broken file
//! names its line and the others still run; Rules are tested without an App;
//! with --kubeconfig the apiserver dry-runs what passed offline.

use std::path::Path;

use serde_json::Value;
use winky_e2e::{ControlPlane, workspace_binary};

/// The file of the issue: replicas -3, memory 10Gi, two triggers, a cron
/// that is not one, a match without `/`.
const BAD: &str = "\
apiVersion: winky.dev/v1alpha1
kind: App
metadata: {name: bad}
spec:
  image: registry.local/bad:0.1.0
  port: 8080
  replicas: -3
---
apiVersion: winky.dev/v1alpha1
kind: Function
metadata: {name: bad-fn}
spec:
  app: bad
  image: registry.local/bad-fn:0.1.0
  memory: 10Gi
  trigger:
    http: {path: /x}
    schedule: {cron: every day}
---
apiVersion: winky.dev/v1alpha1
kind: Rule
metadata: {name: bad-rules}
spec:
  app: bad
  rules:
  - match: notes
    allow: {read: 'true'}
";

/// Valid Rules of the same App, with tests.
const RULES: &str = "\
apiVersion: winky.dev/v1alpha1
kind: Rule
metadata: {name: good-rules}
spec:
  app: bad
  rules:
  - match: /notes/{id}
    allow: {read: request.auth != null}
  tests:
  - {name: signed in reads, expect: allow, request: {auth: {uid: a}, method: get, path: /notes/1}}
  - {name: anonymous does not, expect: deny, request: {method: get, path: /notes/1}}
";

/// Broken YAML at line 3.
const BROKEN: &str = "apiVersion: winky.dev/v1alpha1\nkind: Rule\nmetadata: {name: [unclosed\n";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn report(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }
}

/// The built `winky emulate` with `args`, in `dir`, with no engine named.
async fn emulate(dir: &Path, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(workspace_binary("winky").unwrap())
        .current_dir(dir)
        .arg("emulate")
        .args(args)
        .env_remove("WINKY_ENGINE")
        .env_remove("DOCKER_HOST")
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn check<'a>(report: &'a Value, name_suffix: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().unwrap().ends_with(name_suffix))
        .unwrap_or_else(|| panic!("no check named …{name_suffix} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issues_file_fails_validation_with_every_field_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.yaml"), BAD).unwrap();
    std::fs::write(dir.path().join("broken.yaml"), BROKEN).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();

    let run = emulate(dir.path(), &["-f", ".", "--output", "json"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    assert_eq!(report["passed"], false);

    let app = check(&report, "bad.yaml:1 App/bad");
    assert_eq!(
        (app["kind"].as_str(), app["passed"].as_bool()),
        (Some("validation"), Some(false))
    );
    assert!(
        app["message"].as_str().unwrap().contains(
            "spec.replicas: Invalid value: -3: spec.replicas in body should be greater than or equal to 0"
        ),
        "{app}"
    );
    let function = check(&report, "bad.yaml:9 Function/bad-fn");
    assert_eq!(function["passed"], false);
    let message = function["message"].as_str().unwrap();
    for expected in [
        "spec.memory: Invalid value: \"string\": memory must be a quantity between 64Mi and 4Gi",
        "spec.trigger: Invalid value: \"object\": set exactly one of trigger.http, trigger.schedule or trigger.document",
        "spec.trigger.schedule.cron: Invalid value: \"every day\"",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    let rule = check(&report, "bad.yaml:20 Rule/bad-rules");
    assert_eq!(rule["passed"], false);
    assert!(
        rule["message"].as_str().unwrap().starts_with(
            "spec.rules[0].match: Invalid value: \"notes\": spec.rules[0].match in body should match"
        ),
        "{rule}"
    );

    // The broken file names its line; the other files still ran.
    let broken = check(&report, "broken.yaml:1");
    assert_eq!(broken["passed"], false);
    assert!(broken["message"].as_str().unwrap().contains("line 3"), "{broken}");
    let good = check(&report, "rules.yaml:1 Rule/good-rules");
    assert_eq!(good["passed"], true, "{good}");
    // Without a valid App the valid Rules are tested on their own; nothing
    // invalid ran, and nothing needed a container.
    let kinds: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "validation",
            "validation",
            "validation",
            "validation",
            "validation",
            "rule-test",
            "rule-test"
        ],
        "{report:#}"
    );
    assert!(check(&report, "good-rules/signed in reads")["passed"] == true);
    assert!(!run.stderr.contains("no container engine"), "{}", run.stderr);

    // The table for people says the same.
    let run = emulate(dir.path(), &["-f", "."]).await;
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("7 checks, 4 failed"), "{}", run.stdout);
    assert!(
        run.stdout.contains("spec.replicas: Invalid value: -3"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_pass_on_their_own_and_errors_read_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    let run = emulate(dir.path(), &["-f", "rules.yaml", "--output", "json"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    assert_eq!(report["passed"], true);
    assert_eq!(report["app"], "bad");
    assert_eq!(report["checks"].as_array().unwrap().len(), 3, "{report:#}");

    let run = emulate(dir.path(), &["-f", "rules.yaml", "--app", "chat"]).await;
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no App named \"chat\""), "{}", run.stderr);
    assert!(!run.stderr.contains("(found: )"), "{}", run.stderr);

    let run = emulate(dir.path(), &["-f", "missing.yaml"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.matches("No such file or directory").count(),
        1,
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_kubeconfig_the_apiserver_dry_runs_what_passed_offline() {
    let cp = ControlPlane::shared();
    let kubeconfig = cp.kubeconfig().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
    let run = emulate(
        dir.path(),
        &[
            "-f",
            "rules.yaml",
            "--output",
            "json",
            "--kubeconfig",
            &kubeconfig,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    let dry_run = check(&report, "dry-run Rule/good-rules");
    assert_eq!(dry_run["kind"], "dry-run");
    assert_eq!(dry_run["passed"], true, "{dry_run}");

    // A label the offline validation does not judge: the apiserver does.
    let labelled = RULES.replace(
        "metadata: {name: good-rules}",
        "metadata: {name: good-rules, labels: {team: 'not a label value'}}",
    );
    std::fs::write(dir.path().join("rules.yaml"), labelled).unwrap();
    let run = emulate(
        dir.path(),
        &[
            "-f",
            "rules.yaml",
            "--output",
            "json",
            "--kubeconfig",
            &kubeconfig,
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.report();
    assert_eq!(check(&report, "rules.yaml:1 Rule/good-rules")["passed"], true);
    let dry_run = check(&report, "dry-run Rule/good-rules");
    assert_eq!(dry_run["passed"], false, "{dry_run}");
    assert!(
        dry_run["message"].as_str().unwrap().contains("metadata.labels"),
        "{dry_run}"
    );
}
