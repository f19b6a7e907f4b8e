//! Trigger streams that pass on only the changes a reconcile depends on.

use std::collections::HashMap;

use futures::{Stream, StreamExt, stream};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

/// Passes on an object when it appears, when its generation changes (its
/// spec did) and when it goes; status and metadata updates are dropped.
///
/// A Function depends on its App's spec and existence only, while the App
/// controller writes the App's status on every step of a rollout and every
/// emulator result: without this, each such write reconciled every Function
/// of the App. kube-runtime's generation predicate is not enough, as it also
/// drops the deletion (same generation), which a Function must see to report
/// its App missing. A re-list forgets what was seen, so every listed object
/// is passed on once again.
pub fn spec_changes<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut seen: HashMap<ObjectRef<K>, Option<i64>> = HashMap::new();
    events.flat_map(move |event| {
        let passed = match event {
            Err(e) => Some(Err(e)),
            Ok(watcher::Event::Init) => {
                seen.clear();
                None
            }
            Ok(watcher::Event::InitDone) => None,
            Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                let generation = object.meta().generation;
                let previous = seen.insert(ObjectRef::from_obj(&object), generation);
                (previous != Some(generation)).then_some(Ok(object))
            }
            Ok(watcher::Event::Delete(object)) => {
                seen.remove(&ObjectRef::from_obj(&object));
                Some(Ok(object))
            }
        };
        stream::iter(passed)
    })
}

#[cfg(test)]
mod tests {
    use super::spec_changes;
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
