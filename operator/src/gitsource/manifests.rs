//! From the files of one commit to the objects a GitSource may apply: pure,
//! tested without a server.
//!
//! A repository may hold Winky's namespaced kinds (`App`, `Function`, `Rule`)
//! and `Namespace`s, nothing else: anything else in any file refuses the whole
//! commit, naming the file, the line and the kind. Objects land in the
//! GitSource's own namespace unless they name a namespace that the same
//! commit declares (and so this GitSource creates and owns).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::{ApiResource, DynamicObject};
use serde_json::Value;
use winky_crds::gitsource::InventoryEntry;
use winky_crds::keys::{GIT_COMMIT_ANNOTATION, GIT_SOURCE_ANNOTATION, PULL_REQUEST_ANNOTATION};
use winky_crds::{App, Function, Rule};

/// A file read from the commit: its path in the repository and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Path from the repository root.
    pub path: String,
    /// The file's text.
    pub content: String,
}

/// The kinds a repository may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Applied first, so the objects in it can be.
    Namespace,
    App,
    Function,
    Rule,
}

impl Kind {
    /// The kind of `apiVersion`/`kind`, when a repository may hold it.
    pub fn of(api_version: &str, kind: &str) -> Option<Kind> {
        let winky = format!("{}/{}", winky_crds::GROUP, winky_crds::VERSION);
        match (api_version, kind) {
            ("v1", "Namespace") => Some(Kind::Namespace),
            (v, "App") if v == winky => Some(Kind::App),
            (v, "Function") if v == winky => Some(Kind::Function),
            (v, "Rule") if v == winky => Some(Kind::Rule),
            _ => None,
        }
    }

    /// Where the apiserver serves the kind.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::Namespace => ApiResource::erase::<Namespace>(&()),
            Kind::App => ApiResource::erase::<App>(&()),
            Kind::Function => ApiResource::erase::<Function>(&()),
            Kind::Rule => ApiResource::erase::<Rule>(&()),
        }
    }

    /// Whether objects of the kind live in a namespace.
    pub fn namespaced(self) -> bool {
        self != Kind::Namespace
    }
}

/// One object of the commit, ready to apply.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The file it came from.
    pub file: String,
    /// Line of the file where its document starts (1-based).
    pub line: usize,
    /// Its kind.
    pub kind: Kind,
    /// The object, with its namespace set and the source's annotations added.
    pub object: DynamicObject,
}

impl Manifest {
    /// Its name.
    pub fn name(&self) -> &str {
        self.object.metadata.name.as_deref().unwrap_or_default()
    }

    /// Its namespace; `None` for a Namespace.
    pub fn namespace(&self) -> Option<&str> {
        self.object.metadata.namespace.as_deref()
    }

    /// Where it came from, for messages: `deploy/app.yaml:12`.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// Its entry in the GitSource's inventory.
    pub fn entry(&self) -> InventoryEntry {
        let resource = self.kind.api_resource();
        InventoryEntry {
            api_version: resource.api_version,
            kind: resource.kind,
            namespace: self.namespace().unwrap_or_default().to_string(),
            name: self.name().to_string(),
        }
    }
}

/// Why a commit cannot be applied. Each names the file and line to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// A document is not YAML.
    Yaml {
        file: String,
        line: usize,
        message: String,
    },
    /// A document is not a Kubernetes object (no mapping, no apiVersion/kind, no name).
    NotAnObject {
        file: String,
        line: usize,
        message: String,
    },
    /// A kind the repository may not hold.
    Kind {
        file: String,
        line: usize,
        api_version: String,
        kind: String,
    },
    /// An object in a namespace that is neither the source's nor declared by the commit.
    Namespace {
        file: String,
        line: usize,
        namespace: String,
        source_namespace: String,
    },
    /// A Namespace manifest for the source's own namespace (which it must never own or prune).
    OwnNamespace {
        file: String,
        line: usize,
        namespace: String,
    },
    /// The same object twice.
    Duplicate {
        first: String,
        second: String,
        object: String,
    },
}

