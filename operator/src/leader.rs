//! Leader election with a `coordination.k8s.io/v1` Lease, so that two replicas
//! never both write. The decision is a pure function of the Lease and the
//! time; the loop around it only reads and writes the Lease with optimistic
//! concurrency (a write based on a stale resourceVersion fails and is retried).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::{debug, info, warn};

/// Timing and identity of an elector.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews and a follower retries.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Defaults of Kubernetes' own controllers: 15 s lease, 2 s retry.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: "winky-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds a valid Lease: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a valid Lease.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the Lease (if any) at time `now`.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15).into());
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(at) if at + duration > now => Decision::Follow { holder },
        _ => Decision::Acquire,
    }
}

/// The Lease after `decision` by `config` at `now`, based on `current`.
pub fn next_lease(current: Option<&Lease>, config: &LeaderConfig, now: Timestamp) -> Lease {
    let spec = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours && current.is_some());
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: current.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
            acquire_time: if ours {
                spec.acquire_time
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// Lost or never held leadership.
#[derive(Debug, thiserror::Error)]
#[error("leadership lost: {0}")]
pub struct LeadershipLost(String);

/// Blocks until this replica holds the Lease.
pub async fn acquire(client: &Client, config: &LeaderConfig) -> Lease {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut announced = None;
    loop {
        match try_take(&api, config).await {
            Ok(Some(lease)) => {
                info!(lease = %config.name, identity = %config.identity, "became the leader");
                return lease;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "reading or writing the leader Lease failed"),
        }
        if let Ok(Some(current)) = api.get_opt(&config.name).await
            && let Decision::Follow { holder } = decide(Some(&current), &config.identity, Timestamp::now())
            && announced.as_ref() != Some(&holder)
        {
            info!(%holder, "waiting for the leader Lease");
            announced = Some(holder);
        }
        tokio::time::sleep(config.retry_period).await;
    }
}

/// Renews the Lease until that fails for longer than the lease duration (or
/// another replica took it); returns why leadership ended.
pub async fn hold(client: &Client, config: &LeaderConfig) -> LeadershipLost {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.retry_period).await;
        match try_take(&api, config).await {
            Ok(Some(_)) => {
                debug!("renewed the leader Lease");
                last_renewal = tokio::time::Instant::now();
            }
            Ok(None) => return LeadershipLost("another replica holds the Lease".into()),
            Err(e) if last_renewal.elapsed() >= config.lease_duration => {
                return LeadershipLost(format!("could not renew the Lease: {e}"));
            }
            Err(e) => warn!(error = %e, "renewing the leader Lease failed; retrying"),
        }
    }
}

/// Gives the Lease up so another replica can take over at once.
pub async fn release(client: &Client, config: &LeaderConfig) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    if let Ok(Some(mut lease)) = api.get_opt(&config.name).await
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(config.identity.as_str())
    {
        spec.holder_identity = None;
        if let Err(e) = api.replace(&config.name, &PostParams::default(), &lease).await {
            warn!(error = %e, "releasing the leader Lease failed");
        }
    }
}

/// One attempt: `Some(lease)` when we hold it afterwards, `None` when another
/// replica does.
async fn try_take(api: &Api<Lease>, config: &LeaderConfig) -> Result<Option<Lease>, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let now = Timestamp::now();
    match decide(current.as_ref(), &config.identity, now) {
        Decision::Follow { .. } => Ok(None),
        Decision::Acquire | Decision::Renew => {
            let next = next_lease(current.as_ref(), config, now);
            let written = match current {
                None => api.create(&PostParams::default(), &next).await,
                Some(_) => api.replace(&config.name, &PostParams::default(), &next).await,
            };
            match written {
                Ok(lease) => Ok(Some(lease)),
                // Someone else wrote first: not ours this round.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn lease(holder: &str, renewed: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(at(renewed))),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn takes_a_missing_or_released_lease() {
        assert_eq!(decide(None, "a", at(100)), Decision::Acquire);
        assert_eq!(decide(Some(&lease("", 99)), "a", at(100)), Decision::Acquire);
    }

    #[test]
    fn follows_a_valid_lease_of_another_and_takes_an_expired_one() {
        assert_eq!(
            decide(Some(&lease("b", 90)), "a", at(100)),
            Decision::Follow { holder: "b".into() }
        );
        assert_eq!(decide(Some(&lease("b", 80)), "a", at(100)), Decision::Acquire);
    }

    #[test]
    fn renews_its_own_lease() {
        assert_eq!(decide(Some(&lease("a", 50)), "a", at(100)), Decision::Renew);
    }

    #[test]
    fn counts_transitions_only_when_the_holder_changes() {
        let config = LeaderConfig::new("ns", "a");
        let mut theirs = lease("b", 80);
        theirs.spec.as_mut().unwrap().lease_transitions = Some(3);
        assert_eq!(
            next_lease(Some(&theirs), &config, at(100))
                .spec
                .unwrap()
                .lease_transitions,
            Some(4)
        );
        let ours = next_lease(Some(&lease("a", 99)), &config, at(100));
        assert_eq!(ours.spec.unwrap().lease_transitions, Some(0));
    }
}
