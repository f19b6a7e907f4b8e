//! The rate limit: a token bucket per GitSource. Time is passed in.
//!
//! It runs before the body is read, the Secret fetched or the signature
//! checked, so a flood against one URL costs the apiserver at most
//! [`RATE_PER_SECOND`] Secret GETs a second. A flood also starves that
//! GitSource's genuine deliveries; the interval sync is the fallback.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Deliveries a GitSource may receive at once. A merge train or a busy
/// review produces a handful; 30 leaves room.
pub const RATE_BURST: u32 = 30;
/// Deliveries a second a GitSource may receive once the burst is spent.
pub const RATE_PER_SECOND: u32 = 10;
/// Above this many buckets, full ones (of quiet or deleted GitSources) are
/// dropped: a full bucket behaves exactly like a missing one.
const PRUNE_ABOVE: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per key (`namespace/name` of a GitSource).
#[derive(Debug)]
pub struct RateLimits {
    burst: f64,
    per_second: f64,
    buckets: HashMap<String, Bucket>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::new(RATE_BURST, RATE_PER_SECOND)
    }
}

impl RateLimits {
    /// Buckets of `burst` tokens refilled at `per_second`.
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `key` at `now`; when there is none, how long until
    /// there is one.
    pub fn take(&mut self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.buckets.len() > PRUNE_ABOVE {
            let (burst, per_second) = (self.burst, self.per_second);
            self.buckets
                .retain(|_, b| refilled(*b, now, burst, per_second) < burst);
        }
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refilled(*bucket, now, self.burst, self.per_second);
        // Never move `at` backwards: an earlier `now` (callers' clocks race)
        // must not mint tokens.
        let at = bucket.at.max(now);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at };
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }
}

fn refilled(bucket: Bucket, now: Instant, burst: f64, per_second: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_refills() {
        let t0 = Instant::now();
        let mut limits = RateLimits::new(3, 10);
        for _ in 0..3 {
            assert_eq!(limits.take("ns/a", t0), Ok(()));
        }
        let wait = limits.take("ns/a", t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert_eq!(limits.take("ns/b", t0), Ok(()), "buckets are per key");
        assert_eq!(limits.take("ns/a", t0 + Duration::from_millis(100)), Ok(()));
        assert!(limits.take("ns/a", t0 + Duration::from_millis(100)).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limits.take("ns/a", later), Ok(()));
        }
        assert!(limits.take("ns/a", later).is_err());
    }

    #[test]
    fn full_buckets_are_pruned() {
        let t0 = Instant::now();
        let mut limits = RateLimits::new(2, 1);
        for i in 0..=PRUNE_ABOVE {
            assert_eq!(limits.take(&format!("ns/{i}"), t0), Ok(()));
        }
        assert_eq!(limits.buckets.len(), PRUNE_ABOVE + 1);
        assert_eq!(limits.take("ns/last", t0 + Duration::from_secs(5)), Ok(()));
        assert_eq!(limits.buckets.len(), 1);
    }
}
