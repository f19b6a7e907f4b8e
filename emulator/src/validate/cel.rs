//! The CEL of `x-kubernetes-validations`, offline: the standard library and
//! the strings, lists and math extensions of the `cel` crate, plus the
//! Kubernetes library functions the CRDs use — quantities (`isQuantity`,
//! `quantity(…).compareTo(…)`, …), `isCIDR`, `isIP`, and regular
//! expressions (`matches`, `find`, `findAll`).

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use cel::extractors::This;
use cel::objects::Opaque;
use cel::{Context, Env, ExecutionError, Program, Value};

use crate::quantity;

/// A Kubernetes quantity inside CEL, exact to the billionth.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Quantity(i128);

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quantity({}n)", self.0)
    }
}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

fn as_quantity(value: &Value, function: &str) -> Result<Quantity, ExecutionError> {
    match value {
        Value::Opaque(o) => o
            .downcast_ref::<Quantity>()
            .copied()
            .ok_or_else(|| ExecutionError::function_error(function, "not a quantity")),
        Value::Int(i) => Ok(Quantity(i128::from(*i) * 1_000_000_000)),
        other => Err(ExecutionError::function_error(
            function,
            format!("expected a quantity, got {other:?}"),
        )),
    }
}

fn is_quantity(text: Arc<String>) -> bool {
    quantity::nanos(&text).is_some()
}

fn make_quantity(text: Arc<String>) -> Result<Value, ExecutionError> {
    quantity::nanos(&text)
        .map(|n| Value::Opaque(Arc::new(Quantity(n))))
        .ok_or_else(|| ExecutionError::function_error("quantity", format!("invalid quantity {text:?}")))
}

fn compare(this: &Value, other: &Value, function: &str) -> Result<std::cmp::Ordering, ExecutionError> {
    Ok(as_quantity(this, function)?
        .0
        .cmp(&as_quantity(other, function)?.0))
}

fn compare_to(This(this): This<Value>, other: Value) -> Result<i64, ExecutionError> {
    Ok(compare(&this, &other, "compareTo")? as i64)
}

fn is_greater_than(This(this): This<Value>, other: Value) -> Result<bool, ExecutionError> {
    Ok(compare(&this, &other, "isGreaterThan")?.is_gt())
}

fn is_less_than(This(this): This<Value>, other: Value) -> Result<bool, ExecutionError> {
    Ok(compare(&this, &other, "isLessThan")?.is_lt())
}

fn sign(This(this): This<Value>) -> Result<i64, ExecutionError> {
    Ok(as_quantity(&this, "sign")?.0.signum() as i64)
}

fn is_integer(This(this): This<Value>) -> Result<bool, ExecutionError> {
    let nanos = as_quantity(&this, "isInteger")?.0;
    Ok(nanos % 1_000_000_000 == 0 && i64::try_from(nanos / 1_000_000_000).is_ok())
}

fn as_integer(This(this): This<Value>) -> Result<i64, ExecutionError> {
    let nanos = as_quantity(&this, "asInteger")?.0;
    if nanos % 1_000_000_000 != 0 {
        return Err(ExecutionError::function_error("asInteger", "not an integer"));
    }
    i64::try_from(nanos / 1_000_000_000)
        .map_err(|_| ExecutionError::function_error("asInteger", "out of the range of an int"))
}

fn as_approximate_float(This(this): This<Value>) -> Result<f64, ExecutionError> {
    Ok(as_quantity(&this, "asApproximateFloat")?.0 as f64 / 1e9)
}

/// `10.0.0.0/8`, `2001:db8::/32`: an address, a slash and a prefix length
/// that fits it — what Kubernetes' `isCIDR` accepts.
fn is_cidr(text: Arc<String>) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        return false;
    };
    let bits = if address.is_ipv4() { 32 } else { 128 };
    !prefix.is_empty()
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && (prefix.len() == 1 || !prefix.starts_with('0'))
        && prefix.parse::<u32>().is_ok_and(|p| p <= bits)
}

