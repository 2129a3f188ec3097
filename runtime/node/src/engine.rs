//! The wasmtime engine and the host linker, built once per node.

use crate::config::PoolConfig;
use crate::host::Host;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{CacheStore, Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: a guest spinning in wasm code is stopped at most this long after its
/// deadline (the client gets its 504 at the deadline itself). Fewer wake-ups keep latency tails short.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(50);

/// Which allocator the engine ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocatorKind {
    /// Slots reserved up front; instantiation reuses them.
    Pooling,
    /// Every instance maps its own memory.
    OnDemand,
}

impl AllocatorKind {
    /// `pooling` or `on-demand`.
    pub fn as_str(self) -> &'static str {
        match self {
            AllocatorKind::Pooling => "pooling",
            AllocatorKind::OnDemand => "on-demand",
        }
    }
}

fn base_config(cache: Option<&Arc<dyn CacheStore>>) -> wasmtime::Result<Config> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if let Some(cache) = cache {
        config.enable_incremental_compilation(cache.clone())?;
    }
    Ok(config)
}

fn pooling(pool: &PoolConfig) -> PoolingAllocationConfig {
    // Idle reusable instances hold slots of their own, so requests always find the `instances` they were admitted to.
    let n = pool.instances.saturating_add(pool.idle_instances);
    let mut p = PoolingAllocationConfig::default();
    // Components from componentize-js/-py hold several core instances, memories and large tables each.
    p.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(2))
        .total_stacks(n)
        .table_elements(100_000)
        .max_core_instance_size(2 << 20)
        .max_memory_size(pool.max_memory.bytes() as usize)
        // Reset the pages a request dirtied with memset instead of madvise: madvise on a multi-threaded
        // process costs a TLB shootdown (an IPI to every core) per instance and page faults on the next one.
        // PAGEMAP_SCAN (Linux >= 6.7, used when available) finds the dirty pages, so only those are copied.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(256 << 10)
        .pagemap_scan(Enabled::Auto);
    p
}

/// Builds the engine: pooling when enabled and the address space allows it, on-demand otherwise. With a
/// `cache`, Cranelift reuses the functions it compiled before (`code/fncache.rs`).
pub(crate) fn build(
    pool: &PoolConfig,
    cache: Option<Arc<dyn CacheStore>>,
) -> wasmtime::Result<(Engine, AllocatorKind)> {
    if pool.enabled {
        let mut config = base_config(cache.as_ref())?;
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(pool)));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, AllocatorKind::Pooling)),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                instances = pool.instances,
                "cannot reserve the instance pool (address space too small?); falling back to on-demand allocation"
            ),
        }
    }
    Ok((Engine::new(&base_config(cache.as_ref())?)?, AllocatorKind::OnDemand))
}

/// The host interfaces every function may import: wasi 0.2 cli, clocks, random, io, filesystem (no
/// preopens), sockets (no network access granted) and http.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new().name("wasmfn-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Epoch ticks that cover `timeout`, plus one because the current tick is already partly gone.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 1
}
