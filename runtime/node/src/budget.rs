//! The node's memory budget: what the node may hand to guests and buffered bodies, so a flood answers 503
//! instead of ending in the kernel's OOM killer, and one function's fair share of it.
//!
//! Memory is reserved in KiB from two semaphores: the node's (the whole budget) and the function's (its fair
//! share). A [`Reservation`] holds both and grows in step: admission reserves a revision's estimate (the most
//! memory one of its instances has used), the store's limiter grows it as the guest's memory grows, a body read
//! before admission grows it chunk by chunk. Growing never waits (a guest's `memory.grow` cannot), it fails;
//! only admission waits, in the function's queue.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes per permit: a wasm page is 64 KiB, so page growth is exact.
const UNIT: u64 = 1024;

/// The node's memory budget; cloned handles share it.
#[derive(Clone)]
pub(crate) struct MemoryBudget {
    node: Arc<Semaphore>,
    total: u64,
    share: u64,
}

/// A function's share of the budget (one per function, shared by its revisions).
pub(crate) struct Share(Arc<Semaphore>);

/// The node refused memory: which limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetExhausted {
    /// The node's whole budget is reserved.
    #[error("the node's memory budget is exhausted")]
    Node,
    /// The function holds its fair share of the budget.
    #[error("the function holds its fair share of the node's memory budget")]
    Share,
}

impl MemoryBudget {
    /// A budget of `bytes`, of which one function may hold `share_percent`.
    pub(crate) fn new(bytes: u64, share_percent: u8) -> MemoryBudget {
        let units = (bytes / UNIT).min(Semaphore::MAX_PERMITS as u64);
        let share = units * u64::from(share_percent.clamp(1, 100)) / 100;
        MemoryBudget { node: Arc::new(Semaphore::new(units as usize)), total: units, share: share.max(1) }
    }

    /// The budget in bytes.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.total * UNIT
    }

    /// Bytes reserved now.
    pub(crate) fn reserved_bytes(&self) -> u64 {
        self.total.saturating_sub(self.node.available_permits() as u64) * UNIT
    }

    /// A new function's share.
    pub(crate) fn share(&self) -> Share {
        Share(Arc::new(Semaphore::new(self.share as usize)))
    }

    /// An empty reservation of the node's budget alone (the broker's intake), or also of a function's share.
    pub(crate) fn reservation(&self, share: Option<&Share>) -> Reservation {
        Reservation { node: self.node.clone(), share: share.map(|s| s.0.clone()), held: None }
    }
}

/// Memory held against the budget (and a function's share); given back when dropped.
pub(crate) struct Reservation {
    node: Arc<Semaphore>,
    share: Option<Arc<Semaphore>>,
    held: Option<(OwnedSemaphorePermit, Option<OwnedSemaphorePermit>)>,
}

fn units(bytes: u64) -> u32 {
    bytes.div_ceil(UNIT).min(u64::from(u32::MAX)) as u32
}

impl Reservation {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.held.as_ref().map_or(0, |(n, _)| n.num_permits() as u64 * UNIT)
    }

    /// Holds `bytes` more, or fails at once naming the limit reached.
    pub(crate) fn try_grow(&mut self, bytes: u64) -> Result<(), BudgetExhausted> {
        let n = units(bytes);
        if n == 0 {
            return Ok(());
        }
        let share = match &self.share {
            Some(s) => Some(s.clone().try_acquire_many_owned(n).map_err(|_| BudgetExhausted::Share)?),
            None => None,
        };
        let node = self.node.clone().try_acquire_many_owned(n).map_err(|_| BudgetExhausted::Node)?;
        self.add(node, share);
        Ok(())
    }

    /// Holds `bytes` more, waiting for them (admission, within its deadline).
    pub(crate) async fn grow(&mut self, bytes: u64) -> Result<(), BudgetExhausted> {
        let n = units(bytes);
        if n == 0 {
            return Ok(());
        }
        let share = match &self.share {
            Some(s) => Some(s.clone().acquire_many_owned(n).await.map_err(|_| BudgetExhausted::Share)?),
            None => None,
        };
        let node = self.node.clone().acquire_many_owned(n).await.map_err(|_| BudgetExhausted::Node)?;
        self.add(node, share);
        Ok(())
    }

    fn add(&mut self, node: OwnedSemaphorePermit, share: Option<OwnedSemaphorePermit>) {
        match &mut self.held {
            None => self.held = Some((node, share)),
            Some((n, s)) => {
                n.merge(node);
                if let (Some(s), Some(more)) = (s, share) {
                    s.merge(more);
                }
            }
        }
    }

    /// Gives back what is held above `bytes` (an idle instance keeps only the memory it has).
    pub(crate) fn shrink_to(&mut self, bytes: u64) {
        let keep = units(bytes) as usize;
        if let Some((n, s)) = &mut self.held {
            let extra = n.num_permits().saturating_sub(keep);
            if extra > 0 {
                drop(n.split(extra));
                if let Some(s) = s {
                    drop(s.split(extra));
                }
            }
        }
    }
}

