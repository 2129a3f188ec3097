//! Instances kept for reuse (`spec.scaling.reuse`): a revision's idle list and the node-wide cap on idle
//! instances. One instance serves one request at a time (serial reuse, as `wasmtime serve` does for
//! wasi:http 0.2): the executor takes it out of the list for a request and puts it back afterwards, or drops
//! it. Idle instances hold pooling-allocator slots of their own (`pool.idle-instances`), so they never take
//! a slot a request needs.

use crate::host::Host;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmfn_api::Reuse;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::Proxy;

/// Why a reusable instance was discarded: the label of `wasmfn_instances_discarded_total`.
pub(crate) const DISCARD_REASONS: [&str; 8] =
    ["trap", "timeout", "memory", "max-requests", "idle", "full", "evicted", "no-response"];

/// An instantiated component and the store it lives in, between requests.
pub(crate) struct Warm {
    pub(crate) store: Store<Host>,
    pub(crate) proxy: Proxy,
    /// Requests it has served.
    pub(crate) served: u32,
}

/// The node-wide count of idle instances, bounded by `pool.idle-instances`.
pub(crate) struct IdleBudget {
    used: AtomicU32,
    max: u32,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl IdleBudget {
    pub(crate) fn new(max: u32, gauge: prometheus_client::metrics::gauge::Gauge) -> Arc<Self> {
        Arc::new(IdleBudget { used: AtomicU32::new(0), max, gauge })
    }

    fn acquire(self: &Arc<Self>) -> Option<IdleSlot> {
        let max = self.max;
        self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        self.gauge.inc();
        Some(IdleSlot(self.clone()))
    }
}

/// One idle instance's share of the budget, given back when it leaves the idle list.
struct IdleSlot(Arc<IdleBudget>);

impl Drop for IdleSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

/// An idle instance with its share of the budget. Fields drop in order: the instance (and its pool slot)
/// goes before the budget share does, so the pool never holds more than its slots.
pub(crate) struct Parked {
    warm: Warm,
    since: Instant,
    _slot: IdleSlot,
}

/// A revision's idle instances, most recently used last.
pub(crate) struct InstancePool {
    config: Reuse,
    /// `reuse.maxMemory`, or the revision's memory limit.
    ceiling: usize,
    idle: Mutex<Vec<Parked>>,
    /// Set when the guest proved it cannot serve a second request with one instance.
    disabled: AtomicBool,
}

/// Instances that left an idle list, to be dropped off the lock (and, in bulk, off the async threads); each
/// keeps its budget share until it is dropped.
pub(crate) type Discarded = Vec<Parked>;

impl InstancePool {
    pub(crate) fn new(config: Reuse, memory_limit: usize) -> Self {
        let ceiling = config.max_memory.as_ref().map_or(memory_limit, |m| m.bytes() as usize);
        InstancePool { config, ceiling, idle: Mutex::new(Vec::new()), disabled: AtomicBool::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Parked>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle instance that has not waited past the idle timeout, and the expired ones
    /// found on the way.
    pub(crate) fn take(&self) -> (Option<Warm>, Discarded) {
        if self.disabled.load(Ordering::Relaxed) {
            return (None, Vec::new());
        }
        let mut expired = Vec::new();
        let mut idle = self.lock();
        while let Some(p) = idle.pop() {
            if p.since.elapsed() < self.config.idle_timeout {
                // Its budget share goes now: the instance moves to a request, which holds a node slot.
                return (Some(p.warm), expired);
            }
            expired.push(p);
        }
        (None, expired)
    }

    /// Puts an instance back after a request it served without failing, or says why it must be dropped.
    pub(crate) fn put(&self, mut warm: Warm, budget: &Arc<IdleBudget>) -> Result<(), (Warm, &'static str)> {
        warm.served = warm.served.saturating_add(1);
        if warm.served >= self.config.max_requests {
            return Err((warm, "max-requests"));
        }
        if warm.store.data().memory.used > self.ceiling {
            return Err((warm, "memory"));
        }

        let mut idle = self.lock();
        if idle.len() >= self.config.max_idle as usize {
            return Err((warm, "full"));
        }
        let Some(slot) = budget.acquire() else { return Err((warm, "full")) };
        idle.push(Parked { warm, since: Instant::now(), _slot: slot });
        Ok(())
    }

    /// Whether instances are kept (not [`Self::disable`]d).
    pub(crate) fn enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Stops reusing this revision's instances (its guest cannot serve two requests with one); idle ones
    /// leave with the next sweep. Returns whether this call turned it off.
    pub(crate) fn disable(&self) -> bool {
        !self.disabled.swap(true, Ordering::Relaxed)
    }

    /// Takes out the instances idle past the idle timeout (the oldest are first in the list).
    pub(crate) fn expire(&self) -> Discarded {
        let timeout = self.config.idle_timeout;
        let mut idle = self.lock();
        let off = self.disabled.load(Ordering::Relaxed);
        let n = if off { idle.len() } else { idle.iter().take_while(|p| p.since.elapsed() >= timeout).count() };
        idle.drain(..n).collect()
    }

    /// Takes out every idle instance (the revision's code leaves memory).
    pub(crate) fn clear(&self) -> Discarded {
        self.lock().drain(..).collect()
    }
}