fn is_ip(text: Arc<String>) -> bool {
    // Kubernetes refuses IPv4-mapped IPv6 and zones; std refuses zones too.
    text.parse::<IpAddr>()
        .is_ok_and(|ip| !matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()))
}

fn regex(pattern: &str, function: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(pattern)
        .map_err(|e| ExecutionError::function_error(function, format!("invalid regular expression: {e}")))
}

fn matches(This(this): This<Arc<String>>, pattern: Arc<String>) -> Result<bool, ExecutionError> {
    Ok(regex(&pattern, "matches")?.is_match(&this))
}

fn find(This(this): This<Arc<String>>, pattern: Arc<String>) -> Result<Value, ExecutionError> {
    let found = regex(&pattern, "find")?
        .find(&this)
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    Ok(Value::String(Arc::new(found)))
}

fn find_all(This(this): This<Arc<String>>, pattern: Arc<String>) -> Result<Value, ExecutionError> {
    let found: Vec<Value> = regex(&pattern, "findAll")?
        .find_iter(&this)
        .map(|m| Value::String(Arc::new(m.as_str().to_string())))
        .collect();
    Ok(Value::List(Arc::new(found)))
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Kubernetes' CEL environment has these libraries too.
        let _ = cel::extensions::strings(&mut env);
        let _ = cel::extensions::lists(&mut env);
        let _ = cel::extensions::math(&mut env);
        Arc::new(env)
    })
}

/// A compiled rule, or why it could not be.
pub fn compile(rule: &str) -> Result<Program, String> {
    env().compile(rule).map_err(|e| e.to_string())
}

/// Why a rule gave no verdict.
#[derive(Debug)]
pub enum EvalError {
    /// The rule uses something this offline evaluator does not know; the
    /// apiserver will judge it.
    Unsupported(String),
    /// The rule failed on this value, as it would in the apiserver.
    Failed(String),
}

/// Runs `program` with `self` bound to `value`: `Ok(true)` when the rule holds.
pub fn evaluate(program: &Program, value: &serde_json::Value) -> Result<bool, EvalError> {
    match execute(program, value)? {
        Value::Bool(holds) => Ok(holds),
        other => Err(EvalError::Failed(format!("the rule gave {other:?}, not a bool"))),
    }
}

/// Runs a `messageExpression`: the message it builds.
pub fn evaluate_string(program: &Program, value: &serde_json::Value) -> Result<String, EvalError> {
    match execute(program, value)? {
        Value::String(text) => Ok(text.to_string()),
        other => Err(EvalError::Failed(format!(
            "the message expression gave {other:?}, not a string"
        ))),
    }
}

