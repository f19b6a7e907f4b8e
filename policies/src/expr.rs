//! Compiling one CEL expression, with positions and known variables checked.

use std::fmt;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::objects::Key;
use cel::{Context, ExecutionError, Program, Value};

/// Why an expression does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    /// Where the expression lives, for example `rules[0] /notes/{id} allow.read`.
    pub location: String,
    /// Line in the expression, from 1.
    pub line: usize,
    /// Column in the line, from 1.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: line {}, column {}: {}",
            self.location, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for CompileError {}

/// Compiles `source`; every variable it reads must be one of `known`.
pub(crate) fn compile(source: &str, known: &[&str], location: &str) -> Result<Program, CompileError> {
    let program = Program::compile(source).map_err(|errors| {
        let first = errors.errors.first();
        CompileError {
            location: location.to_string(),
            line: first.map(|e| e.pos.0.max(1) as usize).unwrap_or(1),
            column: first.map(|e| e.pos.1.max(0) as usize + 1).unwrap_or(1),
            message: first
                .map(|e| e.msg.clone())
                .unwrap_or_else(|| "syntax error".into()),
        }
    })?;
    let references = program.references();
    let bound = macro_variables(source);
    let mut unknown: Vec<&str> = references
        .variables()
        .into_iter()
        .filter(|v| !known.contains(v) && !bound.iter().any(|b| b == v))
        // The macros' accumulators are internal names, not the user's.
        .filter(|v| !v.starts_with('@') && !v.starts_with("__"))
        .collect();
    unknown.sort();
    if let Some(name) = unknown.first() {
        let (line, column) = position_of(source, name);
        return Err(CompileError {
            location: location.to_string(),
            line,
            column,
            message: format!("unknown variable '{name}'; known here: {}", known.join(", ")),
        });
    }
    if let Some((node, kind)) = not_bool(program.expression()) {
        let (line, column) = line_column(source, leftmost(&program, node));
        return Err(CompileError {
            location: location.to_string(),
            line,
            column,
            message: format!(
                "this is {}, not a bool: a condition must be true or false (compare it, e.g. `x == 1`)",
                kind.name()
            ),
        });
    }
    Ok(program)
}

/// What a node of an expression can be known to evaluate to without its
/// inputs. The `cel` crate does not type-check, so this is a small, sound
/// inference of its own: it only says a node is not a bool when no input can
/// make it one (a literal, arithmetic, a list or map, a conversion function).
/// Variables, fields, indexes and unknown functions are [`Kind::Any`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Int,
    UInt,
    Double,
    String,
    Bytes,
    Null,
    List,
    Map,
    Type,
    /// A number, string, bytes, list or duration: what arithmetic yields.
    Arithmetic,
    /// Unknown until evaluated: may be a bool.
    Any,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "a bool",
            Kind::Int => "an int",
            Kind::UInt => "a uint",
            Kind::Double => "a double",
            Kind::String => "a string",
            Kind::Bytes => "bytes",
            Kind::Null => "null",
            Kind::List => "a list",
            Kind::Map => "a map",
            Kind::Type => "a type",
            Kind::Arithmetic => "a number, string or list",
            Kind::Any => "a value",
        }
    }

    fn may_be_bool(self) -> bool {
        matches!(self, Kind::Bool | Kind::Any)
    }
}

/// The first node that must be a bool and cannot be: the whole expression,
/// or an operand of `&&`, `||`, `!` or the condition of `?:`.
fn not_bool(root: &IdedExpr) -> Option<(&IdedExpr, Kind)> {
    let kind = infer(root, &mut Vec::new());
    if !kind.may_be_bool() {
        return Some((root, kind));
    }
    let mut found = None;
    visit(root, &mut |node| {
        if found.is_some() {
            return;
        }
        let Expr::Call(call) = &node.expr else { return };
        let operands: &[IdedExpr] = match call.func_name.as_str() {
            operators::LOGICAL_AND | operators::LOGICAL_OR | operators::LOGICAL_NOT => &call.args,
            operators::CONDITIONAL => &call.args[..call.args.len().min(1)],
            _ => return,
        };
        for operand in operands {
            let kind = infer(operand, &mut Vec::new());
            if !kind.may_be_bool() {
                found = Some((operand, kind));
                return;
            }
        }
    });
    found
}

