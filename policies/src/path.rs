//! Firestore-style document path patterns: `/notes/{noteId}` binds one
//! segment, `/files/{rest=**}` binds every remaining segment.

use std::collections::BTreeMap;

/// A parsed `match` pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One(String),
    Rest(String),
}

impl Pattern {
    /// Parses a pattern. The schema already restricts its characters; this
    /// checks what it cannot: `{name=**}` only last, variable names unique.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let segment = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                match inner.strip_suffix("=**") {
                    Some(name) if i + 1 == parts.len() => Segment::Rest(name.to_string()),
                    Some(_) => return Err(format!("{{{inner}}} must be the last segment of {pattern}")),
                    None => Segment::One(inner.to_string()),
                }
            } else if part.is_empty() {
                return Err(format!("empty segment in {pattern}"));
            } else {
                Segment::Literal(part.to_string())
            };
            segments.push(segment);
        }
        let mut names: Vec<&str> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::One(n) | Segment::Rest(n) => Some(n.as_str()),
                Segment::Literal(_) => None,
            })
            .collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("variable {{{}}} appears twice in {pattern}", w[0]));
        }
        Ok(Self { segments })
    }

    /// Names of the variables the pattern binds.
    pub fn variables(&self) -> Vec<&str> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::One(n) | Segment::Rest(n) => Some(n.as_str()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    /// The bindings when `path` matches, else `None`.
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut bindings = BTreeMap::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(l) => {
                    if parts.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Segment::One(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    bindings.insert(name.clone(), part.to_string());
                }
                Segment::Rest(name) => {
                    let rest = parts.get(i..).filter(|r| !r.is_empty() && !r[0].is_empty())?;
                    bindings.insert(name.clone(), rest.join("/"));
                    return Some(bindings);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(bindings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_one_segment_per_variable() {
        let p = Pattern::parse("/users/{uid}/notes/{noteId}").unwrap();
        let b = p.matches("/users/alice/notes/n1").unwrap();
        assert_eq!((b["uid"].as_str(), b["noteId"].as_str()), ("alice", "n1"));
        assert!(p.matches("/users/alice/notes").is_none());
        assert!(p.matches("/users/alice/notes/n1/extra").is_none());
        assert!(p.matches("/groups/alice/notes/n1").is_none());
    }

    #[test]
    fn rest_binds_every_remaining_segment() {
        let p = Pattern::parse("/files/{path=**}").unwrap();
        assert_eq!(p.matches("/files/a/b/c.png").unwrap()["path"], "a/b/c.png");
        assert!(p.matches("/files").is_none());
        assert!(Pattern::parse("/files/{path=**}/more").is_err());
    }

    #[test]
    fn rejects_a_variable_bound_twice() {
        assert!(Pattern::parse("/a/{id}/b/{id}").unwrap_err().contains("twice"));
    }
}
