//! Where credentials come from: the environment, or Vault (OpenBao) through
//! a reference in the environment.
//!
//! A credential variable (`WINKY_GITHUB_TOKEN`, `WINKY_GIT_TOKEN`,
//! `WINKY_OPENAI_API_KEY`) holds either the secret itself or a reference
//! `vault:<mount>/<path>#<key>` to a KV version 2 secret, read with the
//! token in `VAULT_TOKEN` from `VAULT_ADDR`. Only the reference is ever
//! shown in a message; the value stays in memory.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

const PREFIX: &str = "vault:";

/// A parsed `vault:<mount>/<path>#<key>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultRef {
    pub mount: String,
    pub path: String,
    pub key: String,
}

impl fmt::Display for VaultRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vault:{}/{}#{}", self.mount, self.path, self.key)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{reference:?} is not a Vault reference of the form vault:<mount>/<path>#<key> (e.g. vault:secret/winky/github#token)"
    )]
    BadReference { reference: String },
    #[error("{reference} needs VAULT_ADDR and VAULT_TOKEN in the environment")]
    NoVault { reference: String },
    #[error("VAULT_ADDR {0:?} is not an http(s) URL")]
    BadAddress(String),
    #[error("reading {reference} from Vault: {message}")]
    Read { reference: String, message: String },
    #[error("{reference} has no key {key:?}")]
    NoKey { reference: String, key: String },
}

impl VaultRef {
    pub fn parse(value: &str) -> Result<Option<Self>, SecretError> {
        let Some(rest) = value.strip_prefix(PREFIX) else {
            return Ok(None);
        };
        let bad = || SecretError::BadReference {
            reference: value.to_string(),
        };
        let (location, key) = rest.split_once('#').ok_or_else(bad)?;
        let (mount, path) = location.split_once('/').ok_or_else(bad)?;
        if mount.is_empty() || path.is_empty() || key.is_empty() {
            return Err(bad());
        }
        Ok(Some(Self {
            mount: mount.into(),
            path: path.into(),
            key: key.into(),
        }))
    }
}

/// Vault as configured by `VAULT_ADDR` and `VAULT_TOKEN`, connected on first use.
#[derive(Default)]
pub struct Secrets {
    client: Option<VaultClient>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("vault", &self.client.is_some())
            .finish()
    }
}

impl Secrets {
    fn client(&mut self, reference: &VaultRef) -> Result<&VaultClient, SecretError> {
        if self.client.is_none() {
            let env = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
            let (Some(address), Some(token)) = (env("VAULT_ADDR"), env("VAULT_TOKEN")) else {
                return Err(SecretError::NoVault {
                    reference: reference.to_string(),
                });
            };
            if !(address.starts_with("http://") || address.starts_with("https://"))
                || address.parse::<hyper::Uri>().is_err()
            {
                return Err(SecretError::BadAddress(address));
            }
            let settings = VaultClientSettingsBuilder::default()
                .address(&address)
                .token(token)
                .timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| SecretError::Read {
                    reference: reference.to_string(),
                    message: e.to_string(),
                })?;
            let client = VaultClient::new(settings).map_err(|e| SecretError::Read {
                reference: reference.to_string(),
                message: e.to_string(),
            })?;
            self.client = Some(client);
        }
        Ok(self.client.as_ref().expect("set above"))
    }

    /// The value itself, or what the Vault reference points at.
    pub async fn resolve(&mut self, value: String) -> Result<String, SecretError> {
        let Some(reference) = VaultRef::parse(&value)? else {
            return Ok(value);
        };
        let client = self.client(&reference)?;
        let data: HashMap<String, String> = vaultrs::kv2::read(client, &reference.mount, &reference.path)
            .await
            .map_err(|e| SecretError::Read {
                reference: reference.to_string(),
                message: e.to_string(),
            })?;
        data.get(&reference.key)
            .cloned()
            .ok_or_else(|| SecretError::NoKey {
                reference: reference.to_string(),
                key: reference.key.clone(),
            })
    }

    /// Resolves an optional value.
    pub async fn resolve_opt(&mut self, value: Option<String>) -> Result<Option<String>, SecretError> {
        match value {
            Some(value) => Ok(Some(self.resolve(value).await?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        assert_eq!(VaultRef::parse("ghp_plain").unwrap(), None);
        let reference = VaultRef::parse("vault:secret/winky/github#token")
            .unwrap()
            .unwrap();
        assert_eq!(
            reference,
            VaultRef {
                mount: "secret".into(),
                path: "winky/github".into(),
                key: "token".into()
            }
        );
        assert_eq!(reference.to_string(), "vault:secret/winky/github#token");
        for bad in [
            "vault:",
            "vault:secret#k",
            "vault:secret/p",
            "vault:/p#k",
            "vault:secret/#k",
            "vault:s/p#",
        ] {
            assert!(VaultRef::parse(bad).is_err(), "{bad}");
        }
    }
}