/// The kind of `node`; `accumulators` are the comprehension results in scope.
fn infer(node: &IdedExpr, accumulators: &mut Vec<(String, Kind)>) -> Kind {
    match &node.expr {
        Expr::Literal(literal) => match literal {
            LiteralValue::Boolean(_) => Kind::Bool,
            LiteralValue::Bytes(_) => Kind::Bytes,
            LiteralValue::Double(_) => Kind::Double,
            LiteralValue::Int(_) => Kind::Int,
            LiteralValue::Null => Kind::Null,
            LiteralValue::String(_) => Kind::String,
            LiteralValue::UInt(_) => Kind::UInt,
        },
        Expr::List(_) => Kind::List,
        Expr::Map(_) => Kind::Map,
        Expr::Ident(name) => accumulators
            .iter()
            .rev()
            .find(|(accumulator, _)| accumulator == name)
            .map_or(Kind::Any, |(_, kind)| *kind),
        Expr::Select(select) if select.test => Kind::Bool,
        Expr::Comprehension(comprehension) => {
            let init = infer(&comprehension.accu_init, accumulators);
            accumulators.push((comprehension.accu_var.clone(), init));
            let result = infer(&comprehension.result, accumulators);
            accumulators.pop();
            result
        }
        Expr::Call(call) => match call.func_name.as_str() {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS
            | operators::IN
            | operators::NOT_STRICTLY_FALSE
            | "contains"
            | "startsWith"
            | "endsWith"
            | "matches" => Kind::Bool,
            operators::ADD
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | operators::NEGATE => {
                // Same-kind operands give that kind (`1 + 1` is an int);
                // whatever they are, arithmetic never gives a bool.
                let kinds: Vec<Kind> = call.args.iter().map(|a| infer(a, accumulators)).collect();
                match kinds.first() {
                    Some(&first)
                        if kinds.iter().all(|&k| k == first)
                            && matches!(
                                first,
                                Kind::Int
                                    | Kind::UInt
                                    | Kind::Double
                                    | Kind::String
                                    | Kind::Bytes
                                    | Kind::List
                            ) =>
                    {
                        first
                    }
                    _ => Kind::Arithmetic,
                }
            }
            operators::CONDITIONAL if call.args.len() == 3 => {
                let then = infer(&call.args[1], accumulators);
                let otherwise = infer(&call.args[2], accumulators);
                if then == otherwise {
                    then
                } else if !then.may_be_bool() && !otherwise.may_be_bool() {
                    Kind::Arithmetic
                } else {
                    Kind::Any
                }
            }
            "size" | "int" => Kind::Int,
            "uint" => Kind::UInt,
            "double" => Kind::Double,
            "string" => Kind::String,
            "bytes" => Kind::Bytes,
            "type" => Kind::Type,
            "bool" => Kind::Bool,
            _ => Kind::Any,
        },
        _ => Kind::Any,
    }
}