impl Invalid {
    /// CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::Yaml { .. } | Invalid::NotAnObject { .. } | Invalid::Duplicate { .. } => {
                "InvalidManifest"
            }
            Invalid::Kind { .. } => "KindNotAllowed",
            Invalid::Namespace { .. } | Invalid::OwnNamespace { .. } => "NamespaceNotAllowed",
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Yaml { file, line, message } => write!(f, "{file}:{line}: not valid YAML: {message}"),
            Invalid::NotAnObject { file, line, message } => {
                write!(f, "{file}:{line}: not a Kubernetes object: {message}")
            }
            Invalid::Kind {
                file,
                line,
                api_version,
                kind,
            } => write!(
                f,
                "{file}:{line}: {kind} ({api_version}) is not allowed here: a repository may hold only \
                 App, Function and Rule ({}/{}) and Namespace (v1) objects",
                winky_crds::GROUP,
                winky_crds::VERSION
            ),
            Invalid::Namespace {
                file,
                line,
                namespace,
                source_namespace,
            } => write!(
                f,
                "{file}:{line}: namespace {namespace} is neither this GitSource's ({source_namespace}) \
                 nor declared by a Namespace in the repository"
            ),
            Invalid::OwnNamespace {
                file,
                line,
                namespace,
            } => write!(
                f,
                "{file}:{line}: Namespace {namespace} is the GitSource's own namespace; it cannot be \
                 applied or pruned from the repository"
            ),
            Invalid::Duplicate {
                first,
                second,
                object,
            } => {
                write!(f, "{second}: {object} is declared twice (first at {first})")
            }
        }
    }
}

/// The manifests among `files` (already filtered to `*.yaml`/`*.yml` under the
/// source's path, in path order): Namespaces first, then the rest in file order.
/// Every object gets the source's namespace when it names none, and the
/// annotations that record the source and the commit.
pub fn parse(files: &[SourceFile], source: &SourceRef<'_>) -> Result<Vec<Manifest>, Invalid> {
    let mut manifests = Vec::new();
    for file in files {
        for (line, text) in documents(&file.content) {
            let value: Value = serde_saphyr::from_str(text).map_err(|e| Invalid::Yaml {
                file: file.path.clone(),
                line: line + e.location().map_or(0, |l| l.line().saturating_sub(1) as usize),
                message: first_line(&e.to_string()),
            })?;
            if value.is_null() {
                continue; // a document of comments only
            }
            manifests.push(object(&file.path, line, value, source)?);
        }
    }
    check_namespaces(&manifests, source.namespace)?;
    check_duplicates(&manifests)?;
    manifests.sort_by_key(|m| m.kind != Kind::Namespace);
    Ok(manifests)
}

/// Who applies, and from which commit.
#[derive(Clone, Copy, Debug)]
pub struct SourceRef<'a> {
    /// The GitSource's namespace.
    pub namespace: &'a str,
    /// The GitSource's name.
    pub name: &'a str,
    /// The commit being applied.
    pub commit: &'a str,
    /// The pull request that merged it, when known.
    pub pull_request: Option<i64>,
}

impl SourceRef<'_> {
    /// The value of [`GIT_SOURCE_ANNOTATION`].
    pub fn annotation(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn object(file: &str, line: usize, value: Value, source: &SourceRef<'_>) -> Result<Manifest, Invalid> {
    let not_an_object = |message: &str| Invalid::NotAnObject {
        file: file.to_string(),
        line,
        message: message.to_string(),
    };
    if !value.is_object() {
        return Err(not_an_object("the document is not a mapping"));
    }
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind_name) = (text("apiVersion"), text("kind"));
    if api_version.is_empty() || kind_name.is_empty() {
        return Err(not_an_object("apiVersion and kind are required"));
    }
    let kind = Kind::of(&api_version, &kind_name).ok_or_else(|| Invalid::Kind {
        file: file.to_string(),
        line,
        api_version: api_version.clone(),
        kind: kind_name.clone(),
    })?;
    let mut object: DynamicObject =
        serde_json::from_value(value).map_err(|e| not_an_object(&first_line(&e.to_string())))?;
    if object.metadata.name.as_deref().unwrap_or_default().is_empty() {
        return Err(not_an_object(
            "metadata.name is required (generateName cannot be applied)",
        ));
    }
    if kind.namespaced() {
        object
            .metadata
            .namespace
            .get_or_insert_with(|| source.namespace.to_string());
    } else {
        // A cluster-scoped object's namespace means nothing (the apiserver
        // ignores it), so it is dropped rather than refused.
        object.metadata.namespace = None;
    }
    let annotations = object.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(GIT_SOURCE_ANNOTATION.into(), source.annotation());
    annotations.insert(GIT_COMMIT_ANNOTATION.into(), source.commit.to_string());
    if let Some(number) = source.pull_request {
        annotations.insert(PULL_REQUEST_ANNOTATION.into(), number.to_string());
    }
    Ok(Manifest {
        file: file.to_string(),
        line,
        kind,
        object,
    })
}

