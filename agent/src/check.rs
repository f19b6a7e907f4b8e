//! The sandbox checks that run before anything is committed: every Rule's
//! tests with `winky-policies`, and — when a cluster is reachable — a
//! server-side dry run of every manifest, so the apiserver's schema and CEL
//! validation judge them exactly as they will after the merge.

use std::fmt;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;

use crate::generate::Generated;

/// One check and its result.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub message: String,
    pub duration_ms: u64,
}

/// Every check that ran.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Checks {
    pub checks: Vec<Check>,
}

impl Checks {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// A Markdown table for the pull request.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| check | result | details |\n|---|---|---|\n");
        for check in &self.checks {
            let result = if check.passed { "passed" } else { "FAILED" };
            out.push_str(&format!(
                "| {} | {result} | {} |\n",
                check.name,
                check.message.replace('|', "\\|")
            ));
        }
        out
    }
}

impl fmt::Display for Checks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            let mark = if check.passed { "ok  " } else { "FAIL" };
            writeln!(
                f,
                "  {mark} {} ({} ms): {}",
                check.name, check.duration_ms, check.message
            )?;
        }
        Ok(())
    }
}

/// Compiles the Rule and runs its tests.
pub fn rule_tests(generated: &Generated) -> Check {
    // The emulator's rule checks (one per test case), summed up in one row.
    let started = Instant::now();
    let cases = winky_emulator::rules::checks(std::slice::from_ref(&generated.rule));
    let failures: Vec<String> = cases
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.message))
        .collect();
    let mut message = format!(
        "{} passed, {} failed",
        cases.len() - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        message.push_str(&format!(" ({})", failures.join("; ")));
    }
    Check {
        name: format!("rule tests ({})", generated.rule.name_any()),
        passed: failures.is_empty(),
        message,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

pub(crate) const DRY_RUN_MANAGER: &str = "winky-agent-dry-run";

/// Server-side dry run of every object. A namespace that does not exist yet
/// cannot hold a dry-run object, so namespaced objects are then checked in
/// `default`; the message says so.
pub async fn server_dry_run(client: &Client, generated: &Generated) -> Vec<Check> {
    let mut checks = Vec::new();
    let namespace = generated.namespace.name_any();
    let params = PatchParams::apply(DRY_RUN_MANAGER).dry_run().force();
    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let result = namespaces
        .patch(&namespace, &params, &Patch::Apply(&generated.namespace))
        .await;
    checks.push(outcome(
        format!("dry-run Namespace/{namespace}"),
        started,
        result.map(|_| String::new()),
    ));
    let target = match namespaces.get_opt(&namespace).await {
        Ok(Some(_)) => namespace.clone(),
        _ => "default".to_string(),
    };
    let note = if target == namespace {
        String::new()
    } else {
        format!(" (in namespace {target}: {namespace} does not exist yet)")
    };
    checks.push(dry_run(client, &target, &generated.app, &params, &note).await);
    for function in &generated.functions {
        checks.push(dry_run(client, &target, function, &params, &note).await);
    }
    checks.push(dry_run(client, &target, &generated.rule, &params, &note).await);
    checks
}

pub(crate) async fn dry_run<K>(
    client: &Client,
    namespace: &str,
    object: &K,
    params: &PatchParams,
    note: &str,
) -> Check
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + fmt::Debug
        + serde::de::DeserializeOwned
        + Serialize,
{
    let started = Instant::now();
    let mut object = object.clone();
    object.meta_mut().namespace = Some(namespace.to_string());
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let result = api.patch(&name, params, &Patch::Apply(&object)).await;
    outcome(
        format!("dry-run {}/{name}", K::kind(&())),
        started,
        result.map(|_| note.to_string()),
    )
}

fn outcome(name: String, started: Instant, result: Result<String, kube::Error>) -> Check {
    let (passed, message) = match result {
        Ok(note) => (true, format!("accepted by the apiserver{note}")),
        Err(kube::Error::Api(status)) => (false, format!("rejected: {}", status.message)),
        Err(e) => (false, format!("could not ask the apiserver: {e}")),
    };
    Check {
        name,
        passed,
        message,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}
