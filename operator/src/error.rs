//! Errors of a reconcile, each with a static category for metric labels and
//! Event reasons.

use thiserror::Error;

/// Why a reconcile could not finish. Invalid specs are not errors: they are
/// reported in status and wait for a change (see `app::validate`).
#[derive(Debug, Error)]
pub enum Error {
    /// Applying a child object failed.
    #[error("applying {kind} {name}: {source}")]
    Apply {
        /// Kind of the child.
        kind: String,
        /// Name of the child.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a child that is no longer desired failed.
    #[error("pruning {kind} {name}: {source}")]
    Prune {
        /// Kind of the child.
        kind: String,
        /// Name of the child.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing status failed.
    #[error("writing status: {0}")]
    Status(#[source] kube::Error),
    /// Serializing an object failed (a bug).
    #[error("serializing {what}: {source}")]
    Serialize {
        /// What was serialized.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Adding or removing a finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// The object has no namespace or name (a bug or a cluster-scoped mix-up).
    #[error("object is missing {0}")]
    MissingMetadata(&'static str),
}

impl Error {
    /// A stable, low-cardinality name for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "apply",
            Error::Prune { .. } => "prune",
            Error::Status(_) => "status",
            Error::Serialize { .. } => "serialize",
            Error::Finalizer(_) => "finalizer",
            Error::MissingMetadata(_) => "metadata",
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
