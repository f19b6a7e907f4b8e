//! Kubernetes Events for condition transitions, shared by the controllers.
//! Event reasons equal condition reasons.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

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
