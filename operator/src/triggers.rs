//! Trigger streams that pass on only the changes a reconcile depends on.

use std::collections::HashMap;

use futures::{Stream, StreamExt, stream};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

/// What a reflected watch said, with a list's objects together.
enum Change<K> {
    /// The objects of a whole list, once it ended and the cache was swapped.
    Listed(Vec<K>),
    Applied(K),
    Deleted(K),
}

/// Holds a list's objects back until the list ends (see [`listed_objects`]).
fn changes<K, S>(events: S) -> impl Stream<Item = Result<Change<K>, watcher::Error>> + Send
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut listing: Vec<K> = Vec::new();
    events.filter_map(move |event| {
        let change = match event {
            Err(e) => Some(Err(e)),
            Ok(watcher::Event::Init) => {
                listing.clear();
                None
            }
            Ok(watcher::Event::InitApply(object)) => {
                listing.push(object);
                None
            }
            Ok(watcher::Event::InitDone) => Some(Ok(Change::Listed(std::mem::take(&mut listing)))),
            Ok(watcher::Event::Apply(object)) => Some(Ok(Change::Applied(object))),
            Ok(watcher::Event::Delete(object)) => Some(Ok(Change::Deleted(object))),
        };
        std::future::ready(change)
    })
}

/// The objects of a reflected watch, each passed on once the cache holds it.
///
/// kube-runtime's reflector fills a fresh buffer during a list (the first, or
/// a re-list after the watch lost its place) and swaps it into the cache only
/// when the list ends (`InitDone`), while `touched_objects` passes each listed
/// object on at once: a reconcile it triggers would read the cache as it was
/// before the list, and nothing would trigger it again. Listed objects are
/// held back until the list ends; the stream must come after `.reflect()`.
pub fn listed_objects<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    changes(events).flat_map(|change| {
        let objects: Vec<Result<K, watcher::Error>> = match change {
            Err(e) => vec![Err(e)],
            Ok(Change::Listed(objects)) => objects.into_iter().map(Ok).collect(),
            Ok(Change::Applied(object) | Change::Deleted(object)) => vec![Ok(object)],
        };
        stream::iter(objects)
    })
}

/// Like [`listed_objects`], without deletions: the trigger of a controller
/// from its own kind's watch. `Controller::new` triggers on what is applied
/// only (an object that is gone has nothing left to reconcile: a deletion that
/// needs work is seen as the `deletionTimestamp` being set), but it passes a
/// re-list's objects on before the cache holds them, so a reconcile could
/// read the object as it was before the list, or find it missing.
pub fn applied_objects<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    changes(events).flat_map(|change| {
        let objects: Vec<Result<K, watcher::Error>> = match change {
            Err(e) => vec![Err(e)],
            Ok(Change::Listed(objects)) => objects.into_iter().map(Ok).collect(),
            Ok(Change::Applied(object)) => vec![Ok(object)],
            Ok(Change::Deleted(_)) => Vec::new(),
        };
        stream::iter(objects)
    })
}

/// Like [`listed_objects`], but passes an object on only when it appears,
/// when its generation changes (its spec did) and when it goes; status and
/// metadata updates are dropped.
///
/// A Function depends on its App's spec and existence only, while the App
/// controller writes the App's status on every step of a rollout and every
/// emulator result: without this, each such write reconciled every Function
/// of the App. kube-runtime's generation predicate is not enough, as it also
/// drops the deletion (same generation), which a Function must see to report
/// its App missing. A list forgets what was seen, so every listed object is
/// passed on once again when the list ends.
pub fn spec_changes<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut seen: HashMap<ObjectRef<K>, Option<i64>> = HashMap::new();
    changes(events).flat_map(move |change| {
        let passed: Vec<Result<K, watcher::Error>> = match change {
            Err(e) => vec![Err(e)],
            Ok(Change::Listed(objects)) => {
                seen = objects
                    .iter()
                    .map(|o| (ObjectRef::from_obj(o), o.meta().generation))
                    .collect();
                objects.into_iter().map(Ok).collect()
            }
            Ok(Change::Applied(object)) => {
                let generation = object.meta().generation;
                let previous = seen.insert(ObjectRef::from_obj(&object), generation);
                if previous == Some(generation) {
                    Vec::new()
                } else {
                    vec![Ok(object)]
                }
            }
            Ok(Change::Deleted(object)) => {
                seen.remove(&ObjectRef::from_obj(&object));
                vec![Ok(object)]
            }
        };
        stream::iter(passed)
    })
}

