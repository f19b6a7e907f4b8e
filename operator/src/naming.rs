//! Names and labels of what the operator creates: shared by the controller
//! that builds a child, the watches that select it, the pruning that must
//! recognise it, and the other controllers that find it (the Rule controller
//! publishes into the App's runtime ConfigMap; a Function's NetworkPolicy
//! selects its App's pods).
//!
//! ```text
//!   App notes (stage default)        Function resize (app notes)
//!     notes            Deployment, …   resize-fn        Deployment, …
//!     notes-runtime    ConfigMap
//!   labels: managed-by=winky-operator, winky.dev/owner-kind=App|Function,
//!           winky.dev/app=notes, app.kubernetes.io/name=<owner's name>
//! ```

use std::collections::BTreeMap;

use winky_crds::keys::{APP_LABEL, MANAGED_BY_LABEL, NAME_LABEL, OWNER_KIND_LABEL, STAGE_LABEL};

use crate::MANAGED_BY;

/// The kind whose controller owns a child: the value of
/// `winky.dev/owner-kind`. Each controller watches only its own kind's
/// children, so a change to a Function's Deployment never wakes the App
/// controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    /// Children of an App.
    App,
    /// Children of a Function.
    Function,
}

impl OwnerKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::App => "App",
            OwnerKind::Function => "Function",
        }
    }
}

/// The label selector of everything the operator creates for `owner`'s kind.
pub fn managed_selector(owner: OwnerKind) -> String {
    format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{OWNER_KIND_LABEL}={}",
        owner.as_str()
    )
}

/// Name of the runtime ConfigMap of the App `app`.
pub fn runtime_config_map(app: &str) -> String {
    format!("{app}-runtime")
}

/// Name of every child of the Function `function`: its name with `-fn`, so it
/// never collides with its App's children.
pub fn function_child(function: &str) -> String {
    format!("{function}-fn")
}

/// The labels that say the operator made an object for a child of
/// `owner`'s kind belonging to the App `app`: what a prune checks before it
/// deletes anything.
pub fn owned_by(owner: OwnerKind, app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), app.to_string()),
        (OWNER_KIND_LABEL.to_string(), owner.as_str().to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ])
}

/// Labels on every child of the `owner`-kind object `name` of the App `app`:
/// [`owned_by`] and `app.kubernetes.io/name`.
pub fn child_labels(owner: OwnerKind, name: &str, app: &str) -> BTreeMap<String, String> {
    let mut labels = owned_by(owner, app);
    labels.insert(NAME_LABEL.to_string(), name.to_string());
    labels
}

/// Labels on every child of the App `app` in `stage`.
pub fn app_labels(app: &str, stage: &str) -> BTreeMap<String, String> {
    let mut labels = child_labels(OwnerKind::App, app, app);
    labels.insert(STAGE_LABEL.to_string(), stage.to_string());
    labels
}

/// The label selector of the pods of the App `app` in `stage` (immutable
/// once a Deployment exists).
pub fn app_selector(app: &str, stage: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), app.to_string()),
        (STAGE_LABEL.to_string(), stage.to_string()),
    ])
}

/// The pods of the App `app`, in any stage and none of its Functions': whom
/// an HTTP Function admits, and what a document Function subscribes to.
pub fn app_pods(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), app.to_string()),
        (OWNER_KIND_LABEL.to_string(), OwnerKind::App.as_str().to_string()),
    ])
}

/// Labels on every child of the Function `function` of the App `app`. No
/// stage label: the App's pod selector is its app and stage labels, and a
/// function pod carrying both would be counted (and served) as one of the
/// App's pods.
pub fn function_labels(function: &str, app: &str) -> BTreeMap<String, String> {
    child_labels(OwnerKind::Function, function, app)
}

/// The label selector of the pods of the Function `function`.
pub fn function_selector(function: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), function.to_string()),
        (
            OWNER_KIND_LABEL.to_string(),
            OwnerKind::Function.as_str().to_string(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apps_children_and_its_functions_never_match_each_others_selectors() {
        let app = app_labels("notes", "default");
        let function = function_labels("resize", "notes");
        let matches = |labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>| {
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        assert!(matches(&app, &app_selector("notes", "default")));
        assert!(matches(&app, &app_pods("notes")));
        assert!(matches(&app, &owned_by(OwnerKind::App, "notes")));
        assert!(!matches(&function, &app_selector("notes", "default")));
        assert!(!matches(&function, &app_pods("notes")));
        assert!(matches(&function, &function_selector("resize")));
        assert!(!matches(&app, &function_selector("notes")));
        assert_eq!(
            managed_selector(OwnerKind::Function),
            "app.kubernetes.io/managed-by=winky-operator,winky.dev/owner-kind=Function"
        );
        assert_eq!(runtime_config_map("notes"), "notes-runtime");
        assert_eq!(function_child("resize"), "resize-fn");
    }
}
