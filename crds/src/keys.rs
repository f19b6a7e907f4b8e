//! Well-known label and annotation keys that are part of the API contract.

/// Label on every object the operator creates: the name of the owning App.
pub const APP_LABEL: &str = "winky.dev/app";
/// Label on every object the operator creates: the stage it belongs to.
pub const STAGE_LABEL: &str = "winky.dev/stage";
/// Label on every object the operator creates: which kind of Winky object owns it.
pub const OWNER_KIND_LABEL: &str = "winky.dev/owner-kind";
/// Standard `app.kubernetes.io/managed-by` label, always `winky-operator`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Standard `app.kubernetes.io/name` label.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Annotation set by a GitSource: the commit a resource was applied from.
pub const GIT_COMMIT_ANNOTATION: &str = "winky.dev/git-commit";
/// Annotation set by a GitSource: the pull request that merged the commit.
pub const PULL_REQUEST_ANNOTATION: &str = "winky.dev/pull-request";
/// Annotation on pod templates: the revision the pods run.
pub const REVISION_ANNOTATION: &str = "winky.dev/revision";
/// Annotation set by a GitSource on every object it applies:
/// `<namespace>/<name>` of that GitSource. A second GitSource never takes
/// over an object that carries another's.
pub const GIT_SOURCE_ANNOTATION: &str = "winky.dev/gitsource";
/// Label on every child of an App: the App's own namespace. Children in a
/// stage namespace other than the App's cannot name the App as their owner
/// (Kubernetes forbids owners across namespaces); this label and
/// [`APP_LABEL`] say whose they are.
pub const APP_NAMESPACE_LABEL: &str = "winky.dev/app-namespace";
/// Label on a stage Namespace the operator created: `<namespace>.<app>` of
/// the App whose stage it was created for (shortened with a hash when that is
/// longer than a label value may be).
pub const STAGE_OF_LABEL: &str = "winky.dev/stage-of";
/// Pod Security admission's enforce label.
pub const POD_SECURITY_ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// Annotation on an App asking for the emulator to run again and the App to
/// be reconciled at once (like Flux's `reconcile.fluxcd.io/requestedAt`): any
/// new value is a new request. Set by `/retest`, or by hand with
/// `kubectl annotate app <name> winky.dev/requested-at="$(date -Is)" --overwrite`.
pub const REQUESTED_AT_ANNOTATION: &str = "winky.dev/requested-at";
