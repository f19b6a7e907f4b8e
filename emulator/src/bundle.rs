//! An App with its Functions and Rules, read from manifest files.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use winky_crds::{App, Function, Rule};

/// What the emulator checks together.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub app: App,
    pub functions: Vec<Function>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no App in {0} (looked at every .yaml and .yml file below it)")]
    NoApp(PathBuf),
    #[error("{dir} holds several Apps ({names}); choose one with --app")]
    SeveralApps { dir: PathBuf, names: String },
    #[error("no App named {name:?} in {dir} (found: {names})")]
    AppNotFound {
        name: String,
        dir: PathBuf,
        names: String,
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
    let entries = std::fs::read_dir(dir).map_err(|source| BundleError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let path = entry
            .map_err(|source| BundleError::Read {
                path: dir.to_path_buf(),
                source,
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

impl Bundle {
    /// Reads every App, Function and Rule under `path` (a file or a
    /// directory, recursively) and picks the App `app`, or the only one.
    pub fn load(path: &Path, app: Option<&str>) -> Result<Self, BundleError> {
        let mut files = Vec::new();
        if path.is_dir() {
            yaml_files(path, &mut files)?;
        } else {
            files.push(path.to_path_buf());
        }
        files.sort();
        let (mut apps, mut functions, mut rules) = (Vec::new(), Vec::new(), Vec::new());
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|source| BundleError::Read {
                path: file.clone(),
                source,
            })?;
            let parse = |message: String| BundleError::Parse {
                path: file.clone(),
                message,
            };
            let documents: Vec<serde_json::Value> =
                serde_saphyr::from_multiple(&text).map_err(|e| parse(e.to_string()))?;
            for document in documents {
                if document.get("apiVersion").and_then(|v| v.as_str()) != Some("winky.dev/v1alpha1") {
                    continue;
                }
                let kind = document
                    .get("kind")
                    .and_then(|k| k.as_str())
                    .unwrap_or_default()
                    .to_string();
                let invalid = |e: serde_json::Error| parse(format!("{kind}: {e}"));
                match kind.as_str() {
                    "App" => apps.push(serde_json::from_value::<App>(document).map_err(invalid)?),
                    "Function" => {
                        functions.push(serde_json::from_value::<Function>(document).map_err(invalid)?)
                    }
                    "Rule" => rules.push(serde_json::from_value::<Rule>(document).map_err(invalid)?),
                    _ => {}
                }
            }
        }
        let names = || {
            apps.iter()
                .map(|a: &App| a.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let chosen = match app {
            Some(name) => apps
                .iter()
                .find(|a| a.metadata.name.as_deref() == Some(name))
                .cloned()
                .ok_or_else(|| BundleError::AppNotFound {
                    name: name.into(),
                    dir: path.into(),
                    names: names(),
                })?,
            None => match apps.len() {
                0 => return Err(BundleError::NoApp(path.into())),
                1 => apps[0].clone(),
                _ => {
                    return Err(BundleError::SeveralApps {
                        dir: path.into(),
                        names: names(),
                    });
                }
            },
        };
        let name = chosen.metadata.name.clone().unwrap_or_default();
        functions.retain(|f| f.spec.app == name);
        rules.retain(|r| r.spec.app == name);
        Ok(Self {
            app: chosen,
            functions,
            rules,
        })
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
}
