//! Whether an approval counts under a `PromotionPolicy`.
//!
//! Two rules hold whatever the policy's expression says: the pull request's
//! author never approves their own change, and an agent identity never
//! approves anything. The expression then decides; it sees `approver`
//! (`login`, `isAgent`), `pr` (`author`, `number`) and `policy` (`approvers`).

use cel::{Context, Program, Value};
use serde_json::json;

use crate::expr::{self, CompileError};

/// The expression used when a stage sets none.
pub const DEFAULT_ELIGIBLE: &str = "approver.login in policy.approvers";

const VARIABLES: [&str; 3] = ["approver", "pr", "policy"];

/// Someone who approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approver<'a> {
    /// GitHub login.
    pub login: &'a str,
    /// Whether the login is one of the policy's agent identities.
    pub is_agent: bool,
}

/// The pull request being approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest<'a> {
    /// Login of its author.
    pub author: &'a str,
    /// Its number.
    pub number: i64,
}

/// Why an approval counts or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It counts.
    Counts,
    /// The approver wrote the pull request.
    Author,
    /// The approver is an agent.
    Agent,
    /// The policy's expression says no.
    NotEligible,
    /// The expression could not be evaluated (it counts as no).
    Error(String),
}

impl Verdict {
    /// Whether the approval counts.
    pub fn counts(&self) -> bool {
        matches!(self, Verdict::Counts)
    }
}

/// A compiled eligibility expression.
pub struct Eligibility {
    program: Program,
}

impl std::fmt::Debug for Eligibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Eligibility")
    }
}

impl Eligibility {
    /// Compiles `source`, or [`DEFAULT_ELIGIBLE`] when `None`.
    pub fn compile(source: Option<&str>, location: &str) -> Result<Self, CompileError> {
        let program = expr::compile(source.unwrap_or(DEFAULT_ELIGIBLE), &VARIABLES, location)?;
        Ok(Self { program })
    }

    /// Whether `approver`'s approval of `pr` counts, given the policy's approvers.
    pub fn check(&self, approver: &Approver<'_>, pr: &PullRequest<'_>, approvers: &[String]) -> Verdict {
        if approver.login.eq_ignore_ascii_case(pr.author) {
            return Verdict::Author;
        }
        if approver.is_agent {
            return Verdict::Agent;
        }
        let mut context = Context::default();
        let vars = [
            (
                "approver",
                json!({"login": approver.login, "isAgent": approver.is_agent}),
            ),
            ("pr", json!({"author": pr.author, "number": pr.number})),
            ("policy", json!({"approvers": approvers})),
        ];
        for (name, value) in vars {
            if let Err(e) = context.add_variable(name, &value) {
                return Verdict::Error(e.to_string());
            }
        }
        match self.program.execute(&context) {
            Ok(Value::Bool(true)) => Verdict::Counts,
            Ok(Value::Bool(false)) => Verdict::NotEligible,
            Ok(other) => Verdict::Error(format!("the expression returned {other:?}, not a bool")),
            Err(e) => Verdict::Error(expr::explain(&self.program, &context, &e)),
        }
    }
}
