//! Admission: whether a request runs now, waits in its function's queue, or is refused with a 503.
//!
//! A request needs a slot of its function (`scaling.maxConcurrency`, none when 0) and a slot of the node
//! (`pool.instances`, the instances that may exist at once). Without one it waits, up to `scaling.maxQueue`
//! requests per function and `scaling.queueTimeout` each. In-flight requests are counted per revision (what
//! eviction asks) and summed per function; the function's gauges observe the counts, they do not hold them.
//!
//! Fair share: no function holds more than `fair-share` percent of the node's slots (an unlimited
//! `maxConcurrency` means that share) or of its memory budget (`budget.rs`), so a flood of one tenant's
//! requests queues behind its own share while the others' keep running. Last, the request reserves the
//! memory its revision's instances have needed (waiting in the queue for it too); a request that reads its body
//! first arrives holding the body's bytes.

use crate::budget::{MemoryBudget, Reservation, Share};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmfn_api::Scaling;

/// The node's capacity: one slot per instance that may exist at once, the memory budget, and what one
/// function may hold of them.
pub(crate) struct Admission {
    capacity: Arc<Semaphore>,
    /// Slots one function may hold (its fair share of `capacity`).
    share_slots: u32,
    budget: MemoryBudget,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The queue is full.
    QueueFull,
    /// It waited `queueTimeout` without getting a slot.
    QueueTimeout,
    /// It waited `queueTimeout` for the memory its instances need.
    Memory,
}

impl Rejected {
    /// What the client is told (with a 503 and `Retry-After`).
    pub(crate) fn message(self) -> &'static str {
        match self {
            Rejected::QueueFull => "the function is at its concurrency limit and its queue is full",
            Rejected::QueueTimeout => "the function is at its concurrency limit; timed out waiting in the queue",
            Rejected::Memory => {
                "the node's memory budget (or the function's fair share of it) is reserved by requests in \
                 progress; timed out waiting in the queue"
            }
        }
    }
}

/// A function's slots and queue, shared by its revisions so `maxConcurrency` and `maxQueue` hold across an
/// update; a changed limit starts a new semaphore.
pub(crate) struct FunctionGate {
    slots: Mutex<Option<(u32, Arc<Semaphore>)>>,
    /// The function's share of the memory budget, made on its first request.
    share: OnceLock<Share>,
    waiting: AtomicU32,
    queued_series: Gauge,
    in_flight_series: Gauge,
}

impl FunctionGate {
    /// A gate whose counts the two series mirror.
    pub(crate) fn new(queued_series: Gauge, in_flight_series: Gauge) -> FunctionGate {
        FunctionGate {
            slots: Mutex::new(None),
            share: OnceLock::new(),
            waiting: AtomicU32::new(0),
            queued_series,
            in_flight_series,
        }
    }

    /// The semaphore for `max` concurrent requests, reused while the limit is unchanged.
    fn slots_for(&self, max: u32) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        match &*slots {
            Some((n, s)) if *n == max => s.clone(),
            _ => {
                let s = Arc::new(Semaphore::new(max as usize));
                *slots = Some((max, s.clone()));
                s
            }
        }
    }

    /// Requests waiting for a slot now.
    pub(crate) fn queued(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// One revision's admission settings and the requests running on it.
pub(crate) struct RevisionGate {
    function: Arc<FunctionGate>,
    max_concurrency: u32,
    /// The function's slots for this revision's `maxConcurrency` capped by the fair share, on first use.
    slots: OnceLock<Arc<Semaphore>>,
    /// The most memory one instance of the revision has had (bytes): what a request reserves up front.
    memory_hint: AtomicU64,
    max_queue: u32,
    queue_timeout: Duration,
    in_flight: AtomicU32,
}

impl RevisionGate {
    /// The gate of a revision with these scaling settings.
    pub(crate) fn new(function: Arc<FunctionGate>, scaling: &Scaling) -> RevisionGate {
        RevisionGate {
            max_concurrency: scaling.max_concurrency,
            slots: OnceLock::new(),
            memory_hint: AtomicU64::new(0),
            function,
            max_queue: scaling.max_queue,
            queue_timeout: scaling.queue_timeout,
            in_flight: AtomicU32::new(0),
        }
    }

    /// Requests running on this revision now.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests of the function waiting for a slot now.
    pub(crate) fn queued(&self) -> u32 {
        self.function.queued()
    }

    /// Notes the memory an instance of this revision had when its request ended.
    pub(crate) fn note_memory(&self, bytes: u64) {
        self.memory_hint.fetch_max(bytes, Ordering::Relaxed);
    }
}

/// The slots a running request holds; dropping it frees them.
pub(crate) struct Admitted {
    _function: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
    /// The body's bytes and the revision's memory estimate: taken by a new instance's store, which grows it.
    pub(crate) memory: Option<Reservation>,
    gate: Arc<RevisionGate>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.gate.function.in_flight_series.dec();
    }
}

