//! Branch names: `winky/<type>-<slug>-<id>`, the only branches the agent writes.
//!
//! The pattern is the one a `PromotionPolicy` enforces by default
//! ([`winky_crds::policy::DEFAULT_BRANCH_PATTERN`]), so a name built here is
//! accepted by the operator's policy check, and a name given by hand is checked
//! against the same expression before anything is committed.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest, Sha256};

use winky_crds::policy::DEFAULT_BRANCH_PATTERN;

/// The conventional-commit type of a change, which is also the branch prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeType {
    /// A new feature.
    Feat,
    /// A bug fix.
    Fix,
    /// Maintenance that changes no behaviour.
    Chore,
    /// A restructuring that changes no behaviour.
    Refactor,
    /// Documentation only.
    Docs,
    /// Tests only.
    Test,
    /// A performance improvement.
    Perf,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Feat => "feat",
            Self::Fix => "fix",
            Self::Chore => "chore",
            Self::Refactor => "refactor",
            Self::Docs => "docs",
            Self::Test => "test",
            Self::Perf => "perf",
        }
    }
}

impl fmt::Display for ChangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Words that carry no meaning in a branch name.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "with", "and", "or", "of", "for", "to", "in", "on", "at", "by", "my", "our", "your",
    "some", "that", "this", "please", "build", "create", "make", "add", "new", "i", "we", "want", "need",
    "it", "is", "be", "using", "use", "via", "from", "into",
];

/// At most this many words in the slug, as the policy's pattern allows.
pub const MAX_SLUG_WORDS: usize = 5;
/// Hex digits in the id; the pattern asks for at least six.
const ID_LEN: usize = 8;

/// Up to five lowercase words of the prompt, joined by `-`. Hyphenated words
/// (`e-commerce`) count as one word; digits are kept; stop words are dropped.
pub fn slug(prompt: &str) -> String {
    let words: Vec<String> = prompt
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .map(|w| {
            w.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase()
        })
        .filter(|w| !w.is_empty() && !STOP_WORDS.contains(&w.as_str()))
        .take(MAX_SLUG_WORDS)
        .collect();
    if words.is_empty() {
        "change".to_string()
    } else {
        words.join("-")
    }
}

/// A stable id: the same prompt, type and seed give the same branch, so a
/// re-run is recognised instead of opening a second pull request.
pub fn id(prompt: &str, change: ChangeType, seed: u64) -> String {
    let mut hash = Sha256::new();
    hash.update(change.as_str());
    hash.update([0]);
    hash.update(prompt.trim());
    hash.update([0]);
    hash.update(seed.to_be_bytes());
    let digest = hash.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..ID_LEN].to_string()
}

static PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(DEFAULT_BRANCH_PATTERN).expect("the default branch pattern compiles"));

/// A branch name that matches the agent branch pattern. The only way to get
/// one is [`BranchName::for_prompt`] or [`BranchName::parse`], so code that
/// commits or pushes cannot be handed anything else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "refusing branch {name:?}: agent branches must match {pattern} \
     (winky/<type>-<up to 5 words>-<6+ hex>, e.g. winky/feat-notes-app-1a2b3c4d)"
)]
pub struct InvalidBranch {
    pub name: String,
    pub pattern: &'static str,
}

impl BranchName {
    pub fn for_prompt(prompt: &str, change: ChangeType, seed: u64) -> Self {
        let name = format!("winky/{change}-{}-{}", slug(prompt), id(prompt, change, seed));
        Self::parse(&name).expect("a generated branch name matches the pattern")
    }

    pub fn parse(name: &str) -> Result<Self, InvalidBranch> {
        if PATTERN.is_match(name) {
            Ok(Self(name.to_string()))
        } else {
            Err(InvalidBranch {
                name: name.to_string(),
                pattern: DEFAULT_BRANCH_PATTERN,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fully qualified local ref.
    pub fn refname(&self) -> String {
        format!("refs/heads/{}", self.0)
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_five_meaningful_words() {
        assert_eq!(
            slug("A notes app with email login, markdown editor, tags, and images"),
            "notes-app-email-login-markdown"
        );
        assert_eq!(
            slug("E-commerce prototype: products, cart, checkout, admin panel"),
            "ecommerce-prototype-products-cart-checkout"
        );
        assert_eq!(
            slug("Chat app with rooms, messages, and push notifications"),
            "chat-app-rooms-messages-push"
        );
        assert_eq!(slug("!!!"), "change");
        assert_eq!(slug("Ünïcode 2FA café"), "ncode-2fa-caf");
    }

    #[test]
    fn generated_names_match_the_policy_pattern() {
        for prompt in [
            "A notes app",
            "x",
            "",
            "Fix: the login page crashes on Safari 17.2!",
        ] {
            for change in [ChangeType::Feat, ChangeType::Fix, ChangeType::Perf] {
                let name = BranchName::for_prompt(prompt, change, 7);
                assert!(name.as_str().starts_with(&format!("winky/{change}-")), "{name}");
            }
        }
    }

    #[test]
    fn the_id_is_stable_per_prompt_type_and_seed() {
        let a = BranchName::for_prompt("A notes app", ChangeType::Feat, 0);
        assert_eq!(a, BranchName::for_prompt("A notes app", ChangeType::Feat, 0));
        assert_ne!(a, BranchName::for_prompt("A notes app", ChangeType::Feat, 1));
        assert_ne!(a, BranchName::for_prompt("A notes app", ChangeType::Fix, 0));
        assert_eq!(a.as_str().rsplit('-').next().unwrap().len(), ID_LEN);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "main",
            "winky/notes-1a2b3c",
            "winky/feature-notes-1a2b3c",
            "winky/feat-notes-12345",
            "winky/feat-a-b-c-d-e-f-1a2b3c",
            "winky/feat-Notes-1a2b3c",
            "refs/heads/winky/feat-notes-1a2b3c",
            "winky/feat-notes-1a2b3c\nmain",
            "winky/feat-notes-1A2B3C",
        ] {
            let err = BranchName::parse(bad).unwrap_err();
            assert!(err.to_string().contains("refusing branch"), "{bad}");
        }
        assert!(BranchName::parse("winky/fix-login-crash-abcdef").is_ok());
    }
}
