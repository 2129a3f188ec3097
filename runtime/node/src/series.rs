//! The last hour of a function's activity, for the console's charts: every `interval` (30 s by default) a point
//! with the requests, 5xx answers and cold starts of that interval, its p50/p99 latency and the requests in
//! flight at its end.
//!
//! Recording adds three atomic increments per request to a window the sampler drains. A function allocates its
//! window and series on its first request, so idle functions cost one pointer (density).

use crate::counters::Latency;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// How far back the series goes.
pub(crate) const SPAN: Duration = Duration::from_secs(3600);

/// One interval.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// The interval's end, in seconds since the Unix epoch.
    pub time: u64,
    /// Requests answered in the interval.
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Requests that loaded code first.
    pub cold_starts: u64,
    /// Median latency of the interval's requests (ms), when there were any.
    pub p50_ms: Option<f64>,
    /// 99th percentile (ms).
    pub p99_ms: Option<f64>,
    /// Requests running at the interval's end.
    pub in_flight: i64,
}

/// What a function did since the last sample, and its series.
pub(crate) struct Activity {
    requests: AtomicU64,
    errors: AtomicU64,
    cold: AtomicU64,
    latency: Latency,
    points: Mutex<VecDeque<Point>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cold: AtomicU64::new(0),
            latency: Latency::new(),
            points: Mutex::default(),
        }
    }
}

impl Activity {
    /// Counts one answered request.
    pub(crate) fn record(&self, status: u16, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.record(latency);
    }

    /// Counts a cold start.
    pub(crate) fn cold_start(&self) {
        self.cold.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the interval ending `now`: a point from what was recorded since the last one (an idle interval
    /// adds a zero point only while the series has points, so the chart shows the gap).
    pub(crate) fn sample(&self, now: SystemTime, in_flight: i64, interval: Duration) {
        let requests = self.requests.swap(0, Ordering::Relaxed);
        let errors = self.errors.swap(0, Ordering::Relaxed);
        let cold_starts = self.cold.swap(0, Ordering::Relaxed);
        let (p50, p99) = (self.latency.quantile(0.5), self.latency.quantile(0.99));
        self.latency.clear();
        let time = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut points = self.points.lock().unwrap_or_else(|e| e.into_inner());
        if requests == 0 && in_flight == 0 && points.is_empty() {
            return;
        }
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0);
        points.push_back(Point { time, requests, errors, cold_starts, p50_ms: ms(p50), p99_ms: ms(p99), in_flight });
        let keep = (SPAN.as_secs() / interval.as_secs().max(1)) as usize;
        while points.len() > keep.max(1) {
            points.pop_front();
        }
    }

    /// The points, oldest first.
    pub(crate) fn points(&self) -> Vec<Point> {
        self.points.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sample_closes_an_interval() {
        let a = Activity::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let every = Duration::from_secs(30);
        a.sample(t0, 0, every);
        assert!(a.points().is_empty(), "nothing before the first request");
        for ms in [1, 2, 3, 100] {
            a.record(200, Duration::from_millis(ms));
        }
        a.record(503, Duration::from_millis(2));
        a.cold_start();
        a.sample(t0 + every, 2, every);
        a.sample(t0 + every * 2, 0, every);
        let p = a.points();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].requests, p[0].errors, p[0].cold_starts, p[0].in_flight), (5, 1, 1, 2));
        assert!(p[0].p50_ms.unwrap() >= 1.8 && p[0].p50_ms.unwrap() <= 2.3, "{:?}", p[0].p50_ms);
        assert!(p[0].p99_ms.unwrap() >= 90.0, "{:?}", p[0].p99_ms);
        assert_eq!((p[1].requests, p[1].p50_ms), (0, None), "an idle interval after activity");
        for i in 0..200 {
            a.sample(t0 + every * (3 + i), 0, every);
        }
        assert_eq!(a.points().len(), 120, "one hour of 30 s points");
    }
}
