//! The pure part of the Rule controller — evaluation, status, the published
//! document — and the one apply that publishes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use winky_crds::Rule;
use winky_crds::rule::{RuleStatus, RuleTestSummary};
use winky_policies::CompileError;
use winky_policies::rules::RuleSet;

use super::RULES_MANAGER;
use crate::conditions::{self, ConditionSpec, DEGRADED, PROGRESSING, READY};
use crate::driver::ChildFailure;
use crate::error::{Error, Result};
use crate::naming::runtime_config_map;

/// Key of the published rules in the runtime ConfigMap.
pub const RULES_KEY: &str = "rules.json";

/// What compiling and testing a Rule gave.
#[derive(Debug)]
pub enum Evaluation {
    /// Compile errors, each naming the rule, operation, line and column.
    Invalid(Vec<CompileError>),
    /// Compiled; the tests' results.
    Compiled(RuleTestSummary),
}

impl Evaluation {
    /// Whether the Rule may be published: it compiles and every test passes.
    pub fn publishable(&self) -> bool {
        matches!(self, Evaluation::Compiled(summary) if summary.failed == 0)
    }
}

/// Whether each Rule may be published, remembered by uid and generation.
///
/// Publishing recomputes the whole document from every Rule of the App, and
/// a change to the App's ConfigMap reconciles each of them: compiling and
/// testing every sibling each time was quadratic in the Rules of an App.
/// The spec only changes with the generation, so neither does the verdict.
#[derive(Debug, Default)]
pub struct Verdicts(Mutex<HashMap<String, (Option<i64>, bool)>>);

impl Verdicts {
    /// Whether `rule` compiles and passes its tests, evaluating it only when
    /// its uid or generation is new.
    pub fn publishable(&self, rule: &Rule) -> bool {
        let Some(uid) = rule.uid() else {
            return evaluate(rule).publishable();
        };
        let generation = rule.metadata.generation;
        if let Some(&(seen, verdict)) = self.lock().get(&uid)
            && seen == generation
        {
            return verdict;
        }
        let verdict = evaluate(rule).publishable();
        self.lock().insert(uid, (generation, verdict));
        verdict
    }

    /// Remembers the evaluation a reconcile of `rule` just made.
    pub fn record(&self, rule: &Rule, evaluation: &Evaluation) {
        if let Some(uid) = rule.uid() {
            self.lock()
                .insert(uid, (rule.metadata.generation, evaluation.publishable()));
        }
    }

    /// Forgets a Rule that is gone.
    pub fn forget(&self, rule: &Rule) {
        if let Some(uid) = rule.uid() {
            self.forget_uid(&uid);
        }
    }

    /// Forgets the Rule with `uid`.
    pub fn forget_uid(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// Keeps only the verdicts of Rules for which `exists` holds: a Rule
    /// deleted without a cleanup of this controller leaves no entry behind.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.lock().retain(|uid, _| exists(uid));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<i64>, bool)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Compiles `rule` and runs its tests.
pub fn evaluate(rule: &Rule) -> Evaluation {
    match RuleSet::compile(&rule.spec) {
        Err(errors) => Evaluation::Invalid(errors),
        Ok(set) => Evaluation::Compiled(set.run_tests(&rule.spec.tests)),
    }
}

/// Reference of the runtime ConfigMap of `app` in `namespace`.
pub fn config_map_ref(namespace: &str, app: &str) -> ObjectRef<ConfigMap> {
    ObjectRef::new(&runtime_config_map(app)).within(namespace)
}

/// sha256 of the part of a Rule that gets published.
pub fn hash(rule: &Rule) -> String {
    let bytes = serde_json::to_vec(&rule.spec.rules).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The published document: every publishable Rule, by name.
pub fn document(rules: &[Arc<Rule>], verdicts: &Verdicts) -> String {
    let published: Vec<_> = rules
        .iter()
        .filter(|r| verdicts.publishable(r))
        .map(|r| json!({"name": r.name_any(), "hash": hash(r), "rules": r.spec.rules}))
        .collect();
    serde_json::to_string_pretty(&json!({ "rules": published })).unwrap_or_default()
}

/// Whether the cached ConfigMap lacks `document` under [`RULES_KEY`]: only
/// then is it applied (an unchanged apply is a request for nothing).
pub fn needs_publishing(cached: &ConfigMap, document: &str) -> bool {
    cached
        .data
        .as_ref()
        .and_then(|data| data.get(RULES_KEY))
        .is_none_or(|published| published != document)
}

/// Applies `rules.json` of the App's runtime ConfigMap.
pub async fn apply_rules(client: &Client, namespace: &str, app: &str, document: String) -> Result<()> {
    let name = runtime_config_map(app);
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {RULES_KEY: document},
    });
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(RULES_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "ConfigMap".into(),
        name,
        source,
    })?;
    Ok(())
}

