//! The replay window: delivery ids seen recently, so a captured, validly
//! signed delivery cannot be sent again. Bounded in time and in memory; time
//! is passed in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a delivery id is remembered. GitHub never resends a delivery by
/// itself; a manual "Redeliver" reuses the id, so within this hour it is
/// refused too (the fallback interval sync makes up for it).
pub const REPLAY_WINDOW: Duration = Duration::from_secs(60 * 60);
/// How many delivery ids are remembered at most (a few hundred KiB); the
/// oldest is forgotten first.
pub const REPLAY_CAPACITY: usize = 10_000;

/// Delivery ids seen within the window.
#[derive(Debug)]
pub struct Replays {
    window: Duration,
    capacity: usize,
    /// id → sequence number of its entry in `order`.
    seen: HashMap<String, u64>,
    /// Oldest first. Entries of forgotten ids stay until they age out; the
    /// sequence number tells them apart from a later entry for the same id.
    order: VecDeque<(Instant, u64, String)>,
    next: u64,
}

impl Default for Replays {
    fn default() -> Self {
        Self::new(REPLAY_WINDOW, REPLAY_CAPACITY)
    }
}

impl Replays {
    /// An empty window of `window`, remembering at most `capacity` ids.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        }
    }

    /// Remembers `id` as seen at `now`. `false` when it was already seen
    /// within the window: a replay.
    pub fn first_seen(&mut self, id: &str, now: Instant) -> bool {
        while let Some((at, _, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            self.pop_oldest();
        }
        if self.seen.contains_key(id) {
            return false;
        }
        while self.order.len() >= self.capacity {
            self.pop_oldest();
        }
        let seq = self.next;
        self.next += 1;
        self.seen.insert(id.to_owned(), seq);
        self.order.push_back((now, seq, id.to_owned()));
        true
    }

    /// Forgets `id`, so that a delivery that could not be handed on (the
    /// operator was busy or stopping) can be redelivered.
    pub fn forget(&mut self, id: &str) {
        self.seen.remove(id);
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn pop_oldest(&mut self) {
        if let Some((_, seq, id)) = self.order.pop_front()
            && self.seen.get(&id) == Some(&seq)
        {
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_id_is_a_replay_until_the_window_passes() {
        let t0 = Instant::now();
        let mut replays = Replays::new(Duration::from_secs(60), 10);
        assert!(replays.first_seen("a", t0));
        assert!(!replays.first_seen("a", t0 + Duration::from_secs(59)));
        assert!(replays.first_seen("b", t0 + Duration::from_secs(59)));
        assert!(replays.first_seen("a", t0 + Duration::from_secs(60)));
        assert_eq!(replays.len(), 2);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_id_goes_first() {
        let t0 = Instant::now();
        let mut replays = Replays::new(Duration::from_secs(3600), 3);
        for id in ["a", "b", "c", "d"] {
            assert!(replays.first_seen(id, t0));
        }
        assert_eq!(replays.len(), 3);
        assert!(replays.first_seen("a", t0), "a was evicted");
        assert!(!replays.first_seen("d", t0));
        assert!(!replays.first_seen("c", t0));
    }

    #[test]
    fn a_forgotten_id_is_accepted_again_and_its_old_entry_does_not_evict_the_new_one() {
        let t0 = Instant::now();
        let mut replays = Replays::new(Duration::from_secs(60), 10);
        assert!(replays.first_seen("a", t0));
        replays.forget("a");
        assert!(replays.is_empty());
        assert!(replays.first_seen("a", t0 + Duration::from_secs(30)));
        // The first entry ages out at t0 + 60; the second must stay.
        assert!(!replays.first_seen("a", t0 + Duration::from_secs(61)));
    }
}
