//! An App with its Functions and Rules, read from manifest files: every
//! document parsed on its own (an error names its file and line, and the
//! rest still load) and every Winky object validated offline against the
//! CRDs' schemas and CEL rules (see [`crate::validate`]) before any check
//! runs — what the cluster would refuse never gets as far as the emulator.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use sha2::{Digest, Sha256};
use winky_crds::{App, Function, Rule};

use crate::report::{Check, CheckKind};
use crate::validate;

/// What the emulator checks together.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub app: App,
    pub functions: Vec<Function>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    // `error`, not `source`: the text is in the message once, not again as
    // the cause.
    #[error("reading {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{name}: {message}")]
    Invalid { name: String, message: String },
    #[error("no App in {0} (looked at every .yaml and .yml file below it)")]
    NoApp(PathBuf),
    #[error("{dir} holds several Apps ({names}); choose one with --app")]
    SeveralApps { dir: PathBuf, names: String },
    #[error("no App named {name:?} in {dir} ({found})")]
    AppNotFound {
        name: String,
        dir: PathBuf,
        /// `found: notes, shop`, or that there is none.
        found: String,
    },
}

/// A stable id of the App's spec: equal specs give equal ids. The operator
/// reports the same id in the App's status, so a report and a revision match.
pub fn revision(app: &App) -> String {
    // Struct fields serialize in declaration order and maps are BTreeMaps, so
    // the JSON is canonical for a given spec.
    let bytes = serde_json::to_vec(&app.spec).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("r-{hex}")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BundleError> {
    let entries = std::fs::read_dir(dir).map_err(|error| BundleError::Read {
        path: dir.to_path_buf(),
        error,
    })?;
    for entry in entries {
        let path = entry
            .map_err(|error| BundleError::Read {
                path: dir.to_path_buf(),
                error,
            })?
            .path();
        if path.is_dir() {
            yaml_files(&path, out)?;
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(path);
        }
    }
    Ok(())
}

/// The documents of a YAML stream, each as text that keeps its line numbers
/// (the lines before it are left blank), with the line where it starts.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    let mut content = false;
    for (index, line) in text.lines().enumerate() {
        let is_separator = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_separator || is_end {
            if content {
                documents.push((first_line, std::mem::take(&mut current)));
            }
            current = "\n".repeat(index + 1);
            content = false;
            if is_separator && line.len() > 3 && !line[3..].trim().is_empty() {
                // `--- {a: 1}`: the document starts on the separator's line.
                current.pop();
                current.push_str(&" ".repeat(4));
                current.push_str(&line[4..]);
                current.push('\n');
                first_line = index + 1;
                content = true;
            }
            continue;
        }
        let blank = line.trim().is_empty() || line.trim_start().starts_with('#');
        if !blank && !content {
            first_line = index + 1;
            content = true;
        }
        current.push_str(line);
        current.push('\n');
    }
    if content {
        documents.push((first_line, current));
    }
    documents
}

/// Every object read from manifest files, each validated: the valid Apps,
/// Functions and Rules, and a check for every Winky object and for every
/// file or document that could not be read.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    /// The file or directory they came from.
    pub path: PathBuf,
    pub apps: Vec<App>,
    pub functions: Vec<Function>,
    pub rules: Vec<Rule>,
    /// One `validation` check per Winky object (passed or not) and one
    /// failed check per file or document that does not parse.
    pub checks: Vec<Check>,
    /// CEL rules the offline evaluator could not run; the apiserver will.
    pub unchecked: Vec<String>,
}

/// What the manifests let the emulator check.
#[derive(Clone, Debug)]
pub enum Target {
    /// An App with its Functions and Rules.
    App(Box<Bundle>),
    /// Rules (and Functions) without their App: their tests run on their
    /// own, as in Firebase's rules emulator. `app` names whose they are.
    WithoutApp {
        app: String,
        functions: Vec<Function>,
        rules: Vec<Rule>,
    },
}

impl Manifests {
    /// Reads every document of every `.yaml`/`.yml` file under `path` (a
    /// file, or a directory read recursively). Only an unreadable `path`
    /// is an error: a file or document that does not parse, and an object
    /// the cluster would refuse, become failed checks and the others load.
    pub fn load(path: &Path) -> Result<Self, BundleError> {
        let mut files = Vec::new();
        if path.is_dir() {
            yaml_files(path, &mut files)?;
        } else {
            std::fs::metadata(path).map_err(|error| BundleError::Read {
                path: path.to_path_buf(),
                error,
            })?;
            files.push(path.to_path_buf());
        }
        files.sort();
        let mut manifests = Self {
            path: path.to_path_buf(),
            ..Self::default()
        };
        for file in &files {
            let started = Instant::now();
            match std::fs::read_to_string(file) {
                Ok(text) => manifests.add_file(file, &text),
                Err(error) => manifests.checks.push(Check::finished(
                    file.display().to_string(),
                    CheckKind::Validation,
                    started,
                    false,
                    format!("cannot read the file: {error}"),
                    "",
                )),
            }
        }
        Ok(manifests)
    }