/// Calls `f` on `node` and every node below it.
fn visit<'a>(node: &'a IdedExpr, f: &mut impl FnMut(&'a IdedExpr)) {
    f(node);
    match &node.expr {
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                visit(target, f);
            }
            for arg in &call.args {
                visit(arg, f);
            }
        }
        Expr::Select(select) => visit(&select.operand, f),
        Expr::List(list) => list.elements.iter().for_each(|e| visit(e, f)),
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(entry) = &entry.expr {
                    visit(&entry.key, f);
                    visit(&entry.value, f);
                }
            }
        }
        Expr::Struct(object) => {
            for entry in &object.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    visit(&field.value, f);
                }
            }
        }
        Expr::Comprehension(comprehension) => {
            visit(&comprehension.iter_range, f);
            visit(&comprehension.accu_init, f);
            visit(&comprehension.loop_cond, f);
            visit(&comprehension.loop_step, f);
            visit(&comprehension.result, f);
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// The source offset where `node`'s text starts: the least offset below it.
/// A global call's offset is its `(`: its name starts before.
fn leftmost(program: &Program, node: &IdedExpr) -> usize {
    let info = program.source_info();
    let chars: Vec<char> = info.source.chars().collect();
    let mut start = usize::MAX;
    visit(node, &mut |n| {
        let Some((offset, _)) = info.offset_for(n.id) else {
            return;
        };
        let mut offset = offset as usize;
        if let Expr::Call(call) = &n.expr
            && call.target.is_none()
            && let Some(before) = offset.checked_sub(call.func_name.chars().count())
            && chars
                .get(before..offset)
                .is_some_and(|name| name.iter().copied().eq(call.func_name.chars()))
        {
            offset = before;
        }
        start = start.min(offset);
    });
    if start == usize::MAX { 0 } else { start }
}

/// Line and column (from 1) of the character at `offset`.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for c in source.chars().take(offset) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

/// Says what an evaluation error means in the expression's own words: which
/// field is missing from what (and what is there), or which value is null.
/// The `cel` crate's errors name only the key (`No such key: admin`).
pub(crate) fn explain(program: &Program, context: &Context, error: &ExecutionError) -> String {
    let original = error.to_string();
    let missing = match error {
        ExecutionError::NoSuchKey(key) => Some(key.as_str()),
        ExecutionError::NoSuchOverload(_) if original.contains("'_._'") => None,
        _ => return original,
    };
    let mut explanation = None;
    visit(program.expression(), &mut |node| {
        if explanation.is_some() {
            return;
        }
        let (operand, field) = match &node.expr {
            Expr::Select(select) if !select.test => (&*select.operand, select.field.as_str()),
            Expr::Call(call) if call.func_name == operators::INDEX && call.args.len() == 2 => {
                match &call.args[1].expr {
                    Expr::Literal(LiteralValue::String(key)) => (&call.args[0], key.inner()),
                    _ => return,
                }
            }
            _ => return,
        };
        if missing.is_some_and(|key| key != field) {
            return;
        }
        let Some(name) = spelled(operand) else { return };
        let Ok(value) = Value::resolve(operand, context) else {
            return;
        };
        explanation = match (&value, missing) {
            (Value::Map(map), Some(key)) if !map.map.contains_key(&Key::from(key.to_string())) => {
                let mut keys: Vec<String> = map
                    .map
                    .keys()
                    .map(|k| match k {
                        Key::String(s) => s.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                keys.sort();
                let has = if keys.is_empty() {
                    "it is empty".to_string()
                } else {
                    format!("it has: {}", keys.join(", "))
                };
                Some(format!(
                    "{name} has no field '{key}' ({has}); test for it first with `'{key}' in {name}`"
                ))
            }
            (Value::Map(_), _) => None,
            (Value::Null, _) => Some(format!(
                "{name} is null, so its field '{field}' cannot be read; test `{name} != null` first"
            )),
            (other, None) => Some(format!(
                "{name} is {}, not a map, so it has no field '{field}'",
                value_kind(other)
            )),
            _ => None,
        };
    });
    explanation.unwrap_or(original)
}

/// `request.auth.token` for a chain of fields on a variable; `None` for
/// anything else.
fn spelled(node: &IdedExpr) -> Option<String> {
    match &node.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(select) if !select.test => {
            Some(format!("{}.{}", spelled(&select.operand)?, select.field))
        }
        _ => None,
    }
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::UInt(_) => "a uint",
        Value::Float(_) => "a double",
        Value::String(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "a list",
        Value::Map(_) => "a map",
        Value::Null => "null",
        _ => "a value",
    }
}

/// Variables bound by the comprehension macros (`list.exists(x, …)`): the
/// parser reports them as references like any other.
fn macro_variables(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for name in ["all", "exists", "exists_one", "map", "filter"] {
        let needle = format!(".{name}(");
        let mut rest = source;
        while let Some(at) = rest.find(&needle) {
            rest = &rest[at + needle.len()..];
            let args = rest.trim_start();
            let ident: String = args
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() && args[ident.len()..].trim_start().starts_with(',') {
                names.push(ident);
            }
        }
    }
    names
}

/// Line and column (from 1) of the first whole-word occurrence of `word`.
fn position_of(source: &str, word: &str) -> (usize, usize) {
    for (index, line) in source.lines().enumerate() {
        let mut from = 0;
        while let Some(found) = line[from..].find(word) {
            let start = from + found;
            let end = start + word.len();
            let before = line[..start].chars().next_back();
            let after = line[end..].chars().next();
            let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.');
            if boundary(before) && !after.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                return (index + 1, line[..start].chars().count() + 1);
            }
            from = end;
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = compile(
            "request.auth != null &&\n  resource.data.owner ==",
            &["request", "resource"],
            "here",
        )
        .unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.column > 1, "{err}");
        assert!(err.to_string().starts_with("here: line 2"), "{err}");
    }

    #[test]
    fn unknown_variables_are_compile_errors_with_their_position() {
        let err = compile(
            "request.auth != null && reqest.method == 'get'",
            &["request"],
            "x",
        )
        .unwrap_err();
        assert!(err.message.contains("'reqest'"), "{err}");
        assert_eq!((err.line, err.column), (1, 25));
    }

    fn refused(source: &str) -> CompileError {
        compile(
            source,
            &["request", "resource", "id"],
            "rules[0] (/n/{id}) allow.read",
        )
        .expect_err(source)
    }

    #[test]
    fn a_condition_that_cannot_be_a_bool_is_refused_with_its_position() {
        for (source, kind) in [
            ("1 + 1", "an int"),
            ("request.auth.token.level + 1", "a number, string or list"),
            ("'yes'", "a string"),
            ("42", "an int"),
            ("null", "null"),
            ("[true]", "a list"),
            ("{'a': true}", "a map"),
            ("size(request.path)", "an int"),
            ("request.auth != null ? 1 : 2", "an int"),
            ("request.auth != null ? 1 : 2.5", "a number, string or list"),
            ("resource.data.tags.map(t, t == 'x')", "a list"),
            ("string(request.auth.uid)", "a string"),
        ] {
            let err = refused(source);
            assert!(
                err.message.contains(&format!("this is {kind}")),
                "{source}: {err}"
            );
            assert!(err.message.contains("not a bool"), "{source}: {err}");
            assert!(
                err.to_string()
                    .starts_with("rules[0] (/n/{id}) allow.read: line 1, column 1:"),
                "{source}: {err}"
            );
        }
    }

    #[test]
    fn an_operand_of_a_logical_operator_that_cannot_be_a_bool_is_refused_where_it_is() {
        let err = refused("request.auth != null &&\n  1 + 1");
        assert_eq!((err.line, err.column), (2, 3), "{err}");
        assert!(err.message.starts_with("this is an int, not a bool"), "{err}");
        let err = refused("!'x'");
        assert_eq!((err.line, err.column), (1, 2), "{err}");
        let err = refused("1 ? true : false");
        assert!(err.message.starts_with("this is an int"), "{err}");
    }

    #[test]
    fn conditions_that_may_be_bools_compile() {
        for source in [
            "true",
            "request.auth.token.admin",
            "request.auth != null && request.auth.token.admin",
            "has(request.auth.token.admin)",
            "resource.data.readers.exists(r, r == request.auth.uid)",
            "resource.data.readers.all(r, r != '')",
            "resource.data.readers.exists_one(r, r == id)",
            "'admin' in request.auth.token ? request.auth.token.admin : false",
            "request.path.startsWith('/n/') || size(id) > 3",
            "resource.data.flags[0]",
        ] {
            compile(source, &["request", "resource", "id"], "x").unwrap_or_else(|e| panic!("{source}: {e}"));
        }
    }

    fn explained(source: &str, variables: serde_json::Value) -> String {
        let program = compile(source, &["request"], "x").unwrap();
        let mut context = Context::default();
        context.add_variable("request", &variables["request"]).unwrap();
        let error = program.execute(&context).expect_err(source);
        explain(&program, &context, &error)
    }

    #[test]
    fn a_missing_field_is_named_with_its_path_and_what_is_there() {
        let request = serde_json::json!({"request": {"auth": {"uid": "u", "token": {"email": "e"}}}});
        let message = explained("request.auth.token.admin == true", request.clone());
        assert_eq!(
            message,
            "request.auth.token has no field 'admin' (it has: email); test for it first with `'admin' in request.auth.token`"
        );
        let message = explained("request.auth.token['admin'] == true", request.clone());
        assert!(
            message.starts_with("request.auth.token has no field 'admin'"),
            "{message}"
        );
        let message = explained("request.auth.uid == 'u' && request.auth.name == 'n'", request);
        assert!(
            message.starts_with("request.auth has no field 'name' (it has: token, uid)"),
            "{message}"
        );
    }

    #[test]
    fn reading_a_field_of_null_or_of_a_scalar_says_which_value_it_is() {
        let message = explained(
            "request.auth.uid == 'u'",
            serde_json::json!({"request": {"auth": null}}),
        );
        assert_eq!(
            message,
            "request.auth is null, so its field 'uid' cannot be read; test `request.auth != null` first"
        );
        let message = explained(
            "request.auth.uid.first == 'u'",
            serde_json::json!({"request": {"auth": {"uid": "u"}}}),
        );
        assert_eq!(
            message,
            "request.auth.uid is a string, not a map, so it has no field 'first'"
        );
    }
}