fn execute(program: &Program, value: &serde_json::Value) -> Result<Value, EvalError> {
    let mut context = Context::with_env(Arc::clone(env()));
    // A conflict means the environment already declares the function: the
    // standard library's `matches`, when the `cel` crate is built with its
    // `regex` feature, is then the one used.
    let _ = context.add_function("isQuantity", is_quantity);
    let _ = context.add_function("quantity", make_quantity);
    let _ = context.add_function("compareTo", compare_to);
    let _ = context.add_function("isGreaterThan", is_greater_than);
    let _ = context.add_function("isLessThan", is_less_than);
    let _ = context.add_function("sign", sign);
    let _ = context.add_function("isInteger", is_integer);
    let _ = context.add_function("asInteger", as_integer);
    let _ = context.add_function("asApproximateFloat", as_approximate_float);
    let _ = context.add_function("isCIDR", is_cidr);
    let _ = context.add_function("isIP", is_ip);
    let _ = context.add_function("matches", matches);
    let _ = context.add_function("find", find);
    let _ = context.add_function("findAll", find_all);
    context
        .add_variable("self", value)
        .map_err(|e| EvalError::Failed(e.to_string()))?;
    match program.execute(&context) {
        Ok(value) => Ok(value),
        Err(ExecutionError::UndeclaredReference(name)) => Err(EvalError::Unsupported(format!(
            "`{name}` is not known to the offline evaluator"
        ))),
        Err(ExecutionError::FunctionError { function, message })
            if message.contains("not found") || message.contains("unknown") =>
        {
            Err(EvalError::Unsupported(format!("{function}: {message}")))
        }
        Err(e) => Err(EvalError::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn holds(rule: &str, value: serde_json::Value) -> bool {
        evaluate(&compile(rule).unwrap(), &value).unwrap()
    }

    #[test]
    fn the_kubernetes_functions_the_crds_use() {
        let memory = "isQuantity(self) && quantity(self).compareTo(quantity('64Mi')) >= 0 && \
                      quantity(self).compareTo(quantity('4Gi')) <= 0";
        assert!(holds(memory, json!("512Mi")));
        assert!(holds(memory, json!("4Gi")));
        assert!(!holds(memory, json!("10Gi")));
        assert!(!holds(memory, json!("lots")));
        let positive = "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))";
        assert!(holds(positive, json!("250m")));
        assert!(!holds(positive, json!("0")));
        assert!(!holds(positive, json!("-1")));
        assert!(holds("quantity(self).isLessThan(quantity('1'))", json!("999m")));
        assert!(holds("quantity(self).sign() == -1", json!("-2k")));
        assert!(holds("quantity(self).asInteger() == 2000", json!("2k")));
        assert!(holds("isCIDR(self.cidr)", json!({"cidr": "10.0.0.0/8"})));
        assert!(holds("isCIDR(self.cidr)", json!({"cidr": "2001:db8::/32"})));
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "example.com/8",
            "10.0.0.0/08",
            "10.0.0.0/",
        ] {
            assert!(!holds("isCIDR(self)", json!(bad)), "{bad}");
        }
        assert!(holds("isIP(self)", json!("192.168.0.1")));
        assert!(!holds("isIP(self)", json!("192.168.0.1/24")));
        assert!(holds("self.matches('^[a-z]+$')", json!("abc")));
        assert!(!holds("self.matches('^[a-z]+$')", json!("a-b")));
        assert!(holds("self.find('[0-9]+') == '42'", json!("a42b7")));
        assert!(holds("self.findAll('[0-9]+') == ['42', '7']", json!("a42b7")));
    }

    #[test]
    fn the_standard_library_and_extensions() {
        let trigger =
            "(has(self.http) ? 1 : 0) + (has(self.schedule) ? 1 : 0) + (has(self.document) ? 1 : 0) == 1";
        assert!(holds(trigger, json!({"http": {"path": "/a"}})));
        assert!(!holds(
            trigger,
            json!({"http": {"path": "/a"}, "schedule": {"cron": "@daily"}})
        ));
        assert!(!holds(trigger, json!({})));
        let env = "!has(self.env) || !has(self.secrets) || self.secrets.all(s, !self.env.exists(e, e.name == s.name))";
        assert!(holds(
            env,
            json!({"env": [{"name": "A"}], "secrets": [{"name": "B"}]})
        ));
        assert!(!holds(
            env,
            json!({"env": [{"name": "A"}], "secrets": [{"name": "A"}]})
        ));
        assert!(holds(
            "self.startsWith('^winky/') && self.endsWith('$')",
            json!("^winky/x$")
        ));
        assert!(holds(
            "self.lowerAscii() == 'abc' && size(self) == 3",
            json!("ABC")
        ));
        assert!(holds("!self.contains('..')", json!("apps/notes")));
    }

    #[test]
    fn unknown_functions_are_unsupported_not_failures() {
        let program = compile("self.frobnicate()").unwrap();
        assert!(matches!(
            evaluate(&program, &json!("x")),
            Err(EvalError::Unsupported(_))
        ));
        let program = compile("self.missing == 1").unwrap();
        assert!(matches!(
            evaluate(&program, &json!({})),
            Err(EvalError::Failed(_))
        ));
    }
}