    fn add_file(&mut self, file: &Path, text: &str) {
        for (line, document) in documents(text) {
            let started = Instant::now();
            let at = format!("{}:{line}", file.display());
            let fail = |name: String, message: String| {
                Check::finished(name, CheckKind::Validation, started, false, message, "")
            };
            let object: Value = match serde_saphyr::from_str(&document) {
                Ok(object) => object,
                Err(e) => {
                    // serde-saphyr's text starts with the line and column.
                    let text = e.to_string();
                    let message = format!(
                        "not valid YAML: {}",
                        first_line(&text).trim_start_matches("error: ")
                    );
                    self.checks.push(fail(at, message));
                    continue;
                }
            };
            let Some(validation) = validate::schemas().validate(&object) else {
                continue;
            };
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            let name = format!(
                "{at} {kind}/{}",
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            self.unchecked
                .extend(validation.unchecked.iter().map(|u| format!("{name}: {u}")));
            if !validation.passed() {
                let violations: Vec<String> = validation.violations.iter().map(ToString::to_string).collect();
                // One line per violation, as the apiserver lists them.
                self.checks.push(fail(name, violations.join("\n")));
                continue;
            }
            // The object as written: the typed structs fill in the same defaults.
            let typed = match kind.as_str() {
                "App" => serde_json::from_value(object).map(|a| self.apps.push(a)),
                "Function" => serde_json::from_value(object).map(|f| self.functions.push(f)),
                "Rule" => serde_json::from_value(object).map(|r| self.rules.push(r)),
                _ => Ok(()),
            };
            self.checks.push(match typed {
                Ok(()) => Check::finished(
                    name,
                    CheckKind::Validation,
                    started,
                    true,
                    format!("valid: the schema and CEL rules of {} hold", validation.resource),
                    "",
                ),
                Err(e) => fail(name, format!("{kind}: {e}")),
            });
        }
    }

    /// Whether every file parsed and every object is valid.
    pub fn valid(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// Picks the App `app`, or the only one; without an App, the Rules and
    /// Functions (of `app`, when named) are checked on their own.
    pub fn target(&self, app: Option<&str>) -> Result<Target, BundleError> {
        let names: Vec<String> = self
            .apps
            .iter()
            .map(|a| a.metadata.name.clone().unwrap_or_default())
            .collect();
        let chosen = match app {
            Some(name) => self
                .apps
                .iter()
                .find(|a| a.metadata.name.as_deref() == Some(name)),
            None if self.apps.len() > 1 => {
                return Err(BundleError::SeveralApps {
                    dir: self.path.clone(),
                    names: names.join(", "),
                });
            }
            None => self.apps.first(),
        };
        if let Some(chosen) = chosen {
            let name = chosen.metadata.name.clone().unwrap_or_default();
            return Ok(Target::App(Box::new(Bundle {
                app: chosen.clone(),
                functions: self
                    .functions
                    .iter()
                    .filter(|f| f.spec.app == name)
                    .cloned()
                    .collect(),
                rules: self
                    .rules
                    .iter()
                    .filter(|r| r.spec.app == name)
                    .cloned()
                    .collect(),
            })));
        }
        let belongs = |owner: &str| app.is_none_or(|name| name == owner);
        let functions: Vec<Function> = self
            .functions
            .iter()
            .filter(|f| belongs(&f.spec.app))
            .cloned()
            .collect();
        let rules: Vec<Rule> = self
            .rules
            .iter()
            .filter(|r| belongs(&r.spec.app))
            .cloned()
            .collect();
        if functions.is_empty() && rules.is_empty() && self.valid() {
            return Err(match app {
                None => BundleError::NoApp(self.path.clone()),
                Some(name) => BundleError::AppNotFound {
                    name: name.into(),
                    dir: self.path.clone(),
                    found: if names.is_empty() {
                        "there is no App, Function or Rule of it".into()
                    } else {
                        format!("found: {}", names.join(", "))
                    },
                },
            });
        }
        let mut owners: Vec<&str> = rules
            .iter()
            .map(|r| r.spec.app.as_str())
            .chain(functions.iter().map(|f| f.spec.app.as_str()))
            .chain(app)
            .collect();
        owners.sort();
        owners.dedup();
        Ok(Target::WithoutApp {
            app: owners.join(", "),
            functions,
            rules,
        })
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

impl Bundle {
    /// Reads every App, Function and Rule under `path` (a file or a
    /// directory, recursively) and picks the App `app`, or the only one.
    /// Strict: a document that does not parse or an invalid object is an
    /// error (`winky emulate` reports them as checks instead, see
    /// [`Manifests`]).
    pub fn load(path: &Path, app: Option<&str>) -> Result<Self, BundleError> {
        let manifests = Manifests::load(path)?;
        if let Some(failed) = manifests.checks.iter().find(|c| !c.passed) {
            return Err(BundleError::Invalid {
                name: failed.name.clone(),
                message: failed.message.clone(),
            });
        }
        match manifests.target(app)? {
            Target::App(bundle) => Ok(*bundle),
            Target::WithoutApp { .. } => Err(match app {
                None => BundleError::NoApp(path.into()),
                Some(name) => BundleError::AppNotFound {
                    name: name.into(),
                    dir: path.into(),
                    found: "there is no App of that name".into(),
                },
            }),
        }
    }

    pub fn name(&self) -> String {
        self.app.metadata.name.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str =
        "apiVersion: winky.dev/v1alpha1\nkind: App\nmetadata: {name: NAME}\nspec: {image: x:1, port: 8080}\n";

    #[test]
    fn loads_an_app_with_its_functions_and_rules_from_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("notes/functions")).unwrap();
        std::fs::write(
            dir.path().join("notes/app.yaml"),
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: notes}}\n---\n{}",
                APP.replace("NAME", "notes")
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("notes/functions/f.yml"),
            "apiVersion: winky.dev/v1alpha1\nkind: Function\nmetadata: {name: f}\nspec: {app: notes, image: f:1, trigger: {http: {path: /f}}}\n---\n\
             apiVersion: winky.dev/v1alpha1\nkind: Function\nmetadata: {name: g}\nspec: {app: other, image: g:1, trigger: {http: {path: /g}}}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes/README.md"), "not yaml").unwrap();
        let bundle = Bundle::load(dir.path(), None).unwrap();
        assert_eq!(bundle.name(), "notes");
        assert_eq!(bundle.functions.len(), 1, "only the notes functions");
        assert!(revision(&bundle.app).starts_with("r-"));
        let mut changed = bundle.app.clone();
        assert_eq!(
            revision(&changed),
            revision(&bundle.app),
            "equal specs, equal ids"
        );
        changed.spec.replicas += 1;
        assert_ne!(
            revision(&changed),
            revision(&bundle.app),
            "another spec, another id"
        );

        std::fs::write(dir.path().join("shop.yaml"), APP.replace("NAME", "shop")).unwrap();
        let err = Bundle::load(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("several Apps (notes, shop)"), "{err}");
        assert_eq!(Bundle::load(dir.path(), Some("shop")).unwrap().name(), "shop");
        assert!(
            Bundle::load(dir.path(), Some("chat"))
                .unwrap_err()
                .to_string()
                .contains("no App named \"chat\"")
        );
    }

