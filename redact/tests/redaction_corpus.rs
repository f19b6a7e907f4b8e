//! The redaction rules measured on the corpus in `redact/tests/corpus/`:
//! every positive line must be flagged by the rule it names and lose its
//! secret; no negative line may be flagged at all. The figures are printed
//! (`cargo test -p winky-redact --test redaction_corpus -- --nocapture`).

use std::collections::BTreeSet;
use std::time::Instant;

use winky_redact::Redactor;

fn lines(name: &str) -> Vec<String> {
    let path = format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        // The corpus writes a newline inside a sample (PEM blocks) as a literal \n.
        .map(|l| l.replace("\\n", "\n").replace("\\\\", "\\"))
        .collect()
}

#[test]
fn every_positive_is_caught_by_its_rule_and_no_negative_is_flagged() {
    let redactor = Redactor::builtin();
    let positives = lines("positives.txt");
    let negatives = lines("negatives.txt");
    assert!(
        positives.len() >= 200 && negatives.len() >= 100,
        "{} / {}",
        positives.len(),
        negatives.len()
    );

    let started = Instant::now();
    let mut missed = Vec::new();
    let mut rules_seen = BTreeSet::new();
    for line in &positives {
        let (rule, text) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("no tab in {line:?}"));
        rules_seen.insert(rule.to_string());
        let findings = redactor.scan(text);
        if !findings.iter().any(|f| f.rule == rule) {
            missed.push(format!(
                "{rule}: {:?}",
                findings.iter().map(|f| &f.rule).collect::<Vec<_>>()
            ));
            continue;
        }
        let redacted = redactor.redact(text);
        let again = redactor.scan(&redacted.text);
        assert!(
            again.is_empty(),
            "redacting {rule} left {again:?} in {:?}",
            redacted.text
        );
    }
    let mut false_positives = Vec::new();
    for text in &negatives {
        let findings = redactor.scan(text);
        if !findings.is_empty() {
            false_positives.push(format!("{text:?}: {findings:?}"));
        }
    }
    let elapsed = started.elapsed();
    let caught = positives.len() - missed.len();
    println!(
        "redaction corpus: {} positives over {} rules, caught {caught} ({:.1}%); {} negatives, {} flagged; \
         {} lines in {:.0} ms",
        positives.len(),
        rules_seen.len(),
        100.0 * caught as f64 / positives.len() as f64,
        negatives.len(),
        false_positives.len(),
        positives.len() + negatives.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    assert!(
        missed.is_empty(),
        "missed {} positives:\n{}",
        missed.len(),
        missed.join("\n")
    );
    assert!(
        false_positives.is_empty(),
        "flagged {} negatives:\n{}",
        false_positives.len(),
        false_positives.join("\n")
    );

    let ids: BTreeSet<String> = redactor.rules().iter().map(|r| r.id.clone()).collect();
    let untested: Vec<&String> = ids.difference(&rules_seen).collect();
    assert!(
        untested.is_empty(),
        "rules without a positive sample: {untested:?}"
    );
}
