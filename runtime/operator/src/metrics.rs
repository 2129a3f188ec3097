//! The operator's Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Counters of reconciles and builds.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    builds_started: Counter,
    builds_finished: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wasmfn_operator");
        let reconciles = Counter::default();
        let errors = Family::default();
        let duration = Histogram::new([0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        let builds_started = Counter::default();
        let builds_finished = Family::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_errors", "Reconciles failed, by error", errors.clone());
        registry.register("reconcile_duration_seconds", "Time of one reconcile", duration.clone());
        registry.register("builds_started", "Build Jobs created", builds_started.clone());
        registry.register("builds_finished", "Build Jobs finished, by outcome", builds_finished.clone());
        Metrics { registry, reconciles, errors, duration, builds_started, builds_finished }
    }
}

/// Observes a reconcile's duration when dropped.
pub struct Timer<'a> {
    start: Instant,
    histogram: &'a Histogram,
}

impl Drop for Timer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Counts a reconcile and times it.
    pub fn reconcile_timer(&self) -> Timer<'_> {
        self.reconciles.inc();
        Timer { start: Instant::now(), histogram: &self.duration }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, error: &'static str) {
        self.errors.get_or_create(&ErrorLabels { error }).inc();
    }

    /// Counts a created build Job.
    pub fn build_started(&self) {
        self.builds_started.inc();
    }

    /// Counts a finished build Job.
    pub fn build_finished(&self, outcome: &'static str) {
        self.builds_finished.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
