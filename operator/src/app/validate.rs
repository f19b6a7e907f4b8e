//! Validation of an App against what the operator can provide: the checks a
//! schema cannot make because they depend on other objects or on how the
//! operator runs. Pure: everything it needs comes in through [`Inputs`].

use winky_crds::App;

/// The stage an App runs in when it follows no PromotionPolicy. The stage
/// model (one namespace per stage, promotions between them) builds on this.
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

/// A validated App, ready to be built into children.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    /// The App.
    pub app: &'a App,
    /// Its name.
    pub name: String,
    /// Where its children go.
    pub target: Target,
    /// Revision id of the spec ([`crate::revision::of`]).
    pub revision: String,
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
}

impl Invalid {
    /// CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Invalid::PolicyNotFound { .. } => "PolicyNotFound",
            Invalid::VaultNotConfigured { .. } => "VaultNotConfigured",
            Invalid::MissingMetadata => "MissingMetadata",
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
        name,
        target: Target {
            stage: DEFAULT_STAGE.into(),
            namespace,
        },
        revision: crate::revision::of(app),
    })
}
