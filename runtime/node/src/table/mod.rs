//! The function table's owner: the current snapshot (`snapshot.rs`), swapped atomically on every change
//! under one deploy lock and persisted first, a file per function (`persist.rs`; `legacy.rs` migrates the
//! single file of earlier nodes); what each function's revisions share (stats and
//! admission gate); the per-revision counters file (`counter_file.rs`); and the rollout driver (`driver.rs`).

mod counter_file;
mod driver;
mod legacy;
mod persist;
mod snapshot;

pub(crate) use snapshot::{Routed, Table};

use crate::config::NodeConfig;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::revision::Common;
use crate::service::Service;
use crate::state::State;
use arc_swap::{ArcSwap, Guard};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use wasmfn_api::FunctionKey;

/// Wakes the rollout driver on a 5xx while a rollout is in progress, so a failing rollout is rolled back at
/// once rather than at the driver's next tick. The executor rings it; the table says whether anyone listens.
#[derive(Default)]
pub(crate) struct Alarm {
    active: AtomicBool,
    errors: tokio::sync::Notify,
}

impl Alarm {
    /// Whether any function is in a rollout (set with every table swap).
    pub(crate) fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    /// A request answered with a 5xx.
    pub(crate) fn server_error(&self) {
        if self.active.load(Ordering::Relaxed) {
            self.errors.notify_one();
        }
    }

    /// Resolves after the next [`Alarm::server_error`] during a rollout.
    pub(super) async fn wait(&self) {
        self.errors.notified().await
    }
}

/// Where the counters go, and which snapshot was written last.
struct CounterFile {
    path: PathBuf,
    /// Sequence of snapshots, numbered in the order they were read, and the last one written: an older
    /// snapshot never overwrites a newer one.
    snapshots: Mutex<u64>,
    written: Arc<Mutex<u64>>,
}

impl CounterFile {
    fn new(path: PathBuf) -> CounterFile {
        CounterFile { path, snapshots: Default::default(), written: Default::default() }
    }
}

/// Holds the deploy lock (only one change to the table at a time) and the snapshot read under it, the one a
/// change is made from and committed onto.
pub(crate) struct Locked<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
    table: Arc<Table>,
}

impl Locked<'_> {
    /// The table as it is while the lock is held.
    pub(crate) fn table(&self) -> &Arc<Table> {
        &self.table
    }
}

/// See the module doc.
pub(crate) struct FunctionTable {
    current: ArcSwap<Table>,
    deploy_lock: tokio::sync::Mutex<()>,
    common: Mutex<HashMap<FunctionKey, Common>>,
    /// Bumped on every swap; the event sources follow it.
    version: tokio::sync::watch::Sender<u64>,
    alarm: Arc<Alarm>,
    /// `<data-dir>/functions`: a file per function.
    dir: PathBuf,
    /// `<data-dir>/functions.json`, the single-file table of earlier nodes (migrated at start).
    legacy: PathBuf,
    counters: CounterFile,
    metrics: Metrics,
    guest_log: crate::config::GuestLogConfig,
    history: usize,
}

impl FunctionTable {
    /// An empty table persisted in `<data-dir>/functions/`; [`FunctionTable::restore`] reads it back.
    pub(crate) fn new(config: &NodeConfig, metrics: Metrics, alarm: Arc<Alarm>) -> FunctionTable {
        FunctionTable {
            current: ArcSwap::default(),
            deploy_lock: tokio::sync::Mutex::new(()),
            common: Mutex::default(),
            version: tokio::sync::watch::Sender::new(0),
            dir: config.data_dir.join("functions"),
            legacy: config.data_dir.join("functions.json"),
            counters: CounterFile::new(config.data_dir.join("revision-counters.json")),
            guest_log: config.guest_log.clone(),
            history: config.revision_history,
            metrics,
            alarm,
        }
    }

    /// The current snapshot, cheaply (for one request).
    pub(crate) fn load(&self) -> Guard<Arc<Table>> {
        self.current.load()
    }

    /// The current snapshot, owned.
    pub(crate) fn snapshot(&self) -> Arc<Table> {
        self.current.load_full()
    }

    /// Changes of the table, for those that follow it (the event sources).
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Takes the deploy lock, then reads the snapshot to change.
    pub(crate) async fn lock(&self) -> Locked<'_> {
        let guard = self.deploy_lock.lock().await;
        Locked { _guard: guard, table: self.snapshot() }
    }

    /// What the revisions of `key` share, created with its first revision.
    pub(crate) fn common(&self, key: &FunctionKey) -> Common {
        let mut all = self.common.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(key.clone()).or_insert_with(|| Common::new(key, &self.metrics, &self.guest_log)).clone()
    }

    /// Prunes old revisions, resolves the traffic (rejecting unknown revisions and clashing tags), persists and
    /// swaps in the locked table with the new state.
    pub(crate) async fn commit(&self, lock: &Locked<'_>, mut state: State) -> Result<Arc<Service>, Error> {
        let table = lock.table();
        state.prune(self.history);
        let service = Service::new(state)?;
        if let Some((field, message)) = table.tag_conflict(&service) {
            return Err(Error::Rejected { field, message });
        }
        let service = Arc::new(service);
        // Only this function's file is written: a deploy costs the same however many functions there are.
        self.persist(&service).await?;
        self.store(table.with(service.clone()));
        Ok(service)
    }

    /// Removes a function; in-flight requests finish. Returns whether it existed.
    pub(crate) async fn remove(&self, key: &FunctionKey) -> Result<bool, Error> {
        let lock = self.lock().await;
        let table = lock.table();
        if !table.functions.contains_key(key) {
            return Ok(false);
        }
        self.unpersist(key).await?;
        self.store(table.without(key));
        if let Some(common) = self.common.lock().unwrap_or_else(|e| e.into_inner()).remove(key) {
            common.stats.unregister();
        }
        // A function created again under this name starts its revisions and counters from zero.
        self.save_counters().await;
        Ok(true)
    }

    /// Swaps in a new table.
    fn store(&self, table: Table) {
        self.metrics.functions.set(table.functions.len() as i64);
        self.alarm.set_active(table.functions.values().any(|s| s.state.rollout.is_some()));
        self.current.store(Arc::new(table));
        self.version.send_modify(|v| *v += 1);
    }
}
