//! Waiting for reflector caches to finish their first list.
//!
//! kube-runtime fills a cache at the end of its first list, while the
//! controller already reconciles the objects of that list. A reconcile that
//! reads a cache before then finds every object missing and, with nothing left
//! to trigger it, never looks again; so reconciles wait for the caches they
//! read.
//!
//! They must not each await `Store::wait_until_ready`: in kube-runtime 5.0 the
//! readiness is a `futures` oneshot receiver, which keeps the waker of its
//! latest poller only. The reconciles of a controller are polled from one
//! `FuturesUnordered`, each with a waker of its own, so when several wait at
//! once all but the last sleep forever. That was seen as Functions applied in
//! the operator's first instant never being reconciled, and as a graceful
//! shutdown that never ended. [`Listed`] awaits each cache once, inside one
//! shared future that wakes every waiter of its own.
//!
//! A store that several controllers read has one more waiter on its
//! readiness: the controller that has it as its own cache (kube-runtime's
//! runner waits for it before the first reconcile). So the others do not
//! await the store at all: the watch that fills it says when it listed
//! ([`first_list`]), and they all wait on that.

use std::hash::Hash;

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};
use kube::runtime::reflector::{Lookup, Store};
use kube::runtime::watcher;

/// Resolves, for any number of waiters, once every cache it was made of has
/// finished its first list (or its writer was dropped).
#[derive(Clone)]
pub struct Listed(Shared<BoxFuture<'static, ()>>);

impl Listed {
    /// Waits for all of `caches`; see [`cache`].
    pub fn of(caches: impl IntoIterator<Item = BoxFuture<'static, ()>>) -> Self {
        Self(futures::future::join_all(caches).map(|_| ()).boxed().shared())
    }

    /// Returns once every cache has listed.
    pub async fn wait(&self) {
        self.0.clone().await;
    }

    /// This wait, as a part of another [`Listed`].
    pub fn part(&self) -> BoxFuture<'static, ()> {
        self.0.clone().boxed()
    }
}

impl std::fmt::Debug for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = self.0.peek().is_some();
        f.debug_tuple("Listed").field(&done).finish()
    }
}

/// The first list of `store`, as a part of a [`Listed`].
pub fn cache<K>(store: &Store<K>) -> BoxFuture<'static, ()>
where
    K: Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let store = store.clone();
    async move {
        let _ = store.wait_until_ready().await;
    }
    .boxed()
}

/// Passes `events` on, and resolves the returned [`Listed`] at the first
/// `InitDone` — when a `.reflect()` before this swapped its first list into
/// the store — or when the stream is dropped before that (as a store's
/// readiness does when its writer is dropped), so no waiter outlives it.
pub fn first_list<K, S>(
    events: S,
) -> (
    Listed,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
)
where
    K: Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let (listed, done) = futures::channel::oneshot::channel::<()>();
    let mut listed = Some(listed);
    let events = events.inspect(move |event| {
        if let Ok(watcher::Event::InitDone) = event
            && let Some(listed) = listed.take()
        {
            let _ = listed.send(());
        }
    });
    (Listed::of([done.map(|_| ()).boxed()]), events)
}

#[cfg(test)]
mod tests {
    use super::{Listed, cache, first_list};
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::{reflector, watcher};
    use std::time::Duration;

    #[tokio::test]
    async fn every_waiter_wakes_when_the_caches_have_listed() {
        let (first, mut first_writer) = reflector::store::<ConfigMap>();
        let (second, mut second_writer) = reflector::store::<ConfigMap>();
        let listed = Listed::of([cache(&first), cache(&second)]);
        // Reconciles, as a controller polls them: one FuturesUnordered, a waker each.
        let mut waiters: FuturesUnordered<_> = (0..3)
            .map(|i| {
                let listed = listed.clone();
                async move {
                    listed.wait().await;
                    i
                }
            })
            .collect();
        // All wait before anything has listed…
        let early = tokio::time::timeout(Duration::from_millis(50), waiters.next()).await;
        assert!(early.is_err(), "a waiter went on before the caches listed");
        first_writer.apply_watcher_event(&watcher::Event::InitDone);
        let one_listed = tokio::time::timeout(Duration::from_millis(50), waiters.next()).await;
        assert!(one_listed.is_err(), "a waiter went on before every cache listed");

        // …and every one of them goes on once the last cache has.
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            second_writer.apply_watcher_event(&watcher::Event::InitDone);
        });
        let mut woken: Vec<i32> = tokio::time::timeout(Duration::from_secs(5), waiters.collect())
            .await
            .expect("a waiter was never woken");
        woken.sort();
        assert_eq!(woken, vec![0, 1, 2]);
        writer.await.unwrap();
        // A late waiter does not wait at all.
        tokio::time::timeout(Duration::from_millis(50), listed.wait())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_watch_says_when_it_listed_or_went_away() {
        use futures::FutureExt;
        let (events, rx) = futures::channel::mpsc::unbounded();
        let (listed, stream) = first_list::<ConfigMap, _>(rx);
        let mut stream = Box::pin(stream);
        let waiters: Vec<_> = (0..3).map(|_| listed.clone()).collect();
        events.unbounded_send(Ok(watcher::Event::Init)).unwrap();
        assert!(stream.next().now_or_never().is_some());
        assert!(
            listed.wait().now_or_never().is_none(),
            "listed before the list ended"
        );
        events.unbounded_send(Ok(watcher::Event::InitDone)).unwrap();
        assert!(stream.next().now_or_never().is_some());
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter.wait())
                .await
                .expect("a waiter was never woken");
        }

        // A watch dropped before it listed releases its waiters too.
        let (_events, rx) = futures::channel::mpsc::unbounded::<Result<watcher::Event<ConfigMap>, _>>();
        let (listed, stream) = first_list(rx);
        let waiter = tokio::spawn(async move { listed.wait().await });
        drop(stream);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a waiter outlived the watch")
            .unwrap();
    }
}
