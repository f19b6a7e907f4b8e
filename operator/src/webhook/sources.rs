//! Where the receiver finds a GitSource and its webhook secret: the
//! [`Sources`] seam (so the router is testable without an apiserver) and
//! [`KubeSources`], which reads the GitSource reflector cache and GETs the
//! Secret.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use thiserror::Error;
use winky_crds::GitSource;
use winky_crds::common::SecretKeyRef;

/// A value read from a Secret: the HMAC key a GitSource's deliveries are
/// signed with, or its GitHub token. Its bytes never reach a log, a response
/// or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    /// Wraps the key, exactly as stored: no trimming, since GitHub signs with
    /// the bytes it was given and a stripped newline would break every
    /// signature just as surely as an added one.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The key, for the HMAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// Why a webhook secret could not be read. The messages name the Secret and
/// key, never their content; the sender only ever learns "unavailable".
#[derive(Debug, Error)]
pub enum SecretError {
    /// The Secret does not exist.
    #[error("Secret {namespace}/{name} not found")]
    NotFound {
        /// Namespace of the GitSource and the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
    },
    /// The Secret has no such key in `data`.
    #[error("Secret {namespace}/{name} has no key {key}")]
    MissingKey {
        /// Namespace of the GitSource and the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The key `spec.webhook.secretRef` names.
        key: String,
    },
    /// The key holds nothing. Refused: an empty HMAC key lets anyone sign.
    #[error("key {key} of Secret {namespace}/{name} is empty")]
    Empty {
        /// Namespace of the GitSource and the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The key `spec.webhook.secretRef` names.
        key: String,
    },
    /// The apiserver refused or failed the GET.
    #[error("reading Secret {namespace}/{name}: {source}")]
    Api {
        /// Namespace of the GitSource and the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl SecretError {
    /// A stable, low-cardinality name for logs: `forbidden` when RBAC
    /// refused the GET, else what is wrong with the Secret.
    pub fn category(&self) -> &'static str {
        match self {
            SecretError::NotFound { .. } => "not_found",
            SecretError::MissingKey { .. } => "missing_key",
            SecretError::Empty { .. } => "empty",
            SecretError::Api {
                source: kube::Error::Api(status),
                ..
            } if status.code == 403 => "forbidden",
            SecretError::Api { .. } => "api",
        }
    }
}

/// Looks up GitSources and their webhook secrets.
pub trait Sources: Send + Sync + 'static {
    /// The GitSource `namespace/name`, if it exists (with or without
    /// `spec.webhook`: the receiver checks that).
    fn source(&self, namespace: &str, name: &str) -> Option<Arc<GitSource>>;

    /// The HMAC key in `secret`, a key of a Secret in `namespace`.
    fn webhook_secret(
        &self,
        namespace: &str,
        secret: &SecretKeyRef,
    ) -> impl Future<Output = Result<SecretValue, SecretError>> + Send;
}

/// [`Sources`] backed by the cluster: GitSources from a reflector cache, the
/// Secret with a GET per delivery. No Secret cache on purpose: the operator
/// watches no Secrets (that would need `list`/`watch` on every Secret in
/// reach), deliveries are rare, and the rate limit caps the GETs.
#[derive(Clone)]
pub struct KubeSources {
    /// GitSources, from the GitSource controller's reflector.
    pub sources: Store<GitSource>,
    /// API client, to GET the Secret (needs `get` on Secrets).
    pub client: Client,
}

impl fmt::Debug for KubeSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeSources").finish_non_exhaustive()
    }
}

impl Sources for KubeSources {
    fn source(&self, namespace: &str, name: &str) -> Option<Arc<GitSource>> {
        self.sources.get(&ObjectRef::new(name).within(namespace))
    }

    async fn webhook_secret(
        &self,
        namespace: &str,
        secret: &SecretKeyRef,
    ) -> Result<SecretValue, SecretError> {
        read_secret_key(&self.client, namespace, secret).await
    }
}

/// Reads `secret.key` of the Secret `secret.name` in `namespace` with one GET:
/// the webhook secret of a delivery, the GitHub token of a GitSource.
pub async fn read_secret_key(
    client: &Client,
    namespace: &str,
    secret: &SecretKeyRef,
) -> Result<SecretValue, SecretError> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let found = match api.get(&secret.name).await {
        Ok(found) => found,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            return Err(SecretError::NotFound {
                namespace: namespace.to_owned(),
                name: secret.name.clone(),
            });
        }
        Err(source) => {
            return Err(SecretError::Api {
                namespace: namespace.to_owned(),
                name: secret.name.clone(),
                source,
            });
        }
    };
    secret_value(found, namespace, secret)
}

/// `data[key]` of `found`, refusing a missing or empty value.
fn secret_value(found: Secret, namespace: &str, secret: &SecretKeyRef) -> Result<SecretValue, SecretError> {
    let value = found
        .data
        .and_then(|mut data| data.remove(&secret.key))
        .ok_or_else(|| SecretError::MissingKey {
            namespace: namespace.to_owned(),
            name: secret.name.clone(),
            key: secret.key.clone(),
        })?;
    if value.0.is_empty() {
        return Err(SecretError::Empty {
            namespace: namespace.to_owned(),
            name: secret.name.clone(),
            key: secret.key.clone(),
        });
    }
    Ok(SecretValue::new(value.0))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(data: &[(&str, &[u8])]) -> Secret {
        Secret {
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        }
    }

    fn key() -> SecretKeyRef {
        SecretKeyRef {
            name: "hook".into(),
            key: "secret".into(),
        }
    }

    #[test]
    fn reads_the_named_key_and_keeps_it_out_of_debug() {
        let got = secret_value(secret(&[("secret", b"s3cr3t-value")]), "ns", &key()).unwrap();
        assert_eq!(got.expose(), b"s3cr3t-value");
        let debug = format!("{got:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn a_missing_or_empty_key_is_an_error_that_names_no_value() {
        let missing = secret_value(secret(&[("other", b"s3cr3t")]), "ns", &key()).unwrap_err();
        assert_eq!(missing.category(), "missing_key");
        assert_eq!(missing.to_string(), "Secret ns/hook has no key secret");
        let none = secret_value(Secret::default(), "ns", &key()).unwrap_err();
        assert_eq!(none.category(), "missing_key");
        let empty = secret_value(secret(&[("secret", b"")]), "ns", &key()).unwrap_err();
        assert_eq!(empty.category(), "empty");
    }
}
