//! The real apiserver rejects invalid resources with the CEL or schema
//! message, and accepts the committed manifests and examples.

use std::io::Write;
use std::process::Stdio;

use winky_e2e::{ControlPlane, workspace_root};

/// `kubectl apply [-n <ns>] -f -` of `yaml`; the error text when rejected.
fn apply(cp: &ControlPlane, ns: Option<&str>, yaml: &str, dry_run: bool) -> Result<String, String> {
    let mut args = vec!["apply", "-f", "-"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    if dry_run {
        args.push("--dry-run=server");
    }
    let mut child = cp
        .kubectl_command(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn invalid_resources_are_rejected_with_a_clear_message() {
    let cp = ControlPlane::shared();
    let cases = [
        (
            "app-env-and-secret.yaml",
            "a name cannot be both in env and in secrets",
        ),
        (
            "app-secret-two-sources.yaml",
            "set exactly one of vault or secretKeyRef",
        ),
        ("app-bad-cidr.yaml", "cidr must be an IP range"),
        (
            "function-too-much-memory.yaml",
            "memory must be a quantity between 64Mi and 4Gi",
        ),
        (
            "function-two-triggers.yaml",
            "set exactly one of trigger.http, trigger.schedule or trigger.document",
        ),
        ("policy-unanchored-branch.yaml", "branchPattern must be anchored"),
        ("policy-duplicate-stage.yaml", "Duplicate value"),
        ("gitsource-agent-branch.yaml", "never an agent's winky/ branch"),
        // Names whose children or labels cannot exist (issue 13): 70
        // characters, a dot; a Function's <name>-fn past a Service's 63, a
        // CronJob's 52.
        (
            "app-name-too-long.yaml",
            "an App's name may have at most 63 characters",
        ),
        (
            "app-name-dotted.yaml",
            "an App's name must be lowercase letters, digits and '-', start with a letter and end with a letter or digit (no dots)",
        ),
        (
            "function-name-too-long.yaml",
            "a Function's name may have at most 60 characters: its Deployment, Service and NetworkPolicy are named <name>-fn",
        ),
        (
            "function-scheduled-name-too-long.yaml",
            "a scheduled Function's name may have at most 49 characters: its CronJob is named <name>-fn",
        ),
        // What the runtime sets (a duplicate made the Deployment apply fail with a 500).
        (
            "app-env-port.yaml",
            "env may not set PORT or WINKY_* variables: the runtime sets them",
        ),
        (
            "app-secret-winky.yaml",
            "secrets may not be named PORT or WINKY_*",
        ),
        (
            "function-env-winky.yaml",
            "env may not set PORT or WINKY_* variables: the runtime sets them",
        ),
    ];
    let dir = workspace_root().join("e2e/tests/invalid");
    let files = yaml_files(&["e2e/tests/invalid"]);
    assert_eq!(
        files.len(),
        cases.len(),
        "every invalid example has an expected message"
    );
    for (file, message) in cases {
        let yaml = std::fs::read_to_string(dir.join(file)).unwrap();
        let err = apply(cp, Some("default"), &yaml, false).expect_err(file);
        assert!(err.contains(message), "{file}: expected {message:?} in:\n{err}");
    }
}

#[test]
fn a_promotions_spec_cannot_be_rewritten() {
    let cp = ControlPlane::shared();
    let promotion = |revision: &str| {
        format!(
            "apiVersion: winky.dev/v1alpha1\nkind: Promotion\nmetadata: {{name: notes-preview}}\n\
             spec: {{app: notes, stage: preview, revision: {{id: {revision}}}}}\n"
        )
    };
    apply(cp, Some("default"), &promotion("r-aaaaaaaaaa"), false).unwrap();
    let err = apply(cp, Some("default"), &promotion("r-bbbbbbbbbb"), false).unwrap_err();
    assert!(err.contains("a Promotion's spec is immutable"), "{err}");
}

#[test]
fn the_crds_examples_and_default_policies_pass_a_server_side_dry_run() {
    let cp = ControlPlane::shared();
    let crds = workspace_root().join("crds/manifests").display().to_string();
    cp.kubectl(&["apply", "--server-side", "--dry-run=server", "-f", &crds])
        .unwrap_or_else(|e| panic!("{e:#}"));
    // The examples create their own namespaces, which a dry run does not
    // persist: create them first.
    let dirs = [
        "examples/notes",
        "examples/notes/functions",
        "examples/shop",
        "examples/shop/functions",
        "examples/chat",
        "examples/chat/functions",
        "policies/defaults",
        "policies/defaults/rules",
    ];
    let files = yaml_files(&dirs);
    for dir in dirs {
        assert!(
            files.iter().any(|f| f.parent().is_some_and(|p| p.ends_with(dir))),
            "nothing in {dir}"
        );
    }
    for file in files {
        let yaml = std::fs::read_to_string(&file).unwrap();
        for doc in yaml.split("\n---") {
            if doc.contains("kind: Namespace") {
                apply(cp, None, doc, false).unwrap();
            }
        }
        // Objects without a namespace land in the kubeconfig's: default.
        let out = apply(cp, None, &yaml, true).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(out.contains("(server dry run)"), "{out}");
    }
}

/// The `.yaml` files directly in these directories of the workspace, sorted.
fn yaml_files(dirs: &[&str]) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = dirs
        .iter()
        .flat_map(|dir| std::fs::read_dir(workspace_root().join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}