/// The conditions for `evaluation`, given whether the rules were published.
pub fn condition_specs(rule: &Rule, evaluation: &Evaluation, published: bool) -> Vec<ConditionSpec> {
    match evaluation {
        Evaluation::Invalid(errors) => {
            let mut message: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
            if errors.len() > 5 {
                message.push(format!("and {} more", errors.len() - 5));
            }
            let message = message.join("; ");
            vec![
                ConditionSpec::new(READY, false, "CompileError", message.clone()),
                ConditionSpec::new(DEGRADED, true, "CompileError", message),
            ]
        }
        Evaluation::Compiled(summary) if summary.failed > 0 => {
            let failed: Vec<&str> = summary
                .results
                .iter()
                .filter(|r| !r.passed)
                .map(|r| r.name.as_str())
                .collect();
            let message = format!(
                "{} of {} tests failed: {}",
                summary.failed,
                summary.failed + summary.passed,
                failed.join(", ")
            );
            vec![
                ConditionSpec::new(READY, false, "TestsFailed", message.clone()),
                ConditionSpec::new(DEGRADED, true, "TestsFailed", message),
            ]
        }
        Evaluation::Compiled(summary) if !published => {
            let message = format!(
                "{} tests passed; waiting for App {:?} to have its runtime ConfigMap",
                summary.passed, rule.spec.app
            );
            vec![
                ConditionSpec::new(READY, false, "AppNotFound", message),
                ConditionSpec::new(DEGRADED, false, "AsExpected", ""),
            ]
        }
        Evaluation::Compiled(summary) => vec![
            ConditionSpec::new(
                READY,
                true,
                "Published",
                format!(
                    "{} tests passed; published to {}",
                    summary.passed,
                    runtime_config_map(&rule.spec.app)
                ),
            ),
            ConditionSpec::new(DEGRADED, false, "AsExpected", ""),
        ],
    }
}

/// The whole status.
pub fn desired_status(rule: &Rule, evaluation: &Evaluation, published: bool, now: Timestamp) -> RuleStatus {
    let old = rule.status.clone().unwrap_or_default();
    let generation = rule.metadata.generation;
    let specs = condition_specs(rule, evaluation, published);
    RuleStatus {
        observed_generation: generation,
        conditions: conditions::merge(&old.conditions, &specs, generation, now),
        tests: match evaluation {
            Evaluation::Compiled(summary) => Some(summary.clone()),
            Evaluation::Invalid(_) => None,
        },
        compiled_hash: (evaluation.publishable() && published).then(|| hash(rule)),
    }
}

