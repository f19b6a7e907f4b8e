//! Validation of an App against what the operator can provide: the checks a
//! schema cannot make because they depend on other objects or on how the
//! operator runs. Pure: everything it needs comes in through [`Inputs`].
//!
//! A valid App yields the [`Plan`] of its current spec in the `default`
//! stage: what runs when it follows no PromotionPolicy. With one, each
//! stage's plan comes from the snapshot of the revision promoted into it
//! ([`super::stages`]).

use std::borrow::Cow;

use winky_crds::App;
use winky_crds::app::AppSpec;

/// The stage an App runs in when it follows no PromotionPolicy: its own
/// namespace, its current spec.
pub const DEFAULT_STAGE: &str = "default";

/// Facts about the world that validation depends on, read from caches.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    /// Whether the PromotionPolicy the App names exists (`None`: it names none).
    pub policy_exists: Option<bool>,
    /// Whether the operator was started with a Vault address.
    pub vault_configured: bool,
}

/// Where the App's children go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Stage name, a label on every child.
    pub stage: String,
    /// Namespace of the children.
    pub namespace: String,
}

/// What runs in one stage of a validated App, ready to be built into children.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    /// The App.
    pub app: &'a App,
    /// Its name: `winky.dev/app` on every child.
    pub name: String,
    /// Its namespace: `winky.dev/app-namespace` on every child.
    pub app_namespace: String,
    /// Base name of the children ([`crate::naming::stage_children`]).
    pub child: String,
    /// Where its children go.
    pub target: Target,
    /// Revision id of `spec`: [`crate::revision::of`] the App's spec, or the
    /// id of the promoted revision.
    pub revision: String,
    /// The spec the children are built from: the App's own in the default
    /// stage, the snapshot of the revision promoted into a policy's stage.
    pub spec: Cow<'a, AppSpec>,
}

impl Plan<'_> {
    /// Whether the children go into the App's own namespace, where they name
    /// the App as their owner (an owner in another namespace cannot be).
    pub fn in_app_namespace(&self) -> bool {
        self.target.namespace == self.app_namespace
    }
}

/// Why an App cannot be satisfied. Each variant is a condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// `spec.policy` names a PromotionPolicy that does not exist.
    PolicyNotFound {
        /// The missing policy.
        policy: String,
    },
    /// A secret reads from Vault but the operator has no Vault.
    VaultNotConfigured {
        /// The variable that needs it.
        variable: String,
    },
    /// The object has no name or namespace.
    MissingMetadata,
    /// A stage's namespace template names no valid namespace for this App.
    StageNamespace {
        /// The stage.
        stage: String,
        /// What its template gave.
        namespace: String,
    },
    /// A stage's children would get a name too long for a Service.
    StageName {
        /// The stage.
        stage: String,
        /// The name they would get.
        name: String,
    },
}

impl Invalid {
    /// CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::PolicyNotFound { .. } => "PolicyNotFound",
            Invalid::VaultNotConfigured { .. } => "VaultNotConfigured",
            Invalid::MissingMetadata => "MissingMetadata",
            Invalid::StageNamespace { .. } => "StageNamespaceInvalid",
            Invalid::StageName { .. } => "StageNameTooLong",
        }
    }

    /// What a user needs to know to fix it.
    pub fn message(&self) -> String {
        match self {
            Invalid::PolicyNotFound { policy } => format!(
                "spec.policy names PromotionPolicy {policy:?}, which does not exist; create it or remove spec.policy"
            ),
            Invalid::VaultNotConfigured { variable } => format!(
                "spec.secrets[{variable}] reads from Vault, but the operator runs without --vault-addr; use secretKeyRef or configure Vault"
            ),
            Invalid::MissingMetadata => "the App has no name or namespace".into(),
            Invalid::StageNamespace { stage, namespace } => format!(
                "stage {stage:?} of the App's PromotionPolicy runs in namespace {namespace:?}, which is not a valid namespace name (lowercase letters, digits and '-', at most 63 characters); fix the stage's namespace template"
            ),
            Invalid::StageName { stage, name } => format!(
                "the children of stage {stage:?} would be named {name:?}, longer than the 63 characters a Service name may have; shorten the App's or the stage's name"
            ),
        }
    }
}

/// Checks `app` against `inputs`.
pub fn validate<'a>(app: &'a App, inputs: &Inputs) -> Result<Plan<'a>, Invalid> {
    let name = app.metadata.name.clone().ok_or(Invalid::MissingMetadata)?;
    let namespace = app.metadata.namespace.clone().ok_or(Invalid::MissingMetadata)?;
    if let (Some(policy), Some(false)) = (&app.spec.policy, inputs.policy_exists) {
        return Err(Invalid::PolicyNotFound {
            policy: policy.clone(),
        });
    }
    if !inputs.vault_configured
        && let Some(s) = app.spec.secrets.iter().find(|s| s.vault.is_some())
    {
        return Err(Invalid::VaultNotConfigured {
            variable: s.name.clone(),
        });
    }
    Ok(Plan {
        app,
        child: name.clone(),
        name,
        app_namespace: namespace.clone(),
        target: Target {
            stage: DEFAULT_STAGE.into(),
            namespace,
        },
        revision: crate::revision::of(app),
        spec: Cow::Borrowed(&app.spec),
    })
}