fn check_namespaces(manifests: &[Manifest], source_namespace: &str) -> Result<(), Invalid> {
    let declared: BTreeSet<&str> = manifests
        .iter()
        .filter(|m| m.kind == Kind::Namespace)
        .map(Manifest::name)
        .collect();
    for m in manifests {
        if m.kind == Kind::Namespace && m.name() == source_namespace {
            return Err(Invalid::OwnNamespace {
                file: m.file.clone(),
                line: m.line,
                namespace: m.name().to_string(),
            });
        }
        if let Some(ns) = m.namespace()
            && ns != source_namespace
            && !declared.contains(ns)
        {
            return Err(Invalid::Namespace {
                file: m.file.clone(),
                line: m.line,
                namespace: ns.to_string(),
                source_namespace: source_namespace.to_string(),
            });
        }
    }
    Ok(())
}

fn check_duplicates(manifests: &[Manifest]) -> Result<(), Invalid> {
    let mut seen: BTreeMap<InventoryEntry, String> = BTreeMap::new();
    for m in manifests {
        if let Some(first) = seen.insert(m.entry(), m.origin()) {
            let entry = m.entry();
            return Err(Invalid::Duplicate {
                first,
                second: m.origin(),
                object: describe(&entry),
            });
        }
    }
    Ok(())
}

/// `App notes/web`, `Namespace shop`: an inventory entry for messages.
pub fn describe(entry: &InventoryEntry) -> String {
    if entry.namespace.is_empty() {
        format!("{} {}", entry.kind, entry.name)
    } else {
        format!("{} {}/{}", entry.kind, entry.namespace, entry.name)
    }
}

