//! Leader election with a `coordination.k8s.io/v1` Lease, so that two replicas
//! never both write. The decision is a pure function of the Lease and the
//! time; the loop around it only reads and writes the Lease with optimistic
//! concurrency (a write based on a stale resourceVersion fails and is retried).
//!
//! No overlap: the leader gives up when it has not renewed for
//! `renew_deadline` (a renewal attempt that hangs is cut off there), and the
//! operator then stops its controllers within `lease_duration -
//! renew_deadline`. Another replica can only take the Lease once
//! `lease_duration` has passed since the last renewal, so by then the old
//! leader's controllers have stopped (given clocks that agree).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;
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
    /// How long the leader keeps leading without a renewal; shorter than
    /// `lease_duration` by at least the time its controllers take to stop.
    pub renew_deadline: Duration,
    /// How often the leader renews and a follower retries.
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// Defaults of Kubernetes' own controllers: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: "winky-operator".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
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

/// Blocks until this replica holds the Lease; returns the moment of the
/// renewal time it wrote.
pub async fn acquire(client: &Client, config: &LeaderConfig) -> Instant {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let mut announced = None;
    loop {
        match try_take(&api, config).await {
            Ok(Some(renewed)) => {
                info!(lease = %config.name, identity = %config.identity, "became the leader");
                return renewed;
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

/// Renews the Lease taken at `renewed` until no renewal succeeds within the
/// renew deadline (or another replica took it); returns why leadership ended.
pub async fn hold(client: &Client, config: &LeaderConfig, mut renewed: Instant) -> LeadershipLost {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let lost = |config: &LeaderConfig| {
        LeadershipLost(format!(
            "no renewal of the Lease within {:?}",
            config.renew_deadline
        ))
    };
    loop {
        let deadline = renewed + config.renew_deadline;
        let next = Instant::now() + config.retry_period;
        if next >= deadline {
            // No time left for another attempt.
            tokio::time::sleep_until(deadline).await;
            return lost(config);
        }
        tokio::time::sleep_until(next).await;
        // A request that hangs must not keep a leader leading past its deadline.
        match tokio::time::timeout_at(deadline, try_take(&api, config)).await {
            Ok(Ok(Some(at))) => {
                debug!("renewed the leader Lease");
                renewed = at;
            }
            Ok(Ok(None)) => return LeadershipLost("another replica holds the Lease".into()),
            Ok(Err(e)) if Instant::now() >= deadline => {
                return LeadershipLost(format!("could not renew the Lease: {e}"));
            }
            Ok(Err(e)) => warn!(error = %e, "renewing the leader Lease failed; retrying"),
            Err(_) => return lost(config),
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

/// One attempt: `Some(when)` when we hold the Lease afterwards, renewed as of
/// `when`; `None` when another replica does.
async fn try_take(api: &Api<Lease>, config: &LeaderConfig) -> Result<Option<Instant>, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    // The renewal time written, and the same moment on this process's clock.
    let (now, at) = (Timestamp::now(), Instant::now());
    match decide(current.as_ref(), &config.identity, now) {
        Decision::Follow { .. } => Ok(None),
        Decision::Acquire | Decision::Renew => {
            let next = next_lease(current.as_ref(), config, now);
            let written = match current {
                None => api.create(&PostParams::default(), &next).await,
                Some(_) => api.replace(&config.name, &PostParams::default(), &next).await,
            };
            match written {
                Ok(_) => Ok(Some(at)),
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

    /// An apiserver that accepts connections and never answers.
    async fn unanswering_server() -> (Client, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = kube::Config::new(url.parse().unwrap());
        (Client::try_from(config).unwrap(), server)
    }

    #[tokio::test]
    async fn a_leader_whose_renewals_hang_gives_up_at_its_renew_deadline() {
        let (client, server) = unanswering_server().await;
        let config = LeaderConfig {
            lease_duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(1),
            retry_period: Duration::from_millis(200),
            ..LeaderConfig::new("ns", "a")
        };
        let started = Instant::now();
        let lost = tokio::time::timeout(Duration::from_secs(30), hold(&client, &config, started))
            .await
            .expect("a hanging renewal kept the leader leading");
        let after = started.elapsed();
        assert!(lost.0.contains("no renewal"), "{lost}");
        // Gone before another replica could take the expired Lease.
        assert!(
            after >= config.renew_deadline && after < config.lease_duration,
            "{after:?}"
        );
        server.abort();
    }

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
