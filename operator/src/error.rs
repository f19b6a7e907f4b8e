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
    /// A stable, low-cardinality name for metrics and Events: `forbidden`
    /// when the apiserver refused the operator's RBAC (whatever the step),
    /// else the step that failed.
    pub fn category(&self) -> &'static str {
        if self.api_code() == Some(403) {
            return "forbidden";
        }
        match self {
            Error::Apply { .. } => "apply",
            Error::Prune { .. } => "prune",
            Error::Status(_) => "status",
            Error::Serialize { .. } => "serialize",
            Error::Finalizer(_) => "finalizer",
            Error::MissingMetadata(_) => "metadata",
        }
    }

    /// The HTTP status the apiserver answered, when it answered one.
    fn api_code(&self) -> Option<u16> {
        use kube::runtime::finalizer::Error as Finalizer;
        let code = |e: &kube::Error| match e {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        };
        match self {
            Error::Apply { source, .. } | Error::Prune { source, .. } | Error::Status(source) => code(source),
            Error::Finalizer(e) => match e.as_ref() {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => inner.api_code(),
                Finalizer::AddFinalizer(source) | Finalizer::RemoveFinalizer(source) => code(source),
                _ => None,
            },
            Error::Serialize { .. } | Error::MissingMetadata(_) => None,
        }
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::Error;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn a_refusal_by_rbac_is_forbidden_whatever_the_step() {
        let apply = |code| Error::Apply {
            kind: "Deployment".into(),
            name: "notes".into(),
            source: api(code),
        };
        assert_eq!(apply(403).category(), "forbidden");
        assert_eq!(apply(500).category(), "apply");
        assert_eq!(Error::Status(api(403)).category(), "forbidden");
        let in_cleanup = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(
            Error::Status(api(403)),
        )));
        assert_eq!(in_cleanup.category(), "forbidden");
        let add = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(api(409))));
        assert_eq!(add.category(), "finalizer");
    }
}
