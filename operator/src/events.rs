//! Kubernetes Events for condition transitions, shared by the controllers,
//! and the [`Recorder`] that publishes them. Event reasons equal condition
//! reasons.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Client, ResourceExt};
use tokio::sync::Mutex;
use tracing::warn;

/// How long a published Event is remembered, so a repeat becomes a series.
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// Publishes `events.k8s.io/v1` Events, folding an exact repeat (same object,
/// type, reason, action and note) into a series on the first one.
///
/// kube-runtime's recorder folds repeats too, but keys them without the
/// note: a second `Applied` Event with another commit in its note only
/// counted up the first one, whose note then named the old commit. Here each
/// distinct note is an Event of its own, so what `kubectl describe` shows is
/// always what happened last.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    published: std::sync::Arc<Mutex<HashMap<String, K8sEvent>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("reporter", &self.reporter)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder that reports as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            published: Default::default(),
        }
    }

    /// Publishes `event` about `regarding`, or counts it on the same Event
    /// published in the last few minutes.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = serde_json::json!([
            regarding.uid,
            regarding.name,
            event.type_ == EventType::Warning,
            event.reason,
            event.action,
            event.note,
            event.secondary
        ])
        .to_string();
        let mut published = self.published.lock().await;
        published.retain(|_, e| {
            let last = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0));
            last.is_some_and(|t| t + SERIES_TTL > now)
        });
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let stored = match published.get(&key) {
            Some(first) => {
                let mut repeat = first.clone();
                repeat.series = Some(EventSeries {
                    count: first.series.as_ref().map_or(2, |s| s.count + 1),
                    last_observed_time: MicroTime(now),
                });
                api.patch(
                    &repeat.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&repeat),
                )
                .await?;
                repeat
            }
            None => {
                let new = self.new_event(event, regarding, namespace, now);
                api.create(&PostParams::default(), &new).await?
            }
        };
        published.insert(key, stored);
        Ok(())
    }

    fn new_event(
        &self,
        event: &Event,
        regarding: &ObjectReference,
        namespace: String,
        now: Timestamp,
    ) -> K8sEvent {
        let reporter = &self.reporter;
        K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            note: event.note.clone(),
            metadata: ObjectMeta {
                namespace: Some(namespace),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&reporter.controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(reporter.controller.clone()),
            reporting_instance: Some(
                reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| reporter.controller.clone()),
            ),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..Default::default()
        }
    }
}

use crate::conditions::{self, DEGRADED};

/// One Event per condition that turned True: Warning for `Degraded`, Normal otherwise.
pub fn for_transitions(old: &[Condition], new: &[Condition]) -> Vec<Event> {
    conditions::transitions(old, new)
        .into_iter()
        .filter(|c| c.status == "True")
        .map(|c| Event {
            type_: if c.type_ == DEGRADED {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: c.reason.clone(),
            note: Some(truncate(&c.message, 1000)),
            action: "Reconcile".into(),
            secondary: None,
        })
        .collect()
}

/// Publishes `events`; a failure is logged and never fails the reconcile.
pub async fn publish(recorder: &Recorder, reference: &ObjectReference, events: Vec<Event>) {
    for event in events {
        if let Err(e) = recorder.publish(&event, reference).await {
            warn!(reason = %event.reason, error = %e, "publishing an Event failed");
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary (an Event note's limit).
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
