//! Redaction: secret-shaped content is replaced before any planner, log, file,
//! commit or request sees the prompt.
//!
//! The rules are data, not code: `redact/rules.toml` holds a selection of
//! gitleaks' rules in gitleaks' own format (see `redact/README.md` for the
//! provenance), plus a few of Winky's own. They are applied the way gitleaks
//! applies them:
//!
//! - a rule with `keywords` only runs when one of them occurs in the text
//!   (case-insensitively) — it is a cheap prefilter and part of the rule;
//! - the secret is capture group `secretGroup` when set, else the first capture
//!   group that matched, else the whole match — so `password=hunter2` redacts
//!   `hunter2` and keeps `password=` for the reader;
//! - a rule with `entropy` only reports a secret whose Shannon entropy (bits per
//!   character) reaches it, which keeps `api_key=example` from being flagged.
//!
//! On top of the rules, a token of 24 or more characters drawn from the base64
//! or hex alphabets with high entropy and mixed character classes is reported as
//! `high-entropy-string`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, OnceLock};

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The rule file, compiled into the binary so a prompt is never sent anywhere
/// before the rules that guard it are loaded.
const RULES_TOML: &str = include_str!("../rules.toml");

#[derive(Debug, Deserialize)]
struct RuleFile {
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    id: String,
    #[serde(default)]
    description: String,
    regex: String,
    #[serde(default)]
    secret_group: Option<usize>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

/// gitleaks' per-rule allowlist, reduced to what applies to a prompt: a
/// secret matching one of `regexes` is not reported.
#[derive(Debug, Deserialize)]
struct RawAllowlist {
    #[serde(default)]
    regexes: Vec<String>,
}

/// One rule. Its regex is compiled the first time its keywords occur in a
/// text: compiling all of them up front costs about a second in a debug
/// build and a quarter of one in release, for rules most prompts never
/// trigger; `the_builtin_rules_compile` compiles every one.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub description: String,
    source: String,
    regex: OnceLock<Regex>,
    secret_group: Option<usize>,
    entropy: Option<f64>,
    keywords: Vec<String>,
    allow: Vec<Regex>,
}

impl Rule {
    fn regex(&self) -> &Regex {
        self.regex.get_or_init(|| {
            Regex::new(&self.source).expect("every rule compiles (the_builtin_rules_compile)")
        })
    }
}

/// The compiled rule set.
#[derive(Debug)]
pub struct Redactor {
    rules: Vec<Rule>,
}

/// What was found: which rule, and where (never the value).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub rule: String,
    pub description: String,
    /// Byte offsets of the secret in the original text.
    pub start: usize,
    pub end: usize,
    /// 1-based line and column (in characters) of the secret's first character.
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {} ({} characters)",
            self.rule,
            self.line,
            self.column,
            self.end - self.start
        )
    }
}

/// A redacted text and what was taken out of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Redacted {
    pub text: String,
    pub findings: Vec<Finding>,
}

/// Rules that recognise a secret by its surroundings or its randomness
/// rather than its format; a format rule names an overlapping finding.
const GENERIC_RULES: [&str; 3] = ["generic-api-key", "password-assignment", "high-entropy-string"];

/// How a redaction reads in the text: `[REDACTED:<rule>]`.
const MARKER: &str = "[REDACTED:";

/// Minimum length of a token considered by the high-entropy check.
const HIGH_ENTROPY_MIN_LEN: usize = 24;
/// Bits per character a token must reach to count as high entropy. Random
/// base64 of this length sits around 4.5; English words and identifiers stay
/// well below 4.
const HIGH_ENTROPY_BITS: f64 = 4.2;

static DEFAULT: LazyLock<Redactor> =
    LazyLock::new(|| Redactor::from_toml(RULES_TOML).expect("redact/rules.toml is valid (tested)"));

static TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/_\-]{24,}={0,2}").expect("token regex compiles"));

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("the redaction rules are not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("redaction rule {id}: {source}")]
    Regex { id: String, source: regex::Error },
}

