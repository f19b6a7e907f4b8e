//! Compiling one CEL expression, with positions and known variables checked.

use std::fmt;

use cel::Program;

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
    Ok(program)
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
}