/// A place in a function's queue, given back when dropped.
struct QueueSlot<'a>(&'a FunctionGate);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
        self.0.queued_series.dec();
    }
}

impl Admission {
    /// A node that runs at most `instances` requests at once within a memory budget, one function holding at
    /// most `share_percent` of either.
    pub(crate) fn new(instances: u32, budget: MemoryBudget, share_percent: u8) -> Admission {
        let share_slots = (u64::from(instances) * u64::from(share_percent.clamp(1, 100)) / 100).max(1) as u32;
        Admission { capacity: Arc::new(Semaphore::new(instances as usize)), share_slots, budget }
    }

    /// The node's memory budget.
    pub(crate) fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// An empty reservation against the budget and the function's share (a body read before admission).
    pub(crate) fn reservation(&self, gate: &RevisionGate) -> Reservation {
        self.budget.reservation(Some(gate.function.share.get_or_init(|| self.budget.share())))
    }

    /// Waits for a function slot, a node slot and the revision's memory estimate, within the revision's
    /// `maxQueue` and `queueTimeout`. `memory` holds what the request already reserved (its body).
    pub(crate) async fn admit(&self, gate: &Arc<RevisionGate>, mut memory: Reservation) -> Result<Admitted, Rejected> {
        let deadline = tokio::time::Instant::now() + gate.queue_timeout;
        let mut queued: Option<QueueSlot<'_>> = None;
        let slots = gate.slots.get_or_init(|| {
            let max = if gate.max_concurrency == 0 { self.share_slots } else { gate.max_concurrency };
            gate.function.slots_for(max.min(self.share_slots))
        });
        let function = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                queued = Some(enqueue(gate)?);
                wait(slots, deadline).await?
            }
        };
        let node = match self.capacity.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if queued.is_none() {
                    queued = Some(enqueue(gate)?);
                }
                wait(&self.capacity, deadline).await?
            }
        };
        let estimate = gate.memory_hint.load(Ordering::Relaxed).saturating_sub(memory.bytes());
        if memory.try_grow(estimate).is_err() {
            if queued.is_none() {
                queued = Some(enqueue(gate)?);
            }
            match tokio::time::timeout_at(deadline, memory.grow(estimate)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(Rejected::Memory),
            }
        }
        drop(queued);
        gate.in_flight.fetch_add(1, Ordering::Relaxed);
        gate.function.in_flight_series.inc();
        Ok(Admitted { _function: function, _node: node, memory: Some(memory), gate: gate.clone() })
    }
}

fn enqueue(gate: &RevisionGate) -> Result<QueueSlot<'_>, Rejected> {
    let f = &gate.function;
    if f.waiting.fetch_add(1, Ordering::Relaxed) >= gate.max_queue {
        f.waiting.fetch_sub(1, Ordering::Relaxed);
        return Err(Rejected::QueueFull);
    }
    f.queued_series.inc();
    Ok(QueueSlot(f))
}

