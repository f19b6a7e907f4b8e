//! The local control plane itself: it boots, serves the Winky API and accepts
//! the committed manifests and examples.

use winky_e2e::ControlPlane;

#[test]
fn serves_every_winky_kind_in_the_winky_category() {
    let cp = ControlPlane::shared();
    let out = cp
        .kubectl(&["api-resources", "--api-group=winky.dev", "-o", "name"])
        .unwrap();
    let mut kinds: Vec<&str> = out.lines().collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "apps.winky.dev",
            "functions.winky.dev",
            "gitsources.winky.dev",
            "promotionpolicies.winky.dev",
            "promotions.winky.dev",
            "rules.winky.dev"
        ]
    );
    let listed = cp
        .kubectl(&["get", "winky", "-A"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!listed.contains("error"), "{listed}");
    // `kubectl get winky` lists exactly these kinds: the category holds all six.
    let in_category = cp
        .kubectl(&["api-resources", "--categories=winky", "-o", "name"])
        .unwrap();
    let mut in_category: Vec<&str> = in_category.lines().collect();
    in_category.sort();
    assert_eq!(in_category, kinds);
}

#[test]
fn kubectl_explain_teaches_the_fields() {
    let cp = ControlPlane::shared();
    // The apiserver publishes a new CRD's OpenAPI a moment after the CRD is
    // established: kubectl explain may not know the kind at first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        match cp.kubectl(&["explain", "app.spec.replicas"]) {
            Ok(out) => break out,
            Err(e)
                if std::time::Instant::now() < deadline
                    && format!("{e:#}").contains("couldn't find resource") =>
            {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            Err(e) => panic!("{e:#}"),
        }
    };
    assert!(out.contains("PodDisruptionBudget"), "{out}");
    let out = cp
        .kubectl(&["explain", "promotionpolicy.spec.agents.branchPattern"])
        .unwrap();
    assert!(out.contains("winky/"), "{out}");
}

#[test]
fn server_side_dry_run_accepts_the_crds() {
    let cp = ControlPlane::shared();
    let dir = winky_e2e::workspace_root().join("crds/manifests");
    let out = cp
        .kubectl(&[
            "apply",
            "--dry-run=server",
            "--server-side",
            "-f",
            &dir.display().to_string(),
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(out.lines().count(), 6, "{out}");
}
