//! `metav1.Condition` bookkeeping, kept pure so it is tested without a server.
//!
//! Steps report what they found; [`crate::app::status`] turns that into a set
//! of [`ConditionSpec`]s; [`merge`] folds them into the existing conditions,
//! keeping `lastTransitionTime` unless the status really changed. Event reasons
//! equal condition reasons.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// `Ready`: the App serves its current revision.
pub const READY: &str = "Ready";
/// `Progressing`: the operator is moving the App towards its spec.
pub const PROGRESSING: &str = "Progressing";
/// `Degraded`: the spec cannot be satisfied or the workload is failing.
pub const DEGRADED: &str = "Degraded";

/// One condition as a step wants it to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSpec {
    /// Condition type.
    pub type_: &'static str,
    /// True or False.
    pub status: bool,
    /// CamelCase reason, also used as the Event reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ConditionSpec {
    /// A condition with the given status.
    pub fn new(type_: &'static str, status: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Ready, Progressing and Degraded for a spec that cannot be satisfied: not
/// ready, not progressing (it waits for a change), degraded, all with `reason`.
pub fn unsatisfiable(reason: &'static str, message: String) -> Vec<ConditionSpec> {
    vec![
        ConditionSpec::new(READY, false, reason, message.clone()),
        ConditionSpec::new(
            PROGRESSING,
            false,
            reason,
            "waiting for a change to the spec or what it names",
        ),
        ConditionSpec::new(DEGRADED, true, reason, message),
    ]
}

/// The conditions after applying `wanted` to `existing` at `now`.
/// Conditions of other types are kept as they are; the result is sorted by type.
pub fn merge(
    existing: &[Condition],
    wanted: &[ConditionSpec],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
        .cloned()
        .collect();
    for w in wanted {
        let status = if w.status { "True" } else { "False" }.to_string();
        let previous = existing.iter().find(|c| c.type_ == w.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Time(now),
        };
        out.push(Condition {
            type_: w.type_.to_string(),
            status,
            reason: w.reason.to_string(),
            message: w.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Conditions of `after` whose status or reason differ from `before`: the
/// transitions worth an Event.
pub fn transitions<'a>(before: &[Condition], after: &'a [Condition]) -> Vec<&'a Condition> {
    after
        .iter()
        .filter(|a| {
            !before
                .iter()
                .any(|b| b.type_ == a.type_ && b.status == a.status && b.reason == a.reason)
        })
        .collect()
}

/// The condition of the given type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn keeps_transition_time_while_status_holds() {
        let first = merge(
            &[],
            &[ConditionSpec::new(READY, false, "RolloutInProgress", "0/1")],
            Some(1),
            at(10),
        );
        let second = merge(
            &first,
            &[ConditionSpec::new(READY, false, "RolloutInProgress", "0/1 still")],
            Some(2),
            at(20),
        );
        assert_eq!(second[0].last_transition_time, Time(at(10)));
        assert_eq!(second[0].message, "0/1 still");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn moves_transition_time_when_status_flips() {
        let first = merge(
            &[],
            &[ConditionSpec::new(READY, false, "RolloutInProgress", "")],
            None,
            at(10),
        );
        let second = merge(
            &first,
            &[ConditionSpec::new(READY, true, "Available", "")],
            None,
            at(20),
        );
        assert_eq!(second[0].last_transition_time, Time(at(20)));
        assert_eq!(second[0].status, "True");
    }

    #[test]
    fn keeps_conditions_of_other_types_and_sorts() {
        let first = merge(
            &[],
            &[ConditionSpec::new("EmulatorPassed", true, "Passed", "")],
            None,
            at(1),
        );
        let second = merge(
            &first,
            &[ConditionSpec::new(READY, true, "Available", "")],
            None,
            at(2),
        );
        let types: Vec<_> = second.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["EmulatorPassed", "Ready"]);
    }

    #[test]
    fn transitions_are_status_or_reason_changes_only() {
        let before = merge(
            &[],
            &[ConditionSpec::new(READY, false, "RolloutInProgress", "0/2")],
            None,
            at(1),
        );
        let same = merge(
            &before,
            &[ConditionSpec::new(READY, false, "RolloutInProgress", "1/2")],
            None,
            at(2),
        );
        assert!(transitions(&before, &same).is_empty());
        let flipped = merge(
            &before,
            &[ConditionSpec::new(READY, true, "Available", "2/2")],
            None,
            at(3),
        );
        assert_eq!(transitions(&before, &flipped).len(), 1);
    }
}