async fn wait(s: &Arc<Semaphore>, deadline: tokio::time::Instant) -> Result<OwnedSemaphorePermit, Rejected> {
    match tokio::time::timeout_at(deadline, s.clone().acquire_owned()).await {
        Ok(Ok(p)) => Ok(p),
        // The semaphores are never closed; treat it like a timeout rather than panic.
        Ok(Err(_)) | Err(_) => Err(Rejected::QueueTimeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scaling(max_concurrency: u32, max_queue: u32, queue_timeout: Duration) -> Scaling {
        Scaling { max_concurrency, max_queue, queue_timeout, reuse: None }
    }

    fn node(instances: u32, budget: u64, share: u8) -> Admission {
        Admission::new(instances, MemoryBudget::new(budget, share), share)
    }

    fn function() -> Arc<FunctionGate> {
        Arc::new(FunctionGate::new(Gauge::default(), Gauge::default()))
    }

    async fn admit(node: &Admission, gate: &Arc<RevisionGate>) -> Result<Admitted, Rejected> {
        node.admit(gate, node.reservation(gate)).await
    }

    #[tokio::test]
    async fn slots_queue_and_in_flight_per_revision() {
        let node = node(10, 1 << 30, 100);
        let function = function();
        let s = scaling(1, 1, Duration::from_millis(50));
        let (a, b) =
            (Arc::new(RevisionGate::new(function.clone(), &s)), Arc::new(RevisionGate::new(function.clone(), &s)));
        let held = admit(&node, &a).await.unwrap();
        assert_eq!((a.in_flight(), b.in_flight()), (1, 0), "counted on the revision that runs it");
        // The function's one slot is shared by its revisions: the next waits, then times out.
        assert_eq!(admit(&node, &b).await.err(), Some(Rejected::QueueTimeout));
        assert_eq!(function.queued(), 0, "a request that gave up leaves the queue");
        drop(held);
        assert_eq!(a.in_flight(), 0);
        let _again = admit(&node, &b).await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_the_node_capacity_holds() {
        let node = node(1, 1 << 30, 100);
        let gate = Arc::new(RevisionGate::new(function(), &scaling(0, 0, Duration::from_secs(60))));
        let _held = admit(&node, &gate).await.unwrap();
        // No function limit, but the node is full and the queue takes none.
        assert_eq!(admit(&node, &gate).await.err(), Some(Rejected::QueueFull));
    }

    #[tokio::test]
    async fn one_function_holds_at_most_its_share_of_slots_and_memory() {
        let node = node(4, 100 << 20, 50);
        let s = scaling(0, 10, Duration::from_millis(50));
        let (greedy, polite) =
            (Arc::new(RevisionGate::new(function(), &s)), Arc::new(RevisionGate::new(function(), &s)));
        let held = [admit(&node, &greedy).await.unwrap(), admit(&node, &greedy).await.unwrap()];
        assert_eq!(admit(&node, &greedy).await.err(), Some(Rejected::QueueTimeout), "half of 4 slots");
        let other = admit(&node, &polite).await.unwrap();
        drop((held, other));
        // Memory: the revision's instances needed 30 MiB; two fit in its 50 MiB share, the third waits.
        greedy.note_memory(30 << 20);
        let first = admit(&node, &greedy).await.unwrap();
        assert_eq!(first.memory.as_ref().map(Reservation::bytes), Some(30 << 20));
        assert_eq!(admit(&node, &greedy).await.err(), Some(Rejected::Memory));
        // Another function still gets memory, and a body read first counts toward the estimate.
        polite.note_memory(10 << 20);
        let mut body = node.reservation(&polite);
        body.try_grow(4 << 20).unwrap();
        let other = node.admit(&polite, body).await.unwrap();
        assert_eq!(other.memory.as_ref().map(Reservation::bytes), Some(10 << 20), "the body's 4 MiB and 6 more");
        drop(first);
        let _next = admit(&node, &greedy).await.unwrap();
        assert_eq!(node.budget().reserved_bytes(), 40 << 20);
    }
}
