//! Per-revision counters: requests, 5xx errors and a latency histogram whose quantiles (p50, p99) feed the
//! revision status and the rollout's error check. Lock-free to record, and persisted so they survive a restart.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two: a recorded value lands in a bucket at most 12.5% wider than itself.
const SUB: u32 = 8;
/// Buckets for 0 µs to 2^40 µs (12 days): more is clamped into the last.
const BUCKETS: usize = (SUB + (40 - 3) * SUB + SUB) as usize;

/// Log-linear histogram of microseconds.
pub(crate) struct Latency {
    buckets: Box<[AtomicU64]>,
}

fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= 3
    let sub = (us >> (exp - 3)) & (SUB as u64 - 1);
    ((SUB + (exp - 3) * SUB) as usize + sub as usize).min(BUCKETS - 1)
}

/// The range `[low, high)` of microseconds a bucket holds.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    let sub = SUB as u64;
    if i < sub {
        return (i, i + 1);
    }
    let shift = (i - sub) / sub;
    let s = (i - sub) % sub;
    ((sub + s) << shift, (sub + s + 1) << shift)
}

impl Latency {
    pub(crate) fn new() -> Latency {
        Latency { buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Forgets every recorded value (the series' window after each sample).
    pub(crate) fn clear(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The `q` quantile (0 to 1), the middle of its bucket; `None` before the first request.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bucket_range(i);
                return Some(Duration::from_nanos((low + high) * 500));
            }
        }
        None
    }
}

/// What one revision answered.
pub(crate) struct RevisionCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: Latency,
}

impl Default for RevisionCounters {
    fn default() -> Self {
        RevisionCounters { requests: AtomicU64::new(0), errors: AtomicU64::new(0), latency: Latency::new() }
    }
}

impl RevisionCounters {
    /// Counts one response: its status and the time to its head.
    pub(crate) fn record(&self, status: u16, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(latency);
    }

    /// Requests answered.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with a 5xx status.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn latency(&self) -> &Latency {
        &self.latency
    }

    /// The counters as persisted.
    pub(crate) fn save(&self) -> SavedCounters {
        let latency_us = (self.latency.buckets.iter().enumerate())
            .map(|(i, b)| (i as u16, b.load(Ordering::Relaxed)))
            .filter(|(_, c)| *c > 0)
            .collect();
        SavedCounters { requests: self.requests(), errors: self.errors(), latency_us }
    }

    /// Adds persisted counts (a restart).
    pub(crate) fn restore(&self, saved: &SavedCounters) {
        self.requests.fetch_add(saved.requests, Ordering::Relaxed);
        self.errors.fetch_add(saved.errors, Ordering::Relaxed);
        for (i, c) in &saved.latency_us {
            if let Some(b) = self.latency.buckets.get(*i as usize) {
                b.fetch_add(*c, Ordering::Relaxed);
            }
        }
    }
}

/// Persisted counters of one revision; the histogram as `[bucket, count]` pairs of its non-empty buckets.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SavedCounters {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    #[serde(default)]
    pub(crate) latency_us: Vec<(u16, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_with_bounded_error() {
        for us in [0u64, 1, 7, 8, 9, 15, 16, 17, 100, 999, 1000, 12_345, 1 << 30, (1 << 40) - 1] {
            let (low, high) = bucket_range(bucket_of(us));
            assert!(low <= us && us < high, "{us} not in [{low}, {high})");
            assert!((high - low) as f64 <= (low.max(8) as f64) / 8.0 + 1.0, "{us}: [{low}, {high}) too wide");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_and_persistence() {
        let c = RevisionCounters::default();
        assert_eq!(c.latency().quantile(0.5), None);
        for i in 0..100u64 {
            c.record(if i < 10 { 500 } else { 200 }, Duration::from_millis(if i < 98 { 1 } else { 100 }));
        }
        let p50 = c.latency().quantile(0.5).unwrap();
        let p99 = c.latency().quantile(0.99).unwrap();
        assert!(p50 >= Duration::from_micros(900) && p50 <= Duration::from_micros(1100), "{p50:?}");
        assert!(p99 >= Duration::from_millis(90) && p99 <= Duration::from_millis(110), "{p99:?}");
        let saved = c.save();
        assert_eq!((saved.requests, saved.errors), (100, 10));
        let back = RevisionCounters::default();
        back.restore(&serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap());
        assert_eq!(back.save(), saved);
        assert_eq!(back.latency().quantile(0.99), Some(p99));
    }
}
