//! `Rule` conditions: compiled once per Rule, decided per request.
//!
//! A request is allowed when any `match` whose pattern matches its path has a
//! condition for its method that evaluates to `true`. The method's own
//! condition (`get`, `list`, `create`, `update`, `delete`) wins over its group
//! (`read` for get and list, `write` for the others). Anything else is denied,
//! and so is a condition that fails to evaluate.
//!
//! Conditions see:
//! - `request`: `{auth: {uid, token} | null, method, path, resource: {data} | null}`
//! - `resource`: the stored document `{data}`, or `null`
//! - every variable of the matched pattern (`noteId` for `/notes/{noteId}`)

use std::collections::BTreeMap;

use cel::{Context, Program, Value};
use serde_json::json;
use winky_crds::rule::{Decision, Method, RuleSpec, RuleTest, RuleTestResult, RuleTestSummary, TestAuth};

use crate::expr::{self, CompileError};
use crate::path::Pattern;

/// The operation names of `allow`, in the order they are compiled.
const OPERATIONS: [&str; 7] = ["read", "write", "get", "list", "create", "update", "delete"];

/// A compiled Rule.
pub struct RuleSet {
    matches: Vec<CompiledMatch>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("matches", &self.matches.len())
            .finish()
    }
}

struct CompiledMatch {
    source: String,
    pattern: Pattern,
    conditions: BTreeMap<&'static str, Program>,
}

/// A request to decide.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The signed-in user, if any.
    pub auth: Option<&'a TestAuth>,
    /// The operation.
    pub method: Method,
    /// Concrete document path.
    pub path: &'a str,
    /// The document after a create or update.
    pub new_data: Option<&'a serde_json::Value>,
    /// The stored document, if one exists.
    pub existing: Option<&'a serde_json::Value>,
}

/// A decision and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Allow or deny.
    pub decision: Decision,
    /// The match and operation that allowed it, or why nothing did.
    pub reason: String,
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "get",
        Method::List => "list",
        Method::Create => "create",
        Method::Update => "update",
        Method::Delete => "delete",
    }
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    }
}

fn group(method: Method) -> &'static str {
    match method {
        Method::Get | Method::List => "read",
        Method::Create | Method::Update | Method::Delete => "write",
    }
}

impl RuleSet {
    /// Compiles every condition; returns every error, each naming its rule.
    pub fn compile(spec: &RuleSpec) -> Result<Self, Vec<CompileError>> {
        let mut errors = Vec::new();
        let mut matches = Vec::new();
        for (index, rule) in spec.rules.iter().enumerate() {
            let location = |op: &str| format!("rules[{index}] ({}) allow.{op}", rule.match_);
            let pattern = match Pattern::parse(&rule.match_) {
                Ok(p) => p,
                Err(message) => {
                    errors.push(CompileError {
                        location: format!("rules[{index}] ({})", rule.match_),
                        line: 1,
                        column: 1,
                        message,
                    });
                    continue;
                }
            };
            let mut known = vec!["request", "resource"];
            known.extend(pattern.variables());
            let allow = &rule.allow;
            let sources = [
                &allow.read,
                &allow.write,
                &allow.get,
                &allow.list,
                &allow.create,
                &allow.update,
                &allow.delete,
            ];
            let mut conditions = BTreeMap::new();
            for (op, source) in OPERATIONS.into_iter().zip(sources) {
                let Some(source) = source else { continue };
                match expr::compile(source, &known, &location(op)) {
                    Ok(program) => {
                        conditions.insert(op, program);
                    }
                    Err(e) => errors.push(e),
                }
            }
            matches.push(CompiledMatch {
                source: rule.match_.clone(),
                pattern,
                conditions,
            });
        }
        if errors.is_empty() {
            Ok(Self { matches })
        } else {
            Err(errors)
        }
    }

    /// Decides `request`.
    pub fn decide(&self, request: &Request<'_>) -> Outcome {
        let method = method_name(request.method);
        let mut why_not = Vec::new();
        for m in &self.matches {
            let Some(bindings) = m.pattern.matches(request.path) else {
                continue;
            };
            let (op, program) = match m.conditions.get(method) {
                Some(p) => (method, p),
                None => match m.conditions.get(group(request.method)) {
                    Some(p) => (group(request.method), p),
                    None => continue,
                },
            };
            match evaluate(program, request, &bindings) {
                Ok(true) => {
                    return Outcome {
                        decision: Decision::Allow,
                        reason: format!("allowed by {} allow.{op}", m.source),
                    };
                }
                Ok(false) => why_not.push(format!("{} allow.{op} is false", m.source)),
                Err(e) => why_not.push(format!("{} allow.{op} failed: {e}", m.source)),
            }
        }
        let reason = if why_not.is_empty() {
            format!("no match allows {method} on {}", request.path)
        } else {
            why_not.join("; ")
        };
        Outcome {
            decision: Decision::Deny,
            reason,
        }
    }

    /// Runs a Rule's tests against it.
    pub fn run_tests(&self, tests: &[RuleTest]) -> RuleTestSummary {
        let results: Vec<RuleTestResult> = tests
            .iter()
            .map(|t| {
                let outcome = self.decide(&Request {
                    auth: t.request.auth.as_ref(),
                    method: t.request.method,
                    path: &t.request.path,
                    new_data: t.request.resource.as_ref().map(|d| &d.data),
                    existing: t.resource.as_ref().map(|d| &d.data),
                });
                let passed = outcome.decision == t.expect;
                RuleTestResult {
                    name: t.name.clone(),
                    passed,
                    message: (!passed).then(|| {
                        format!(
                            "expected {}, got {}: {}",
                            decision_name(t.expect),
                            decision_name(outcome.decision),
                            outcome.reason
                        )
                    }),
                }
            })
            .collect();
        let passed = results.iter().filter(|r| r.passed).count() as i32;
        RuleTestSummary {
            passed,
            failed: results.len() as i32 - passed,
            results,
        }
    }
}

fn evaluate(
    program: &Program,
    request: &Request<'_>,
    bindings: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let auth = request.auth.map(|a| json!({"uid": a.uid, "token": a.token}));
    let request_value = json!({
        "auth": auth,
        "method": method_name(request.method),
        "path": request.path,
        "resource": request.new_data.map(|d| json!({"data": d})),
    });
    let resource = request.existing.map(|d| json!({"data": d}));
    let mut context = Context::default();
    context
        .add_variable("request", &request_value)
        .map_err(|e| e.to_string())?;
    context
        .add_variable("resource", &resource)
        .map_err(|e| e.to_string())?;
    for (name, value) in bindings {
        context
            .add_variable(name.as_str(), value)
            .map_err(|e| e.to_string())?;
    }
    match program.execute(&context) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("the condition returned {other:?}, not a bool")),
        Err(e) => Err(expr::explain(program, &context, &e)),
    }
}
