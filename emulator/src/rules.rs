//! Rule tests as emulator checks: one check per test case, and one failed
//! check for a Rule that does not compile.

use std::time::Instant;

use winky_crds::Rule;
use winky_policies::rules::RuleSet;

use crate::report::{Check, CheckKind};

pub fn checks(rules: &[Rule]) -> Vec<Check> {
    let mut checks = Vec::new();
    for rule in rules {
        let name = rule.metadata.name.clone().unwrap_or_default();
        let started = Instant::now();
        match RuleSet::compile(&rule.spec) {
            Err(errors) => checks.push(Check::finished(
                format!("{name} (compile)"),
                CheckKind::RuleTest,
                started,
                false,
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                "",
            )),
            Ok(compiled) => {
                for test in &rule.spec.tests {
                    let started = Instant::now();
                    let summary = compiled.run_tests(std::slice::from_ref(test));
                    let result = &summary.results[0];
                    let message = result
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("{:?}, as expected", test.expect).to_lowercase());
                    checks.push(Check::finished(
                        format!("{name}/{}", test.name),
                        CheckKind::RuleTest,
                        started,
                        result.passed,
                        message,
                        "",
                    ));
                }
            }
        }
    }
    checks
}
