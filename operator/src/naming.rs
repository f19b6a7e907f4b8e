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
//!   App children also: winky.dev/stage=<stage>, winky.dev/app-namespace=<App's namespace>
//! ```
//!
//! **Stages.** A stage runs in the namespace its policy's template names
//! ([`stage_namespace`]). In each namespace the policy's last stage there
//! names its children `<app>`, and every earlier stage there
//! `<app>-<stage>` ([`stage_children`]): with `preview` in `{app.namespace}-preview`
//! and `staging` and `production` in the App's own namespace, they are
//! `notes` (preview), `notes-staging` and `notes` (production). The stage
//! label is part of every selector, so no stage ever selects another's pods.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use winky_crds::keys::{
    APP_LABEL, APP_NAMESPACE_LABEL, MANAGED_BY_LABEL, NAME_LABEL, OWNER_KIND_LABEL, STAGE_LABEL,
};

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

/// Labels on every child of the App `app` of `app_namespace` in `stage`:
/// [`app_labels`] and `winky.dev/app-namespace`, which says whose a child is
/// where no owner reference can (in another namespace).
pub fn stage_labels(app: &str, app_namespace: &str, stage: &str) -> BTreeMap<String, String> {
    let mut labels = app_labels(app, stage);
    labels.insert(APP_NAMESPACE_LABEL.to_string(), app_namespace.to_string());
    labels
}

/// The label selector of the App children the operator watches: all of
/// them ([`managed_selector`]), or, when it watches the one namespace
/// `namespace`, those of its Apps, wherever their stages run.
pub fn app_children_selector(namespace: Option<&str>) -> String {
    let all = managed_selector(OwnerKind::App);
    match namespace {
        Some(ns) => format!("{all},{APP_NAMESPACE_LABEL}={ns}"),
        None => all,
    }
}

/// The namespace of a stage: its policy's `template` with `{app.namespace}`
/// and `{app.name}` substituted; the App's own namespace without one.
pub fn stage_namespace(template: Option<&str>, app_namespace: &str, app: &str) -> String {
    match template {
        None => app_namespace.to_string(),
        Some(t) => t
            .replace("{app.namespace}", app_namespace)
            .replace("{app.name}", app),
    }
}

/// Whether `name` can name a Namespace (an RFC 1123 label).
pub fn is_namespace_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Base name of the children of the App `app` in each of `stages` (stage
/// name and namespace, in policy order): `<app>` for the last stage in its
/// namespace, `<app>-<stage>` for every earlier one there.
pub fn stage_children(app: &str, stages: &[(&str, &str)]) -> Vec<String> {
    stages
        .iter()
        .enumerate()
        .map(|(i, (stage, namespace))| {
            let later_in_namespace = stages[i + 1..].iter().any(|(_, ns)| ns == namespace);
            if later_in_namespace {
                format!("{app}-{stage}")
            } else {
                app.to_string()
            }
        })
        .collect()
}

/// The value of `winky.dev/stage-of` on a stage Namespace created for the App
/// `app` of `app_namespace`: `<namespace>.<app>`, or, when that is longer than
/// a label value may be (63), its first 52 characters and a hash of the whole.
pub fn stage_of(app_namespace: &str, app: &str) -> String {
    let full = format!("{app_namespace}.{app}");
    if full.len() <= 63 {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let head = full[..52].trim_end_matches(['.', '-']);
    format!("{head}-{hash}")
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

    #[test]
    fn the_last_stage_in_a_namespace_takes_the_apps_name() {
        // The default policy: each stage in a namespace of its own.
        let own = [
            ("preview", "n-preview"),
            ("staging", "n-staging"),
            ("production", "n"),
        ];
        assert_eq!(stage_children("notes", &own), ["notes", "notes", "notes"]);
        // Two stages in the App's namespace, one elsewhere.
        let shared = [("preview", "n-preview"), ("staging", "n"), ("production", "n")];
        assert_eq!(
            stage_children("notes", &shared),
            ["notes", "notes-staging", "notes"]
        );
        // Every stage in one namespace: only the last is plain.
        let one = [("a", "x"), ("b", "x"), ("c", "x")];
        assert_eq!(stage_children("shop", &one), ["shop-a", "shop-b", "shop"]);
        assert!(stage_children("shop", &[]).is_empty());
    }

    #[test]
    fn stages_never_select_each_others_pods() {
        let preview = stage_labels("notes", "n", "preview");
        let production = stage_labels("notes", "n", "production");
        let matches = |labels: &BTreeMap<String, String>, selector: &BTreeMap<String, String>| {
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        };
        assert!(matches(&preview, &app_selector("notes", "preview")));
        assert!(!matches(&preview, &app_selector("notes", "production")));
        assert!(!matches(&production, &app_selector("notes", "preview")));
        assert_eq!(preview["winky.dev/app-namespace"], "n");
        // A Function still reaches its App's pods in every stage.
        assert!(matches(&preview, &app_pods("notes")) && matches(&production, &app_pods("notes")));
    }

    #[test]
    fn stage_namespaces_come_from_the_template() {
        assert_eq!(stage_namespace(None, "team", "notes"), "team");
        assert_eq!(
            stage_namespace(Some("{app.namespace}-preview"), "team", "notes"),
            "team-preview"
        );
        assert_eq!(
            stage_namespace(Some("{app.name}-{app.namespace}"), "team", "notes"),
            "notes-team"
        );
        assert_eq!(stage_namespace(Some("shared"), "team", "notes"), "shared");
        assert!(is_namespace_name("team-preview"));
        assert!(!is_namespace_name("-team"));
        assert!(!is_namespace_name("team-"));
        assert!(!is_namespace_name(""));
        assert!(!is_namespace_name(&"a".repeat(64)));
        assert_eq!(
            app_children_selector(Some("team")),
            "app.kubernetes.io/managed-by=winky-operator,winky.dev/owner-kind=App,winky.dev/app-namespace=team"
        );
        assert_eq!(app_children_selector(None), managed_selector(OwnerKind::App));
    }

    #[test]
    fn the_stage_of_label_fits_a_label_value() {
        assert_eq!(stage_of("team", "notes"), "team.notes");
        let long = stage_of(&"n".repeat(40), &"a".repeat(40));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, stage_of(&"n".repeat(40), &"b".repeat(40)));
        assert!(long.chars().last().unwrap().is_ascii_alphanumeric());
    }
}
