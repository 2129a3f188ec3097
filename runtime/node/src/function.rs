//! A deployed revision: its immutable config, its instance slots and queue, and its compiled code, which
//! leaves memory after the idle TTL (scale to zero) and comes back from the AOT cache on the next request.

use crate::blobs::Digest;
use crate::host::{GuestLog, Host};
use crate::metrics::{FnLabels, Metrics, StatusLabels};
use arc_swap::ArcSwapOption;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmfn_api::Function;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Compiled code of one component, shared by every revision that uses the same digest.
pub(crate) struct Code {
    pub(crate) component: Component,
}

/// A revision's code, linked against the host and ready to instantiate per request.
pub(crate) struct Loaded {
    pub(crate) pre: ProxyPre<Host>,
    // Keeps the shared compiled code alive while any revision using it is loaded.
    _code: Arc<Code>,
    // Declared last: fields drop in order, so the gauge falls only once the code is really gone.
    _counted: Counted,
}

struct Counted(Gauge);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Loaded {
    pub(crate) fn new(pre: ProxyPre<Host>, code: Arc<Code>, loaded_gauge: Gauge) -> Loaded {
        loaded_gauge.inc();
        Loaded { pre, _code: code, _counted: Counted(loaded_gauge) }
    }
}

/// Counters of one function, kept across its revisions.
pub(crate) struct FunctionStats {
    labels: FnLabels,
    metrics: Metrics,
    codes: RwLock<HashMap<u16, Counter>>,
    pub(crate) in_flight: Gauge,
    pub(crate) queued: Gauge,
    pub(crate) cold: Counter,
    pub(crate) warm: AtomicU64,
    pub(crate) latency: Histogram,
    pub(crate) instantiation: Histogram,
    pub(crate) evictions: Counter,
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) log: Arc<GuestLog>,
    /// Concurrency slots and the queue count, shared by the function's revisions so `maxConcurrency` and
    /// `maxQueue` hold across an update; a changed limit starts a new semaphore.
    slots: Mutex<Option<(u32, Arc<Semaphore>)>>,
    waiting: AtomicU32,
}

impl FunctionStats {
    pub(crate) fn new(namespace: &str, name: &str, metrics: &Metrics, log: &crate::config::GuestLogConfig) -> Self {
        let labels = FnLabels { namespace: namespace.into(), function: name.into() };
        let dropped = metrics.guest_log_dropped.get_or_create(&labels).clone();
        FunctionStats {
            in_flight: metrics.in_flight.get_or_create(&labels).clone(),
            queued: metrics.queued.get_or_create(&labels).clone(),
            cold: metrics.cold_starts.get_or_create(&labels).clone(),
            warm: AtomicU64::new(0),
            latency: metrics.latency.get_or_create(&labels).clone(),
            instantiation: metrics.instantiation.get_or_create(&labels).clone(),
            evictions: metrics.evictions.get_or_create(&labels).clone(),
            last_error: Mutex::new(None),
            log: Arc::new(GuestLog::new(format!("{namespace}/{name}"), log.clone(), dropped)),
            codes: RwLock::default(),
            slots: Mutex::new(None),
            waiting: AtomicU32::new(0),
            metrics: metrics.clone(),
            labels,
        }
    }

    /// The semaphore for `max` concurrent requests (none for 0), reused while the limit is unchanged.
    fn slots_for(&self, max: u32) -> Option<Arc<Semaphore>> {
        if max == 0 {
            return None;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match &*slots {
            Some((n, s)) if *n == max => Some(s.clone()),
            _ => {
                let s = Arc::new(Semaphore::new(max as usize));
                *slots = Some((max, s.clone()));
                Some(s)
            }
        }
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

    /// Total requests answered, over all status codes.
    pub(crate) fn total(&self) -> u64 {
        self.codes.read().unwrap_or_else(|e| e.into_inner()).values().map(|c| c.get()).sum()
    }

    pub(crate) fn set_error(&self, message: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
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
        m.guest_log_dropped.remove(&self.labels);
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The queue is full.
    QueueFull,
    /// It waited `queueTimeout` without getting a slot.
    QueueTimeout,
}

/// The slots a running request holds; dropping it frees them.
pub(crate) struct Admitted {
    _function: Option<OwnedSemaphorePermit>,
    _node: OwnedSemaphorePermit,
    in_flight: Gauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

struct QueueSlot<'a>(&'a Revision);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.stats.waiting.fetch_sub(1, Ordering::Relaxed);
        self.0.stats.queued.dec();
    }
}

/// The environment of every instance: the function's identity and limits (what the SDKs and the Kubeless-style
/// `context` read; Knative's `K_SERVICE`/`K_REVISION` too), then `spec.env`, which may override them.
fn guest_env(function: &Function, generation: u64) -> Vec<(String, String)> {
    let meta = &function.metadata;
    let limits = &function.spec.limits;
    let revision = format!("{}-{generation}", meta.name);
    let mut env = vec![
        ("WASMFN_FUNCTION_NAME".to_string(), meta.name.clone()),
        ("WASMFN_FUNCTION_NAMESPACE".to_string(), meta.namespace.clone()),
        ("WASMFN_REVISION".to_string(), revision.clone()),
        ("WASMFN_TIMEOUT".to_string(), limits.timeout.as_secs().max(1).to_string()),
        ("WASMFN_MEMORY_LIMIT".to_string(), limits.memory.to_string()),
        ("K_SERVICE".to_string(), meta.name.clone()),
        ("K_REVISION".to_string(), revision),
    ];
    for var in &function.spec.env {
        env.retain(|(name, _)| *name != var.name);
        env.push((var.name.clone(), var.value.clone()));
    }
    env
}

/// One immutable revision of a function.
pub(crate) struct Revision {
    /// `<name>-<generation>`.
    pub(crate) name: String,
    pub(crate) generation: u64,
    /// The manifest it captured: `spec.component` pinned to the digest, no routing fields.
    pub(crate) function: Function,
    pub(crate) digest: Digest,
    pub(crate) created: SystemTime,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) stats: Arc<FunctionStats>,
    /// What this revision answered (the function's `stats` count over all its revisions).
    pub(crate) counters: crate::counters::RevisionCounters,
    slots: Option<Arc<Semaphore>>,
    code: ArcSwapOption<Loaded>,
    load_lock: tokio::sync::Mutex<()>,
    /// Milliseconds since `epoch` of the last request.
    last_used: AtomicU64,
    epoch: Instant,
}

