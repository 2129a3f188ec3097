//! The data of every request's `Store`: WASI and `wasi:http` contexts, the memory cap and the egress policy
//! (`egress.rs`).

use crate::budget::{BudgetExhausted, Reservation};
use crate::egress::Egress;
use crate::guest_log::GuestOutput;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The data of every request's `Store`.
pub(crate) struct Host {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) egress: Egress,
    /// The guest's stdout and stderr, retagged for each request a reused instance serves.
    pub(crate) output: [GuestOutput; 2],
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

/// The error a guest gets when it grows its memory past `limits.memory`; it ends the request with 500.
#[derive(Debug, thiserror::Error)]
#[error("the instance exceeded its memory limit of {limit} bytes")]
pub struct MemoryLimitExceeded {
    /// The limit in bytes.
    pub limit: usize,
}

/// Caps one instance's linear memory, counts what its memories have grown to, and holds that much of the
/// node's memory budget (growing the reservation past what admission reserved, or failing the growth with
/// [`BudgetExhausted`], which the client gets as a 503). Tables get a generous fixed cap.
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    /// Bytes of linear memory over all the instance's memories (a reused instance's ceiling is checked on it).
    pub(crate) used: usize,
    /// The budget this instance holds: at least `used`.
    pub(crate) reservation: Reservation,
}

impl MemoryCap {
    pub(crate) fn new(limit: usize, reservation: Reservation) -> Self {
        MemoryCap { limit, used: 0, reservation }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitExceeded { limit: self.limit }.into());
        }
        let used = self.used.saturating_add(desired.saturating_sub(current));
        let short = (used as u64).saturating_sub(self.reservation.bytes());
        if short > 0 {
            self.reservation.try_grow(short).map_err(|e: BudgetExhausted| wasmtime::Error::new(e))?;
        }
        self.used = used;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