/// The YAML documents of `text` with the line each starts on (1-based).
///
/// A document marker (`---`) or end marker (`...`) at the start of a line
/// always ends a document in YAML, even inside a block scalar, so splitting on
/// them is exact; each document is then parsed on its own to know its line.
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start_line = 1;
    let mut start_byte = 0;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        let end = bare == "...";
        if marker || end {
            out.push((start_line, &text[start_byte..offset]));
            start_line = index + 2;
            start_byte = offset + line.len();
            if marker && bare.len() > 3 {
                // `--- {inline: document}`: the document starts on this line.
                start_line = index + 1;
                start_byte = offset + 4;
            }
        }
        offset += line.len();
    }
    out.push((start_line, &text[start_byte..]));
    out.retain(|(_, doc)| !doc.trim().is_empty());
    out
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: SourceRef<'static> = SourceRef {
        namespace: "team",
        name: "apps",
        commit: "0123456789abcdef0123456789abcdef01234567",
        pull_request: Some(7),
    };

    fn file(path: &str, content: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            content: content.into(),
        }
    }

    const APP: &str = "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata:\n  name: notes\nspec:\n  image: notes:1\n  port: 8080\n";

    #[test]
    fn documents_keep_their_starting_lines() {
        let text = "# header\n---\na: 1\n---\n\n---\nb: |\n  text\n...\n--- {c: 3}\n";
        let docs = documents(text);
        assert_eq!(
            docs,
            vec![
                (1, "# header\n"),
                (3, "a: 1\n"),
                (7, "b: |\n  text\n"),
                (10, "{c: 3}\n")
            ]
        );
    }

    #[test]
    fn objects_get_the_source_namespace_and_annotations_and_namespaces_come_first() {
        let files = [
            file("deploy/a.yaml", APP),
            file(
                "deploy/b.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\napiVersion: winky.dev/v1alpha1\nkind: Rule\nmetadata:\n  name: r\n  namespace: shop\nspec:\n  app: shop\n  rules: []\n",
            ),
        ];
        let manifests = parse(&files, &SOURCE).unwrap();
        let order: Vec<_> = manifests.iter().map(|m| (m.kind, m.origin())).collect();
        assert_eq!(
            order,
            [
                (Kind::Namespace, "deploy/b.yaml:1".to_string()),
                (Kind::App, "deploy/a.yaml:1".to_string()),
                (Kind::Rule, "deploy/b.yaml:6".to_string()),
            ]
        );
        let app = &manifests[1];
        assert_eq!(app.namespace(), Some("team"));
        let annotations = app.object.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[GIT_SOURCE_ANNOTATION], "team/apps");
        assert_eq!(annotations[GIT_COMMIT_ANNOTATION], SOURCE.commit);
        assert_eq!(annotations[PULL_REQUEST_ANNOTATION], "7");
        assert_eq!(manifests[0].namespace(), None);
        assert_eq!(
            app.entry(),
            InventoryEntry {
                api_version: "winky.dev/v1alpha1".into(),
                kind: "App".into(),
                namespace: "team".into(),
                name: "notes".into()
            }
        );
    }

    #[test]
    fn a_foreign_kind_refuses_the_commit_naming_file_line_and_kind() {
        let files = [
            file("deploy/a.yaml", APP),
            file(
                "deploy/z.yaml",
                "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: admin\n",
            ),
        ];
        let err = parse(&files, &SOURCE).unwrap_err();
        assert_eq!(err.reason(), "KindNotAllowed");
        let message = err.to_string();
        assert!(
            message.starts_with("deploy/z.yaml:2: ClusterRoleBinding (rbac.authorization.k8s.io/v1)"),
            "{message}"
        );
    }

    #[test]
    fn winky_kinds_that_are_not_for_repositories_are_refused() {
        for kind in ["PromotionPolicy", "Promotion", "GitSource"] {
            let text = format!("apiVersion: winky.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: x\n");
            let err = parse(&[file("p.yaml", &text)], &SOURCE).unwrap_err();
            assert_eq!(err.reason(), "KindNotAllowed", "{kind}");
        }
    }

    #[test]
    fn yaml_errors_name_the_line_in_the_file() {
        let files = [file(
            "deploy/a.yaml",
            &format!("{APP}---\nkind: App\nmetadata: [unclosed\n"),
        )];
        let err = parse(&files, &SOURCE).unwrap_err();
        let Invalid::Yaml { file, line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(file, "deploy/a.yaml");
        assert!((8..=10).contains(line), "line {line}: {err}");
    }

    #[test]
    fn namespaces_must_be_the_sources_own_or_declared() {
        let foreign = APP.replace("name: notes\n", "name: notes\n  namespace: kube-system\n");
        let err = parse(&[file("a.yaml", &foreign)], &SOURCE).unwrap_err();
        assert_eq!(err.reason(), "NamespaceNotAllowed");
        assert!(err.to_string().contains("kube-system"), "{err}");
        let own = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n";
        let err = parse(&[file("ns.yaml", own)], &SOURCE).unwrap_err();
        assert!(matches!(err, Invalid::OwnNamespace { .. }), "{err:?}");
    }

    #[test]
    fn duplicates_and_nameless_objects_are_refused() {
        let err = parse(&[file("a.yaml", APP), file("b.yaml", APP)], &SOURCE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.yaml:1: App team/notes is declared twice (first at a.yaml:1)"
        );
        let nameless = APP.replace("  name: notes\n", "  generateName: notes-\n");
        let err = parse(&[file("a.yaml", &nameless)], &SOURCE).unwrap_err();
        assert!(err.to_string().contains("metadata.name is required"), "{err}");
        let err = parse(&[file("a.yaml", "- 1\n- 2\n")], &SOURCE).unwrap_err();
        assert!(err.to_string().contains("not a mapping"), "{err}");
    }

    #[test]
    fn comment_only_files_yield_nothing() {
        let manifests = parse(&[file("a.yaml", "# nothing yet\n---\n")], &SOURCE).unwrap();
        assert!(manifests.is_empty());
    }
}
