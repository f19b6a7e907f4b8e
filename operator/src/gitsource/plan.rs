//! The plan of a pull request: what merging it would do to the cluster,
//! posted as one comment that is updated with every push to it.
//!
//! The pull request's head is fetched read-only (it is never applied), read
//! and dry-run like a merged commit; each object is compared with what the
//! cluster holds: created, changed (which fields, from what to what) or
//! unchanged, and what would be pruned.

use std::collections::BTreeSet;

use kube::core::DynamicObject;
use kube::{Api, Client};
use serde_json::Value;
use winky_crds::gitsource::InventoryEntry;
use winky_crds::keys::GIT_COMMIT_ANNOTATION;

use super::manifests::{Manifest, SourceRef, describe};
use super::status::short;
use super::sync::{self, SyncError};

/// Marks the plan comment, so it is found and updated.
pub const PLAN_MARKER: &str = "<!-- winky:plan -->";
/// The longest value shown in a changed field.
const SHOWN: usize = 60;

/// What merging would do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The commit planned.
    pub commit: String,
    /// `(object, origin)` of the objects it would create.
    pub created: Vec<(String, String)>,
    /// `(object, origin, fields)` of the objects it would change.
    pub changed: Vec<(String, String, Vec<String>)>,
    /// How many objects it leaves as they are.
    pub unchanged: usize,
    /// The objects it would prune.
    pub pruned: Vec<String>,
}

/// Plans `manifests` (the pull request's head, `source.commit`) against the
/// cluster and the source's `previous` inventory. A dry run the apiserver
/// refuses is the error: the merge would be refused.
pub async fn plan(
    client: &Client,
    manifests: &[Manifest],
    source: &SourceRef<'_>,
    previous: &[InventoryEntry],
    prune: bool,
) -> Result<Plan, SyncError> {
    sync::dry_run(client, manifests, source).await?;
    let mut plan = Plan {
        commit: source.commit.to_string(),
        created: Vec::new(),
        changed: Vec::new(),
        unchanged: 0,
        pruned: Vec::new(),
    };
    for m in manifests {
        let resource = m.kind.api_resource();
        let api: Api<DynamicObject> = match m.namespace() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let current = api.get_opt(m.name()).await.map_err(|e| SyncError::Api {
            action: "reading",
            object: describe(&m.entry()),
            source: e,
        })?;
        let object = describe(&m.entry());
        match current {
            None => plan.created.push((object, m.origin())),
            Some(current) => {
                let desired = serde_json::to_value(&m.object).unwrap_or(Value::Null);
                let current = serde_json::to_value(&current).unwrap_or(Value::Null);
                let fields = changed_fields(&desired, &current);
                if fields.is_empty() {
                    plan.unchanged += 1;
                } else {
                    plan.changed.push((object, m.origin(), fields));
                }
            }
        }
    }
    if prune {
        let kept: BTreeSet<InventoryEntry> = manifests.iter().map(Manifest::entry).collect();
        plan.pruned = previous
            .iter()
            .filter(|e| !kept.contains(e))
            .map(describe)
            .collect();
    }
    Ok(plan)
}

/// The fields `desired` sets to something else than `current` holds:
/// `spec.replicas: 2 → 3`. Only what the manifest sets is compared (what the
/// apiserver defaults is not a change); the commit annotation always
/// changes and is left out.
pub fn changed_fields(desired: &Value, current: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["metadata", "spec"] {
        if let Some(value) = desired.get(key) {
            walk(key, value, current.get(key), &mut out);
        }
    }
    out
}

fn walk(path: &str, desired: &Value, current: Option<&Value>, out: &mut Vec<String>) {
    const SKIPPED: [&str; 4] = [
        "metadata.name",
        "metadata.namespace",
        "metadata.managedFields",
        "metadata.resourceVersion",
    ];
    if SKIPPED.contains(&path) || path == format!("metadata.annotations.{GIT_COMMIT_ANNOTATION}") {
        return;
    }
    match desired {
        Value::Object(fields) => {
            for (key, value) in fields {
                walk(
                    &format!("{path}.{key}"),
                    value,
                    current.and_then(|c| c.get(key)),
                    out,
                );
            }
        }
        leaf => {
            if current != Some(leaf) {
                let was = current.map_or_else(|| "unset".to_string(), shown);
                out.push(format!("{path}: {was} → {}", shown(leaf)));
            }
        }
    }
}

fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= SHOWN {
        text
    } else {
        format!("{}…", text.chars().take(SHOWN).collect::<String>())
    }
}

/// The comment for `plan` (or for a merge that would be refused).
pub fn render(planned: &Result<Plan, String>, source: &str) -> String {
    match planned {
        Err(refusal) => format!(
            "### ❌ Winky plan: merging this would be refused\n\n{refusal}\n\nNothing of this pull request \
             would be applied by the GitSource `{source}`; what is applied now stays."
        ),
        Ok(plan) => {
            let mut rows = String::new();
            for (object, origin) in &plan.created {
                rows.push_str(&format!("| ➕ create | {object} | `{origin}` |\n"));
            }
            for (object, origin, fields) in &plan.changed {
                let fields: Vec<String> = fields.iter().map(|f| format!("`{f}`")).collect();
                rows.push_str(&format!(
                    "| ✏️ change | {object}: {} | `{origin}` |\n",
                    fields.join(", ")
                ));
            }
            for object in &plan.pruned {
                rows.push_str(&format!("| ➖ prune | {object} | |\n"));
            }
            let table = if rows.is_empty() {
                "Nothing in the cluster would change.\n".to_string()
            } else {
                format!("| | object | from |\n|---|---|---|\n{rows}")
            };
            format!(
                "### Winky plan for `{}`\n\nMerging this pull request, the GitSource `{source}` would apply \
                 (every object accepted by the apiserver's dry run):\n\n{table}\n{} object(s) unchanged. \
                 The head was fetched read-only: nothing of it is applied before it is merged.",
                short(&plan.commit),
                plan.unchanged
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_what_the_manifest_sets_differently_is_a_change() {
        let desired = json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App",
            "metadata": {"name": "notes", "namespace": "team",
                         "annotations": {"winky.dev/git-commit": "new", "winky.dev/gitsource": "team/apps"},
                         "labels": {"tier": "web"}},
            "spec": {"image": "notes:2", "port": 8080, "replicas": 3, "env": [{"name": "A", "value": "1"}]},
        });
        let current = json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App",
            "metadata": {"name": "notes", "namespace": "team", "resourceVersion": "42",
                         "annotations": {"winky.dev/git-commit": "old", "winky.dev/gitsource": "team/apps"}},
            "spec": {"image": "notes:1", "port": 8080, "replicas": 3, "policy": "default",
                     "env": [{"name": "A", "value": "0"}]},
            "status": {"observedGeneration": 4},
        });
        assert_eq!(
            changed_fields(&desired, &current),
            [
                "metadata.labels.tier: unset → \"web\"",
                "spec.env: [{\"name\":\"A\",\"value\":\"0\"}] → [{\"name\":\"A\",\"value\":\"1\"}]",
                "spec.image: \"notes:1\" → \"notes:2\"",
            ]
        );
        assert!(changed_fields(&current, &current).is_empty());
    }

    #[test]
    fn the_comment_lists_creations_changes_and_prunes_or_the_refusal() {
        let plan = Plan {
            commit: "0123456789abcdef".into(),
            created: vec![("App team/shop".into(), "deploy/shop.yaml:1".into())],
            changed: vec![(
                "App team/notes".into(),
                "deploy/notes.yaml:1".into(),
                vec!["spec.replicas: 2 → 3".into()],
            )],
            unchanged: 4,
            pruned: vec!["App team/old".into()],
        };
        let text = render(&Ok(plan), "team/apps");
        assert!(text.contains("### Winky plan for `0123456789ab`"), "{text}");
        assert!(
            text.contains("| ➕ create | App team/shop | `deploy/shop.yaml:1` |"),
            "{text}"
        );
        assert!(
            text.contains("| ✏️ change | App team/notes: `spec.replicas: 2 → 3` | `deploy/notes.yaml:1` |"),
            "{text}"
        );
        assert!(text.contains("| ➖ prune | App team/old | |"), "{text}");
        assert!(text.contains("4 object(s) unchanged"), "{text}");
        let refused = render(&Err("deploy/x.yaml:3: replicas must be ≥ 1".into()), "team/apps");
        assert!(
            refused.starts_with("### ❌ Winky plan: merging this would be refused"),
            "{refused}"
        );
        assert!(refused.contains("deploy/x.yaml:3"), "{refused}");
    }
}