impl Redactor {
    /// The rules shipped in `redact/rules.toml`.
    pub fn builtin() -> &'static Self {
        &DEFAULT
    }

    pub fn from_toml(text: &str) -> Result<Self, RuleError> {
        let file: RuleFile = toml::from_str(text)?;
        let rules = file
            .rules
            .into_iter()
            .map(|raw| {
                let invalid = |source| RuleError::Regex {
                    id: raw.id.clone(),
                    source,
                };
                let allow = raw
                    .allowlists
                    .iter()
                    .flat_map(|a| &a.regexes)
                    .map(|r| Regex::new(r).map_err(invalid))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rule {
                    id: raw.id.clone(),
                    description: raw.description,
                    source: raw.regex,
                    regex: OnceLock::new(),
                    secret_group: raw.secret_group,
                    entropy: raw.entropy,
                    keywords: raw.keywords.into_iter().map(|k| k.to_lowercase()).collect(),
                    allow,
                })
            })
            .collect::<Result<Vec<_>, RuleError>>()?;
        Ok(Self { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Every secret in `text`, ordered by position, overlaps resolved in favour
    /// of the earlier and then the longer one.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        let lower = text.to_lowercase();
        let mut spans: Vec<(usize, usize, &str, &str)> = Vec::new();
        for rule in &self.rules {
            if !rule.keywords.is_empty() && !rule.keywords.iter().any(|k| lower.contains(k.as_str())) {
                continue;
            }
            for caps in rule.regex().captures_iter(text) {
                // As gitleaks: group `secretGroup` when set, else the first
                // non-empty group, else the whole match, trimmed of newlines.
                let secret = match rule.secret_group.filter(|g| *g > 0) {
                    Some(group) => caps.get(group),
                    None => caps
                        .iter()
                        .skip(1)
                        .flatten()
                        .find(|m| !m.is_empty())
                        .or_else(|| caps.get(0)),
                };
                let Some(secret) = secret else { continue };
                let value = secret.as_str();
                let start = secret.start() + (value.len() - value.trim_start_matches('\n').len());
                let end = secret.end() - (value.len() - value.trim_end_matches('\n').len());
                if start >= end {
                    continue;
                }
                let value = &text[start..end];
                // gitleaks drops a secret whose entropy does not exceed the threshold.
                if rule.entropy.is_some_and(|min| shannon_entropy(value) <= min) {
                    continue;
                }
                // An allowlisted value, or one of our own markers from an earlier pass.
                if rule.allow.iter().any(|allow| allow.is_match(value)) || value.contains(MARKER) {
                    continue;
                }
                spans.push((start, end, &rule.id, &rule.description));
            }
        }
        for token in TOKEN.find_iter(text) {
            if looks_random(token.as_str()) {
                spans.push((
                    token.start(),
                    token.end(),
                    "high-entropy-string",
                    "A long random-looking token",
                ));
            }
        }
        spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut findings: Vec<Finding> = Vec::new();
        let mut covered_to = 0;
        for (start, end, rule, description) in spans {
            if start < covered_to {
                // Overlaps an earlier finding: widen it instead of reporting
                // twice, and name it after the more specific rule.
                if let Some(last) = findings.last_mut() {
                    if end > last.end {
                        last.end = end;
                        covered_to = end;
                    }
                    if GENERIC_RULES.contains(&last.rule.as_str()) && !GENERIC_RULES.contains(&rule) {
                        last.rule = rule.to_string();
                        last.description = description.to_string();
                    }
                }
                continue;
            }
            let (line, column) = line_column(text, start);
            findings.push(Finding {
                rule: rule.to_string(),
                description: description.to_string(),
                start,
                end,
                line,
                column,
            });
            covered_to = end;
        }
        findings
    }

    /// `text` with every finding replaced by `[REDACTED:<rule>]`.
    pub fn redact(&self, text: &str) -> Redacted {
        let findings = self.scan(text);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for finding in &findings {
            out.push_str(&text[at..finding.start]);
            out.push_str(&format!("{MARKER}{}]", finding.rule));
            at = finding.end;
        }
        out.push_str(&text[at..]);
        Redacted { text: out, findings }
    }
}

