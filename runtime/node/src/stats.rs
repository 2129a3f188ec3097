//! What a function's requests did, for metrics and the admin API: status codes, cold and warm starts,
//! latencies, evictions, the last error, and its guest log. Kept across its revisions; observed, never used to
//! decide anything (admission and eviction own their own counts).

use crate::guest_log::GuestLog;
use crate::metrics::{DiscardLabels, FnLabels, Metrics, StatusLabels};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use wasmfn_api::FunctionKey;

/// Counters of one function, kept across its revisions.
pub(crate) struct FunctionStats {
    labels: FnLabels,
    metrics: Metrics,
    codes: RwLock<HashMap<u16, Counter>>,
    pub(crate) cold: Counter,
    pub(crate) warm: AtomicU64,
    pub(crate) latency: Histogram,
    pub(crate) instantiation: Histogram,
    pub(crate) evictions: Counter,
    pub(crate) reused: Counter,
    last_error: Mutex<Option<String>>,
    pub(crate) log: Arc<GuestLog>,
    /// The console's series, from the first request on.
    activity: std::sync::OnceLock<Box<crate::series::Activity>>,
}

impl FunctionStats {
    pub(crate) fn new(key: &FunctionKey, metrics: &Metrics, log: &crate::config::GuestLogConfig) -> Self {
        let labels = FnLabels { namespace: key.namespace.clone(), function: key.name.clone() };
        let dropped = metrics.guest_log_dropped.get_or_create(&labels).clone();
        FunctionStats {
            cold: metrics.cold_starts.get_or_create(&labels).clone(),
            warm: AtomicU64::new(0),
            latency: metrics.latency.get_or_create(&labels).clone(),
            instantiation: metrics.instantiation.get_or_create(&labels).clone(),
            evictions: metrics.evictions.get_or_create(&labels).clone(),
            reused: metrics.instances_reused.get_or_create(&labels).clone(),
            last_error: Mutex::new(None),
            log: Arc::new(GuestLog::new(key, log.clone(), dropped, metrics.logs.clone())),
            codes: RwLock::default(),
            activity: std::sync::OnceLock::new(),
            metrics: metrics.clone(),
            labels,
        }
    }

    /// The function's series that mirror its admission counts: (queued, in flight).
    pub(crate) fn admission_series(
        &self,
    ) -> (prometheus_client::metrics::gauge::Gauge, prometheus_client::metrics::gauge::Gauge) {
        let m = &self.metrics;
        (m.queued.get_or_create(&self.labels).clone(), m.in_flight.get_or_create(&self.labels).clone())
    }

    /// The function's activity window and series (allocated on first use).
    pub(crate) fn activity(&self) -> &crate::series::Activity {
        self.activity.get_or_init(Box::default)
    }

    /// The activity, when the function ever served a request.
    pub(crate) fn activity_if_any(&self) -> Option<&crate::series::Activity> {
        self.activity.get().map(|a| &**a)
    }

    /// Counts one answered request.
    pub(crate) fn count(&self, code: u16) {
        if let Some(c) = self.codes.read().unwrap_or_else(|e| e.into_inner()).get(&code) {
            c.inc();
            return;
        }
        let labels =
            StatusLabels { namespace: self.labels.namespace.clone(), function: self.labels.function.clone(), code };
        let counter = self.metrics.requests.get_or_create(&labels).clone();
        counter.inc();
        self.codes.write().unwrap_or_else(|e| e.into_inner()).insert(code, counter);
    }

    /// Counts a request that found its code in memory, or one that loaded it first.
    pub(crate) fn count_start(&self, cold: bool) {
        if cold {
            self.cold.inc();
            self.activity().cold_start();
        } else {
            self.warm.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a reusable instance discarded for `reason` (rare: looked up each time).
    pub(crate) fn discarded(&self, reason: &'static str) {
        let labels =
            DiscardLabels { namespace: self.labels.namespace.clone(), function: self.labels.function.clone(), reason };
        self.metrics.instances_discarded.get_or_create(&labels).inc();
    }

    /// Total requests answered, over all status codes.
    pub(crate) fn total(&self) -> u64 {
        self.codes.read().unwrap_or_else(|e| e.into_inner()).values().map(|c| c.get()).sum()
    }

    pub(crate) fn set_error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops this function's series from the registry (the function was removed).
    pub(crate) fn unregister(&self) {
        let m = &self.metrics;
        for code in self.codes.read().unwrap_or_else(|e| e.into_inner()).keys() {
            m.requests.remove(&StatusLabels {
                namespace: self.labels.namespace.clone(),
                function: self.labels.function.clone(),
                code: *code,
            });
        }
        m.in_flight.remove(&self.labels);
        m.queued.remove(&self.labels);
        m.cold_starts.remove(&self.labels);
        m.latency.remove(&self.labels);
        m.instantiation.remove(&self.labels);
        m.evictions.remove(&self.labels);
        m.instances_reused.remove(&self.labels);
        for reason in crate::instances::DISCARD_REASONS {
            m.instances_discarded.remove(&DiscardLabels {
                namespace: self.labels.namespace.clone(),
                function: self.labels.function.clone(),
                reason,
            });
        }
        m.guest_log_dropped.remove(&self.labels);
    }
}