/// The status while the apiserver refuses the ConfigMap the Rule is
/// published into (or unpublished from): `Ready=False` and `Degraded=True`
/// with the failure; the tests' results of `evaluation` when there is one,
/// else as they were; `compiledHash` as it was, as nothing new was published.
pub fn failed_status(
    rule: &Rule,
    evaluation: Option<&Evaluation>,
    failure: &ChildFailure,
    now: Timestamp,
) -> RuleStatus {
    let old = rule.status.clone().unwrap_or_default();
    let generation = rule.metadata.generation;
    // A Rule has no Progressing condition.
    let specs: Vec<ConditionSpec> = failure
        .conditions()
        .into_iter()
        .filter(|c| c.type_ != PROGRESSING)
        .collect();
    RuleStatus {
        observed_generation: generation,
        conditions: conditions::merge(&old.conditions, &specs, generation, now),
        tests: match evaluation {
            Some(Evaluation::Compiled(summary)) => Some(summary.clone()),
            Some(Evaluation::Invalid(_)) => None,
            None => old.tests.clone(),
        },
        compiled_hash: old.compiled_hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Rule {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const GOOD: &str = "apiVersion: winky.dev/v1alpha1\nkind: Rule\nmetadata: {name: notes, namespace: n, generation: 2}\nspec:\n  app: notes\n  rules:\n    - match: /notes/{id}\n      allow: {read: \"request.auth != null\"}\n  tests:\n    - {name: signed in reads, request: {auth: {uid: a}, method: get, path: /notes/1}, expect: allow}\n    - {name: anonymous does not, request: {method: get, path: /notes/1}, expect: deny}\n";

    #[test]
    fn a_passing_rule_is_published_with_its_hash() {
        let r = rule(GOOD);
        let evaluation = evaluate(&r);
        assert!(evaluation.publishable());
        let status = desired_status(&r, &evaluation, true, Timestamp::UNIX_EPOCH);
        assert_eq!(status.tests.as_ref().unwrap().passed, 2);
        assert_eq!(status.compiled_hash.as_deref(), Some(hash(&r).as_str()));
        let ready = conditions::find(&status.conditions, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Published")
        );
        let doc: serde_json::Value =
            serde_json::from_str(&document(&[Arc::new(r)], &Verdicts::default())).unwrap();
        assert_eq!(doc["rules"][0]["name"], "notes");
        assert_eq!(doc["rules"][0]["rules"][0]["match"], "/notes/{id}");
    }

    #[test]
    fn a_compile_error_is_degraded_with_its_position_and_not_published() {
        let r = rule(&GOOD.replace("request.auth != null", "request.auth != null &&"));
        let evaluation = evaluate(&r);
        assert!(!evaluation.publishable());
        let status = desired_status(&r, &evaluation, true, Timestamp::UNIX_EPOCH);
        let degraded = conditions::find(&status.conditions, DEGRADED).unwrap();
        assert_eq!(degraded.reason, "CompileError");
        assert!(
            degraded
                .message
                .contains("rules[0] (/notes/{id}) allow.read: line 1, column"),
            "{}",
            degraded.message
        );
        assert!(status.compiled_hash.is_none());
        assert_eq!(
            document(&[Arc::new(r)], &Verdicts::default()),
            "{\n  \"rules\": []\n}"
        );
    }

    #[test]
    fn a_verdict_is_kept_for_its_generation_and_renewed_with_the_next() {
        let verdicts = Verdicts::default();
        let mut good = rule(GOOD);
        good.metadata.uid = Some("u1".into());
        assert!(verdicts.publishable(&good));
        // The same uid and generation with a broken spec (which the apiserver
        // never serves): the remembered verdict answers, nothing is compiled.
        let mut same_generation = rule(&GOOD.replace("request.auth != null", "request.auth != null &&"));
        same_generation.metadata.uid = Some("u1".into());
        assert!(verdicts.publishable(&same_generation));
        // The next generation is evaluated afresh.
        same_generation.metadata.generation = Some(3);
        assert!(!verdicts.publishable(&same_generation));
        // A reconcile's own evaluation replaces the verdict; a deleted Rule is forgotten.
        verdicts.record(
            &good,
            &evaluate(&rule(&GOOD.replace("expect: deny", "expect: allow"))),
        );
        assert!(!verdicts.publishable(&good), "the recorded failing verdict");
        verdicts.record(&good, &evaluate(&good));
        assert!(verdicts.publishable(&good));
        verdicts.forget(&good);
        assert!(verdicts.lock().is_empty());
    }

    #[test]
    fn rules_json_is_applied_only_when_it_differs() {
        let doc = document(&[Arc::new(rule(GOOD))], &Verdicts::default());
        let mut cm = ConfigMap::default();
        assert!(needs_publishing(&cm, &doc), "no data");
        cm.data = Some([("runtime.json".to_string(), "{}".to_string())].into());
        assert!(needs_publishing(&cm, &doc), "no rules.json");
        cm.data.as_mut().unwrap().insert(RULES_KEY.into(), doc.clone());
        assert!(!needs_publishing(&cm, &doc), "the same document");
        assert!(needs_publishing(&cm, "{\n  \"rules\": []\n}"), "another document");
    }

    #[test]
    fn failing_tests_are_named() {
        let r = rule(&GOOD.replace("expect: deny", "expect: allow"));
        let status = desired_status(&r, &evaluate(&r), true, Timestamp::UNIX_EPOCH);
        let degraded = conditions::find(&status.conditions, DEGRADED).unwrap();
        assert_eq!(degraded.message, "1 of 2 tests failed: anonymous does not");
        assert_eq!(status.tests.unwrap().failed, 1);
    }

    #[test]
    fn a_refused_config_map_is_in_status_and_keeps_what_was_published() {
        let mut r = rule(GOOD);
        let evaluation = evaluate(&r);
        r.status = Some(desired_status(&r, &evaluation, true, Timestamp::UNIX_EPOCH));
        let failure = ChildFailure {
            reason: crate::driver::APPLY_FAILED,
            message: "applying ConfigMap notes-runtime: denied (422); retrying with backoff".into(),
        };
        let status = failed_status(&r, Some(&evaluation), &failure, Timestamp::UNIX_EPOCH);
        let ready = conditions::find(&status.conditions, READY).unwrap();
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            ("False", "ApplyFailed", failure.message.as_str())
        );
        let degraded = conditions::find(&status.conditions, DEGRADED).unwrap();
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "ApplyFailed")
        );
        assert!(conditions::find(&status.conditions, PROGRESSING).is_none());
        assert_eq!(status.compiled_hash.as_deref(), Some(hash(&r).as_str()));
        assert_eq!(status.tests.as_ref().unwrap().passed, 2);
        // Without an evaluation (a Rule being deleted), the tests stay as they were.
        let status = failed_status(&r, None, &failure, Timestamp::UNIX_EPOCH);
        assert_eq!(status.tests.unwrap().passed, 2);
    }

    #[test]
    fn without_the_apps_config_map_it_waits() {
        let r = rule(GOOD);
        let status = desired_status(&r, &evaluate(&r), false, Timestamp::UNIX_EPOCH);
        let ready = conditions::find(&status.conditions, READY).unwrap();
        assert_eq!(ready.reason, "AppNotFound");
    }
}