    #[test]
    fn a_broken_manifest_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            "apiVersion: winky.dev/v1alpha1\nkind: App\nspec: {port: x}\n",
        )
        .unwrap();
        let err = Bundle::load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("bad.yaml") && err.contains("App"), "{err}");
    }

    #[test]
    fn a_parse_error_names_file_and_line_and_the_other_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.yaml"), APP.replace("NAME", "notes")).unwrap();
        // The second document of this file is broken at line 7; the first loads.
        std::fs::write(
            dir.path().join("rules.yaml"),
            "# rules\napiVersion: winky.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\n\
             spec: {app: notes, rules: [{match: '/n/{id}', allow: {read: 'true'}}]}\n---\n\
             spec: [unclosed\n",
        )
        .unwrap();
        let manifests = Manifests::load(dir.path()).unwrap();
        assert!(!manifests.valid());
        let failed: Vec<&Check> = manifests.checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(failed[0].name.ends_with("rules.yaml:7"), "{}", failed[0].name);
        assert!(
            failed[0].message.starts_with("not valid YAML: line 7 column 7: "),
            "{}",
            failed[0].message
        );
        assert_eq!(manifests.apps.len(), 1);
        assert_eq!(
            manifests.rules.len(),
            1,
            "the valid document of the broken file loads"
        );
        let passed: Vec<&str> = manifests
            .checks
            .iter()
            .filter(|c| c.passed)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(passed.len(), 2, "{passed:?}");
        assert!(
            passed.iter().any(|n| n.ends_with("rules.yaml:2 Rule/r")),
            "{passed:?}"
        );
        // Strict loading (the bench's) refuses the broken file by name.
        let err = Bundle::load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("rules.yaml:7"), "{err}");
    }

    #[test]
    fn invalid_objects_are_failed_checks_and_do_not_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("bad.yaml"),
            format!(
                "{}---\napiVersion: winky.dev/v1alpha1\nkind: Function\nmetadata: {{name: f}}\n\
                 spec: {{app: notes, image: 'f:1', memory: 10Gi, trigger: {{schedule: {{cron: every day}}}}}}\n",
                APP.replace("NAME", "notes").replace("port: 8080", "port: 8080, replicas: -3")
            ),
        )
        .unwrap();
        let manifests = Manifests::load(dir.path()).unwrap();
        let failed: Vec<&Check> = manifests.checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 2, "{failed:#?}");
        assert!(failed.iter().all(|c| c.kind == CheckKind::Validation));
        assert!(
            failed[0].name.ends_with("bad.yaml:1 App/notes"),
            "{}",
            failed[0].name
        );
        assert!(
            failed[0].message.contains(
                "spec.replicas: Invalid value: -3: spec.replicas in body should be greater than or equal to 0"
            ),
            "{}",
            failed[0].message
        );
        assert!(
            failed[1].name.ends_with("bad.yaml:6 Function/f"),
            "{}",
            failed[1].name
        );
        for expected in [
            "spec.memory: Invalid value: \"string\": memory must be a quantity between 64Mi and 4Gi",
            "spec.trigger.schedule.cron: Invalid value: \"every day\"",
        ] {
            assert!(failed[1].message.contains(expected), "{}", failed[1].message);
        }
        assert!(manifests.apps.is_empty() && manifests.functions.is_empty());
    }

    #[test]
    fn rules_are_tested_without_an_app() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rules.yaml"),
            "apiVersion: winky.dev/v1alpha1\nkind: Rule\nmetadata: {name: r}\n\
             spec:\n  app: notes\n  rules: [{match: '/notes/{id}', allow: {read: request.auth != null}}]\n  \
             tests:\n  - {name: signed in, expect: allow, request: {auth: {uid: a}, method: get, path: /notes/1}}\n  \
             - {name: anonymous, expect: deny, request: {method: get, path: /notes/1}}\n",
        )
        .unwrap();
        let manifests = Manifests::load(dir.path()).unwrap();
        for app in [None, Some("notes")] {
            match manifests.target(app).unwrap() {
                Target::WithoutApp {
                    app,
                    rules,
                    functions,
                } => {
                    assert_eq!(app, "notes");
                    assert_eq!(rules.len(), 1);
                    assert!(functions.is_empty());
                }
                Target::App(_) => panic!("there is no App"),
            }
        }
        let err = manifests.target(Some("chat")).unwrap_err().to_string();
        assert!(!err.contains("found: )"), "{err}");
        assert!(err.contains("no App named \"chat\""), "{err}");
        let report = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(crate::emulate(&manifests, &manifests.target(None).unwrap(), None));
        assert!(report.passed, "{report}");
        let kinds: Vec<CheckKind> = report.checks.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [CheckKind::Validation, CheckKind::RuleTest, CheckKind::RuleTest]
        );
        assert_eq!(report.revision, "");
        assert!(
            report
                .to_string()
                .contains("app notes (no App in the manifests): 3 checks, 0 failed")
        );
    }

    #[test]
    fn an_unreadable_path_says_why_once() {
        let err = Manifests::load(Path::new("/nonexistent/winky")).unwrap_err();
        let text = err.to_string();
        assert_eq!(text.matches("No such file or directory").count(), 1, "{text}");
        assert!(
            std::error::Error::source(&err).is_none(),
            "the cause is in the message, not repeated as a source"
        );
    }

    #[test]
    fn documents_keep_their_line_numbers() {
        let docs = documents("# c\n---\na: 1\n---\n# only a comment\n---\nb: 2\nc: 3\n...\n");
        let starts: Vec<usize> = docs.iter().map(|(line, _)| *line).collect();
        assert_eq!(starts, [3, 7]);
        assert_eq!(docs[1].1.lines().nth(6), Some("b: 2"));
    }
}
