//! Prometheus metrics, served as text at the admin API's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Labels of per-function series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FnLabels {
    pub namespace: String,
    pub function: String,
}

/// A function's series with why an instance kept for reuse was discarded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DiscardLabels {
    pub namespace: String,
    pub function: String,
    pub reason: &'static str,
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub namespace: String,
    pub function: String,
    pub code: u16,
}

/// Labels of per-trigger event series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabels {
    pub namespace: String,
    pub function: String,
    pub trigger: String,
}

/// Labels of per-namespace series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NamespaceLabels {
    pub namespace: String,
}

/// Labels of the rollout outcome counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RolloutLabels {
    pub namespace: String,
    pub function: String,
    pub outcome: &'static str,
}

/// Labels of the allocator info series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AllocatorLabels {
    pub strategy: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

fn instantiation_histogram() -> Histogram {
    Histogram::new([
        0.000005, 0.00001, 0.000015, 0.00002, 0.000025, 0.00003, 0.00004, 0.00005, 0.000075, 0.0001, 0.00025, 0.0005,
        0.001, 0.0025, 0.01, 0.1,
    ])
}

/// Every series the node exports. Cloning shares the series.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<StatusLabels, Counter>,
    pub latency: Family<FnLabels, Histogram, fn() -> Histogram>,
    pub instantiation: Family<FnLabels, Histogram, fn() -> Histogram>,
    pub cold_starts: Family<FnLabels, Counter>,
    pub evictions: Family<FnLabels, Counter>,
    pub instances_reused: Family<FnLabels, Counter>,
    pub instances_discarded: Family<DiscardLabels, Counter>,
    pub idle_instances: Gauge,
    pub queued: Family<FnLabels, Gauge>,
    pub in_flight: Family<FnLabels, Gauge>,
    pub guest_log_dropped: Family<FnLabels, Counter>,
    pub rollouts: Family<RolloutLabels, Counter>,
    pub broker_events: Family<NamespaceLabels, Counter>,
    pub events_received: Family<EventLabels, Counter>,
    pub events_delivered: Family<EventLabels, Counter>,
    pub events_retried: Family<EventLabels, Counter>,
    pub events_dead_lettered: Family<EventLabels, Counter>,
    pub events_dropped: Family<EventLabels, Counter>,
    pub events_skipped: Family<EventLabels, Counter>,
    pub replies_dropped: Family<NamespaceLabels, Counter>,
    pub compile_seconds: Histogram,
    pub aot_hits: Counter,
    pub aot_misses: Counter,
    pub aot_corrupt: Counter,
    pub fn_cache_hits: Counter,
    pub fn_cache_misses: Counter,
    pub fn_cache_corrupt: Counter,
    pub image_layer_fetches: Counter,
    pub blobs_collected: Counter,
    pub table_bytes_written: Counter,
    pub loaded: Gauge,
    pub functions: Gauge,
    pub allocator: Family<AllocatorLabels, Gauge>,
    pub memory_budget: Gauge,
    pub memory_reserved: Gauge,
    /// Recent guest and build output, for the admin API's `/v1/logs` (not a Prometheus series).
    pub logs: Arc<crate::logs::LogHub>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut r = Registry::with_prefix("wasmfn");
        let m = Metrics {
            registry: Arc::default(),
            logs: Arc::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            instantiation: Family::new_with_constructor(instantiation_histogram),
            cold_starts: Family::default(),
            evictions: Family::default(),
            instances_reused: Family::default(),
            instances_discarded: Family::default(),
            idle_instances: Gauge::default(),
            queued: Family::default(),
            in_flight: Family::default(),
            guest_log_dropped: Family::default(),
            rollouts: Family::default(),
            broker_events: Family::default(),
            events_received: Family::default(),
            events_delivered: Family::default(),
            events_retried: Family::default(),
            events_dead_lettered: Family::default(),
            events_dropped: Family::default(),
            events_skipped: Family::default(),
            replies_dropped: Family::default(),
            compile_seconds: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            aot_hits: Counter::default(),
            aot_misses: Counter::default(),
            aot_corrupt: Counter::default(),
            fn_cache_hits: Counter::default(),
            fn_cache_misses: Counter::default(),
            fn_cache_corrupt: Counter::default(),
            image_layer_fetches: Counter::default(),
            blobs_collected: Counter::default(),
            table_bytes_written: Counter::default(),
            loaded: Gauge::default(),
            functions: Gauge::default(),
            allocator: Family::default(),
            memory_budget: Gauge::default(),
            memory_reserved: Gauge::default(),
        };
        r.register("requests", "Requests answered, by function and status code", m.requests.clone());
        r.register("request_duration_seconds", "Request latency until the response head", m.latency.clone());
        r.register(
            "instantiation_duration_seconds",
            "Time to instantiate a component for one request",
            m.instantiation.clone(),
        );
        r.register("cold_starts", "Requests that had to load compiled code into memory first", m.cold_starts.clone());
        r.register("evictions", "Times a function's compiled code left memory after its idle TTL", m.evictions.clone());
        r.register(
            "instances_reused",
            "Requests served by an instance kept from an earlier request (spec.scaling.reuse)",
            m.instances_reused.clone(),
        );
        r.register(
            "instances_discarded",
            "Reusable instances discarded, by reason (trap, timeout, memory, max-requests, idle, full, evicted, no-response)",
            m.instances_discarded.clone(),
        );
        r.register("idle_instances", "Instances waiting for their next request on this node", m.idle_instances.clone());
        r.register("queue_depth", "Requests waiting for a free instance slot", m.queued.clone());
        r.register("in_flight", "Requests running in an instance", m.in_flight.clone());
        r.register(
            "guest_log_lines_dropped",
            "Guest output lines dropped by the rate limit",
            m.guest_log_dropped.clone(),
        );
        r.register("rollouts", "Rollouts ended, by outcome (succeeded, rolled-back)", m.rollouts.clone());
        r.register("broker_events", "Events posted to a namespace's broker", m.broker_events.clone());
        r.register("events_received", "Events a trigger took for delivery", m.events_received.clone());
        r.register("events_delivered", "Events a function answered with 2xx", m.events_delivered.clone());
        r.register("events_retried", "Delivery attempts after a failed one", m.events_retried.clone());
        r.register(
            "events_dead_lettered",
            "Events sent to the dead-letter sink after the last attempt failed",
            m.events_dead_lettered.clone(),
        );
        r.register(
            "events_dropped",
            "Events given up on: every attempt failed and there is no dead-letter sink (or it failed too)",
            m.events_dropped.clone(),
        );
        r.register(
            "event_replies_dropped",
            "Reply events dropped because the node had too many deliveries in progress",
            m.replies_dropped.clone(),
        );
        r.register(
            "events_skipped",
            "Cron runs skipped because the previous run was still being delivered",
            m.events_skipped.clone(),
        );
        r.register("compile_duration_seconds", "Time to compile a component to native code", m.compile_seconds.clone());
        r.register("aot_cache_hits", "Compiled components loaded from the on-disk AOT cache", m.aot_hits.clone());
        r.register("aot_cache_misses", "Compiled components not in the AOT cache (compiled)", m.aot_misses.clone());
        r.register(
            "aot_cache_corrupt",
            "AOT cache entries found corrupt or stale and recompiled",
            m.aot_corrupt.clone(),
        );
        r.register(
            "compile_cache_hits",
            "Functions Cranelift took from the compilation cache instead of compiling them",
            m.fn_cache_hits.clone(),
        );
        r.register(
            "compile_cache_misses",
            "Functions Cranelift compiled (not in the cache)",
            m.fn_cache_misses.clone(),
        );
        r.register(
            "compile_cache_corrupt",
            "Compilation cache entries found corrupt, removed and compiled again",
            m.fn_cache_corrupt.clone(),
        );
        r.register(
            "image_layer_fetches",
            "Component layers downloaded from registries (one per digest: later deploys find it in the store)",
            m.image_layer_fetches.clone(),
        );
        r.register(
            "blobs_collected",
            "Unreferenced components deleted from the store after the grace period",
            m.blobs_collected.clone(),
        );
        r.register(
            "table_bytes_written",
            "Bytes written to persist the function table (one function's file per change)",
            m.table_bytes_written.clone(),
        );
        r.register("loaded_revisions", "Revisions whose compiled code is in memory", m.loaded.clone());
        r.register("functions", "Functions in the node's table", m.functions.clone());
        r.register(
            "instance_allocator",
            "The instance allocator in use (1 for the active strategy)",
            m.allocator.clone(),
        );
        r.register(
            "memory_budget_bytes",
            "The node's memory budget for guests and buffered bodies",
            m.memory_budget.clone(),
        );
        r.register(
            "memory_reserved_bytes",
            "Memory reserved now: instances' linear memory, bodies and events held",
            m.memory_reserved.clone(),
        );
        Metrics { registry: Arc::new(r), ..m }
    }

    /// The Prometheus text exposition of every series.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
