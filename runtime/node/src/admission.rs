//! Admission: whether a request runs now, waits in its function's queue, or is refused with a 503.
//!
//! A request needs a slot of its function (`scaling.maxConcurrency`, none when 0) and a slot of the node
//! (`pool.instances`, the instances that may exist at once). Without one it waits, up to `scaling.maxQueue`
//! requests per function and `scaling.queueTimeout` each. In-flight requests are counted per revision (what
//! eviction asks) and summed per function; the function's gauges observe the counts, they do not hold them.

use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmfn_api::Scaling;

/// The node's capacity: one slot per instance that may exist at once.
pub(crate) struct Admission {
    capacity: Arc<Semaphore>,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// The queue is full.
    QueueFull,
    /// It waited `queueTimeout` without getting a slot.
    QueueTimeout,
}

impl Rejected {
    /// What the client is told (with a 503 and `Retry-After`).
    pub(crate) fn message(self) -> &'static str {
        match self {
            Rejected::QueueFull => "the function is at its concurrency limit and its queue is full",
            Rejected::QueueTimeout => "the function is at its concurrency limit; timed out waiting in the queue",
        }
    }
}

/// A function's slots and queue, shared by its revisions so `maxConcurrency` and `maxQueue` hold across an
/// update; a changed limit starts a new semaphore.
pub(crate) struct FunctionGate {
    slots: Mutex<Option<(u32, Arc<Semaphore>)>>,
    waiting: AtomicU32,
    queued_series: Gauge,
    in_flight_series: Gauge,
}

impl FunctionGate {
    /// A gate whose counts the two series mirror.
    pub(crate) fn new(queued_series: Gauge, in_flight_series: Gauge) -> FunctionGate {
        FunctionGate { slots: Mutex::new(None), waiting: AtomicU32::new(0), queued_series, in_flight_series }
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

    /// Requests waiting for a slot now.
    pub(crate) fn queued(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// One revision's admission settings and the requests running on it.
pub(crate) struct RevisionGate {
    function: Arc<FunctionGate>,
    slots: Option<Arc<Semaphore>>,
    max_queue: u32,
    queue_timeout: Duration,
    in_flight: AtomicU32,
}

impl RevisionGate {
    /// The gate of a revision with these scaling settings.
    pub(crate) fn new(function: Arc<FunctionGate>, scaling: &Scaling) -> RevisionGate {
        RevisionGate {
            slots: function.slots_for(scaling.max_concurrency),
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
}

/// The slots a running request holds; dropping it frees them.
pub(crate) struct Admitted {
    _function: Option<OwnedSemaphorePermit>,
    _node: OwnedSemaphorePermit,
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
    /// A node that runs at most `instances` requests at once.
    pub(crate) fn new(instances: u32) -> Admission {
        Admission { capacity: Arc::new(Semaphore::new(instances as usize)) }
    }

    /// Waits for a function slot and a node slot, within the revision's `maxQueue` and `queueTimeout`.
    pub(crate) async fn admit(&self, gate: &Arc<RevisionGate>) -> Result<Admitted, Rejected> {
        let deadline = tokio::time::Instant::now() + gate.queue_timeout;
        let mut queued: Option<QueueSlot<'_>> = None;
        let function = match &gate.slots {
            None => None,
            Some(s) => Some(match s.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    queued = Some(enqueue(gate)?);
                    wait(s, deadline).await?
                }
            }),
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
        drop(queued);
        gate.in_flight.fetch_add(1, Ordering::Relaxed);
        gate.function.in_flight_series.inc();
        Ok(Admitted { _function: function, _node: node, gate: gate.clone() })
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

    #[tokio::test]
    async fn slots_queue_and_in_flight_per_revision() {
        let node = Admission::new(10);
        let function = Arc::new(FunctionGate::new(Gauge::default(), Gauge::default()));
        let s = scaling(1, 1, Duration::from_millis(50));
        let (a, b) =
            (Arc::new(RevisionGate::new(function.clone(), &s)), Arc::new(RevisionGate::new(function.clone(), &s)));
        let held = node.admit(&a).await.unwrap();
        assert_eq!((a.in_flight(), b.in_flight()), (1, 0), "counted on the revision that runs it");
        // The function's one slot is shared by its revisions: the next waits, then times out.
        assert_eq!(node.admit(&b).await.err(), Some(Rejected::QueueTimeout));
        assert_eq!(function.queued(), 0, "a request that gave up leaves the queue");
        drop(held);
        assert_eq!(a.in_flight(), 0);
        let _again = node.admit(&b).await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_the_node_capacity_holds() {
        let node = Admission::new(1);
        let function = Arc::new(FunctionGate::new(Gauge::default(), Gauge::default()));
        let gate = Arc::new(RevisionGate::new(function.clone(), &scaling(0, 0, Duration::from_secs(60))));
        let _held = node.admit(&gate).await.unwrap();
        // No function limit, but the node is full and the queue takes none.
        assert_eq!(node.admit(&gate).await.err(), Some(Rejected::QueueFull));
    }
}
