//! The preview: which files change, as a tree, and a unified diff.

use std::collections::BTreeMap;

use similar::TextDiff;

/// What a file becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Unchanged,
}

/// Each generated file and how it compares with the base commit.
pub fn changes<'a>(
    files: &'a BTreeMap<String, String>,
    existing: &BTreeMap<String, String>,
) -> Vec<(&'a str, Change)> {
    files
        .iter()
        .map(|(path, content)| {
            let change = match existing.get(path) {
                None => Change::Added,
                Some(old) if old == content => Change::Unchanged,
                Some(_) => Change::Modified,
            };
            (path.as_str(), change)
        })
        .collect()
}

/// The changed files as an indented tree, each marked `+` (added) or `~` (modified).
pub fn tree(changes: &[(&str, Change)]) -> String {
    let mut out = String::new();
    let mut printed: Vec<&str> = Vec::new();
    for (path, change) in changes {
        let parts: Vec<&str> = path.split('/').collect();
        for depth in 0..parts.len() - 1 {
            let dir = &path[..parts[..=depth].iter().map(|p| p.len() + 1).sum::<usize>() - 1];
            if !printed.contains(&dir) {
                out.push_str(&format!("{}{}/\n", "  ".repeat(depth), parts[depth]));
                printed.push(dir);
            }
        }
        let mark = match change {
            Change::Added => "+",
            Change::Modified => "~",
            Change::Unchanged => "=",
        };
        out.push_str(&format!(
            "{}{mark} {}\n",
            "  ".repeat(parts.len() - 1),
            parts[parts.len() - 1]
        ));
    }
    out
}

/// A unified diff of every generated file against the base commit.
pub fn diff(files: &BTreeMap<String, String>, existing: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (path, new) in files {
        let old = existing.get(path).map(String::as_str).unwrap_or("");
        if old == new {
            continue;
        }
        let (from, to) = if existing.contains_key(path) {
            (format!("a/{path}"), format!("b/{path}"))
        } else {
            ("/dev/null".to_string(), format!("b/{path}"))
        };
        out.push_str(
            &TextDiff::from_lines(old, new)
                .unified_diff()
                .context_radius(3)
                .header(&from, &to)
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_and_diff() {
        let files = BTreeMap::from([
            ("deploy/notes/app.yaml".to_string(), "a: 1\nb: 2\n".to_string()),
            ("deploy/notes/functions/x.yaml".to_string(), "x\n".to_string()),
            ("deploy/notes/rules.yaml".to_string(), "same\n".to_string()),
        ]);
        let existing = BTreeMap::from([
            ("deploy/notes/app.yaml".to_string(), "a: 1\nb: 1\n".to_string()),
            ("deploy/notes/rules.yaml".to_string(), "same\n".to_string()),
        ]);
        let changes = changes(&files, &existing);
        assert_eq!(
            tree(&changes),
            "deploy/\n  notes/\n    ~ app.yaml\n    functions/\n      + x.yaml\n    = rules.yaml\n"
        );
        let diff = diff(&files, &existing);
        assert!(
            diff.contains("--- a/deploy/notes/app.yaml\n+++ b/deploy/notes/app.yaml\n"),
            "{diff}"
        );
        assert!(diff.contains("-b: 1\n+b: 2\n"), "{diff}");
        assert!(
            diff.contains("--- /dev/null\n+++ b/deploy/notes/functions/x.yaml\n"),
            "{diff}"
        );
        assert!(!diff.contains("rules.yaml"), "{diff}");
    }
}