impl Revision {
    pub(crate) fn new(
        function: Function,
        digest: Digest,
        generation: u64,
        created: SystemTime,
        stats: Arc<FunctionStats>,
        epoch: Instant,
    ) -> Revision {
        let slots = stats.slots_for(function.spec.scaling.max_concurrency);
        Revision {
            name: format!("{}-{generation}", function.metadata.name),
            generation,
            env: guest_env(&function, generation),
            digest,
            created,
            stats,
            counters: Default::default(),
            slots,
            code: ArcSwapOption::empty(),
            load_lock: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            epoch,
            function,
        }
    }

    /// Waits for a function slot and a node slot, within `maxQueue` and `queueTimeout`.
    pub(crate) async fn admit(&self, node: &Arc<Semaphore>) -> Result<Admitted, Rejected> {
        let scaling = &self.function.spec.scaling;
        let deadline = tokio::time::Instant::now() + scaling.queue_timeout;
        let mut slot: Option<QueueSlot<'_>> = None;
        let function = match &self.slots {
            None => None,
            Some(s) => Some(match s.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    slot = Some(self.enqueue()?);
                    Self::wait(s, deadline).await?
                }
            }),
        };
        let node = match node.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if slot.is_none() {
                    slot = Some(self.enqueue()?);
                }
                Self::wait(node, deadline).await?
            }
        };
        drop(slot);
        self.stats.in_flight.inc();
        Ok(Admitted { _function: function, _node: node, in_flight: self.stats.in_flight.clone() })
    }

    fn enqueue(&self) -> Result<QueueSlot<'_>, Rejected> {
        let max = self.function.spec.scaling.max_queue;
        if self.stats.waiting.fetch_add(1, Ordering::Relaxed) >= max {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Rejected::QueueFull);
        }
        self.stats.queued.inc();
        Ok(QueueSlot(self))
    }

    async fn wait(s: &Arc<Semaphore>, deadline: tokio::time::Instant) -> Result<OwnedSemaphorePermit, Rejected> {
        match tokio::time::timeout_at(deadline, s.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            // The semaphores are never closed; treat it like a timeout rather than panic.
            Ok(Err(_)) | Err(_) => Err(Rejected::QueueTimeout),
        }
    }

    /// The loaded code, if in memory.
    pub(crate) fn loaded(&self) -> Option<Arc<Loaded>> {
        self.code.load_full()
    }

    /// The loaded code, loading it with `load` (once, even under concurrent requests) when evicted.
    /// Returns whether this call loaded it (a cold start).
    pub(crate) async fn code<F, Fut>(&self, load: F) -> Result<(Arc<Loaded>, bool), crate::Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<Loaded>, crate::Error>>,
    {
        self.touch();
        if let Some(l) = self.code.load_full() {
            return Ok((l, false));
        }
        let _guard = self.load_lock.lock().await;
        if let Some(l) = self.code.load_full() {
            return Ok((l, false));
        }
        let loaded = load().await?;
        self.code.store(Some(loaded.clone()));
        Ok((loaded, true))
    }

    /// Installs code loaded at deploy time.
    pub(crate) fn install(&self, loaded: Arc<Loaded>) {
        self.code.store(Some(loaded));
    }

    pub(crate) fn touch(&self) {
        self.last_used.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Takes the compiled code out if unused for `ttl`; the caller drops it (unmapping code and purging pool
    /// slots is blocking work). In-flight requests keep their own reference.
    pub(crate) fn evict_if_idle(&self, ttl: Duration) -> Option<Arc<Loaded>> {
        // `touch` may run between the two reads: saturate rather than underflow.
        let idle = (self.epoch.elapsed().as_millis() as u64).saturating_sub(self.last_used.load(Ordering::Relaxed));
        if idle >= ttl.as_millis() as u64 && self.code.load().is_some() && self.stats.in_flight.get() == 0 {
            let code = self.code.swap(None);
            self.stats.evictions.inc();
            tracing::debug!(revision = %self.name, idle_ms = idle, "evicted compiled code (scale to zero)");
            return code;
        }
        None
    }

    pub(crate) fn key(&self) -> String {
        self.function.key()
    }
}