/// Why a body could not be read whole within a reservation.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Longer than the limit given.
    TooLarge,
    /// The budget refused its bytes.
    Budget(BudgetExhausted),
    /// The client's stream failed.
    Read(String),
}

/// Reads a body whole, up to `max` bytes, reserving its bytes in `memory` as they arrive: a body the node
/// cannot hold is refused before it is held.
pub(crate) async fn read_reserved<B>(mut body: B, max: u64, memory: &mut Reservation) -> Result<bytes::Bytes, ReadError>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() as u64 + data.len() as u64 > max {
            return Err(ReadError::TooLarge);
        }
        memory.try_grow(data.len() as u64).map_err(ReadError::Budget)?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// The default budget: the cgroup's memory limit, else the machine's memory, less headroom for the node itself
/// (its compiled code, connections and allocator): a quarter, at least 256 MiB.
pub(crate) fn default_budget() -> u64 {
    let limit = cgroup_limit().or_else(machine_memory).unwrap_or(4 << 30);
    let headroom = (limit / 4).max(256 << 20);
    limit.saturating_sub(headroom).max(64 << 20)
}

fn cgroup_limit() -> Option<u64> {
    // cgroup v2 (the path in /proc/self/cgroup, under the unified mount), then v1.
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let v2 = cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().to_string());
    let candidates = [
        v2.map(|p| format!("/sys/fs/cgroup{p}/memory.max")),
        Some("/sys/fs/cgroup/memory.max".to_string()),
        Some("/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string()),
    ];
    candidates.into_iter().flatten().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        // "max", or v1's "unlimited" stand-in near u64::MAX, mean no limit.
        text.trim().parse::<u64>().ok().filter(|&n| n < (1 << 50))
    })
}

fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_and_the_share_both_bound_a_reservation() {
        let budget = MemoryBudget::new(100 * UNIT, 50);
        let (a, b) = (budget.share(), budget.share());
        let mut ra = budget.reservation(Some(&a));
        ra.try_grow(40 * UNIT).unwrap();
        assert_eq!(ra.try_grow(20 * UNIT), Err(BudgetExhausted::Share), "over the function's half");
        assert_eq!(ra.bytes(), 40 * UNIT, "a failed growth holds nothing more");
        let mut rb = budget.reservation(Some(&b));
        rb.try_grow(50 * UNIT).unwrap();
        let mut intake = budget.reservation(None);
        assert_eq!(intake.try_grow(11 * UNIT), Err(BudgetExhausted::Node), "the node's whole budget");
        intake.try_grow(10 * UNIT).unwrap();
        assert_eq!(budget.reserved_bytes(), 100 * UNIT);
        ra.shrink_to(15 * UNIT);
        assert_eq!((ra.bytes(), budget.reserved_bytes()), (15 * UNIT, 75 * UNIT));
        drop((ra, rb, intake));
        assert_eq!(budget.reserved_bytes(), 0, "dropping gives everything back");
        let mut again = budget.reservation(Some(&a));
        again.try_grow(50 * UNIT).unwrap();
    }

    #[tokio::test]
    async fn admission_waits_for_memory_others_give_back() {
        let budget = MemoryBudget::new(10 * UNIT, 100);
        let share = budget.share();
        let mut first = budget.reservation(Some(&share));
        first.try_grow(8 * UNIT).unwrap();
        let waiter = {
            let mut r = budget.reservation(Some(&budget.share()));
            tokio::spawn(async move { r.grow(5 * UNIT).await.map(|()| r.bytes()) })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(5 * UNIT));
    }

    #[test]
    fn the_default_leaves_headroom() {
        let b = default_budget();
        let machine = machine_memory().unwrap();
        assert!(b >= 64 << 20 && b < machine, "{b} of {machine}");
    }
}