#[cfg(test)]
mod tests {
    use super::{applied_objects, listed_objects, spec_changes};
    use futures::StreamExt;
    use kube::runtime::watcher::Event;
    use winky_crds::App;

    fn app(name: &str, generation: i64, image: &str, phase_note: &str) -> App {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "winky.dev/v1alpha1", "kind": "App",
            "metadata": {"name": name, "namespace": "n", "generation": generation,
                         "annotations": {"note": phase_note}},
            "spec": {"image": image, "port": 8080},
        }))
        .unwrap()
    }

    #[test]
    fn listed_objects_wait_for_the_end_of_the_list() {
        use futures::FutureExt;
        let (events, rx) = futures::channel::mpsc::unbounded();
        let mut objects = Box::pin(listed_objects(rx));
        events.unbounded_send(Ok(Event::Init)).unwrap();
        events
            .unbounded_send(Ok(Event::InitApply(app("notes", 1, "a:1", "listed"))))
            .unwrap();
        assert!(
            objects.next().now_or_never().is_none(),
            "passed on before the cache holds it"
        );
        events.unbounded_send(Ok(Event::InitDone)).unwrap();
        let listed = objects.next().now_or_never().flatten().unwrap().unwrap();
        assert_eq!(listed.metadata.name.as_deref(), Some("notes"));
        // After the list, changes pass at once.
        events
            .unbounded_send(Ok(Event::Apply(app("notes", 1, "a:1", "status written"))))
            .unwrap();
        assert!(objects.next().now_or_never().flatten().is_some());
    }

    #[tokio::test]
    async fn a_controllers_own_trigger_passes_listed_and_applied_objects_not_deleted_ones() {
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(app("notes", 1, "a:1", "listed"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(app("notes", 1, "a:1", "status written"))),
            Ok(Event::Delete(app("notes", 1, "a:1", "deleted"))),
            Ok(Event::Init),
            Ok(Event::InitApply(app("shop", 1, "s:1", "relisted"))),
            Ok(Event::InitDone),
        ];
        let passed: Vec<String> = applied_objects(futures::stream::iter(events))
            .map(|r| r.unwrap().metadata.annotations.unwrap()["note"].clone())
            .collect()
            .await;
        assert_eq!(passed, ["listed", "status written", "relisted"]);
    }

    #[tokio::test]
    async fn passes_new_changed_and_deleted_objects_and_drops_the_rest() {
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(app("notes", 1, "a:1", "listed"))),
            Ok(Event::InitApply(app("shop", 4, "s:1", "listed"))),
            Ok(Event::InitDone),
            // A status write or an annotation: same generation.
            Ok(Event::Apply(app("notes", 1, "a:1", "status written"))),
            // A new spec.
            Ok(Event::Apply(app("notes", 2, "a:2", "spec changed"))),
            Ok(Event::Apply(app("notes", 2, "a:2", "status written again"))),
            // Gone, with the generation it had: still passed on.
            Ok(Event::Delete(app("shop", 4, "s:1", "deleted"))),
            // Created again under the same name.
            Ok(Event::Apply(app("shop", 1, "s:2", "recreated"))),
            // A re-list passes everything on once more.
            Ok(Event::Init),
            Ok(Event::InitApply(app("notes", 2, "a:2", "relisted"))),
            Ok(Event::InitDone),
        ];
        let passed: Vec<String> = spec_changes(futures::stream::iter(events))
            .map(|r| {
                let app = r.unwrap();
                format!(
                    "{} {}",
                    app.metadata.name.unwrap(),
                    app.metadata.annotations.unwrap()["note"]
                )
            })
            .collect()
            .await;
        assert_eq!(
            passed,
            [
                "notes listed",
                "shop listed",
                "notes spec changed",
                "shop deleted",
                "shop recreated",
                "notes relisted",
            ]
        );
    }
}