/// Shannon entropy in bits per character.
pub fn shannon_entropy(text: &str) -> f64 {
    let mut counts: HashMap<char, usize> = HashMap::new();
    let mut total = 0usize;
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    counts
        .values()
        .map(|&n| {
            let p = n as f64 / total;
            -p * p.log2()
        })
        .sum()
}

/// A token that is long, mixes upper case, lower case and digits, and has the
/// entropy of random data. Hex digests (no upper case) and kebab-case names
/// (low entropy) do not qualify.
fn looks_random(token: &str) -> bool {
    token.len() >= HIGH_ENTROPY_MIN_LEN
        && token.chars().any(|c| c.is_ascii_uppercase())
        && token.chars().any(|c| c.is_ascii_lowercase())
        && token.chars().any(|c| c.is_ascii_digit())
        && shannon_entropy(token) >= HIGH_ENTROPY_BITS
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_rules_compile() {
        let rules = Redactor::builtin().rules();
        assert!(rules.len() >= 40, "{}", rules.len());
        for rule in rules {
            let _ = rule.regex();
        }
    }

    #[test]
    fn a_secret_is_replaced_and_reported_without_its_value() {
        let prompt = "Notes app.\nUse token ghp_R2d9Xq7LmP4sT8vW1yZ3bN6cF0hJ5kA9eG2u for the API";
        let redacted = Redactor::builtin().redact(prompt);
        assert!(!redacted.text.contains("ghp_R2d9"), "{}", redacted.text);
        assert!(
            redacted.text.contains("[REDACTED:github-pat]"),
            "{}",
            redacted.text
        );
        assert_eq!(redacted.findings.len(), 1);
        let finding = &redacted.findings[0];
        assert_eq!((finding.line, finding.column), (2, 11));
        assert!(!finding.to_string().contains("ghp_"));
    }

    #[test]
    fn passwords_in_urls_keep_the_rest_of_the_url() {
        let redacted =
            Redactor::builtin().redact("store data in postgres://app:S3cr3t-Pa55@db.internal:5432/notes");
        assert!(!redacted.text.contains("S3cr3t-Pa55"), "{}", redacted.text);
        assert!(
            redacted.text.contains("db.internal:5432/notes"),
            "{}",
            redacted.text
        );
    }

    #[test]
    fn ordinary_prompts_are_left_alone() {
        for prompt in [
            "A notes app with email login, markdown editor, tags, and images",
            "E-commerce prototype: products, cart, checkout, admin panel",
            "Chat app with rooms, messages, and push notifications",
            "deploy commit 3f9a2c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39 on winky/feat-notes-app-1a2b3c4d",
            "id 123e4567-e89b-12d3-a456-426614174000, memory 512Mi, cron */5 * * * *",
        ] {
            assert_eq!(Redactor::builtin().scan(prompt), vec![], "{prompt}");
        }
    }

    #[test]
    fn entropy_is_bits_per_character() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn overlapping_findings_are_reported_once() {
        let text = "key=AKIAIOSFODNN7EXAMPLEAKIAIOSFODNN7EXAMPLE";
        let findings = Redactor::builtin().scan(text);
        for pair in findings.windows(2) {
            assert!(pair[0].end <= pair[1].start, "{findings:?}");
        }
        // The generic rule and the AWS rule both match here: one finding,
        // named after the specific rule, covering the key.
        let findings = Redactor::builtin().scan("key=AKIAIOSFODNN7EXAMPLE");
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].rule, "aws-access-token");
        assert_eq!((findings[0].start, findings[0].end), (4, 24));
    }
}
