//! The node: composes the owners of its state and is the API the CLI, the admin API, the cluster watcher and
//! the containerd shim use. Each piece of state has one owner:
//! - the code store (`code/`): engine, linker, blobs, AOT cache, compiled code, registry pulls;
//! - the function table (`table/`): snapshots, the deploy lock, persistence, per-function stats and gates,
//!   revision counters, the rollout driver;
//! - the executor (`executor/`) with admission (`admission.rs`): running requests;
//! - the event bus (`events/`): broker deliveries, sources, NATS clients.
//!
//! Deploys and removals are in `deploy.rs`, traffic changes and rollbacks in `traffic.rs`, the serve loop in
//! `server.rs`.

use crate::admission::Admission;
use crate::blobs::Digest;
use crate::budget::MemoryBudget;
use crate::code::CodeStore;
use crate::config::NodeConfig;
use crate::engine::AllocatorKind;
use crate::error::Error;
use crate::events::{BusLimits, EventBus};
use crate::executor::{Executor, NodePolicy};
use crate::instances::IdleBudget;
use crate::metrics::Metrics;
use crate::table::{Alarm, FunctionTable, Table};
use crate::views::{self, FunctionInfo, Urls};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmfn_api::FunctionKey;

/// A node runtime. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: NodeConfig,
    pub(crate) metrics: Metrics,
    pub(crate) code: Arc<CodeStore>,
    pub(crate) table: Arc<FunctionTable>,
    pub(crate) executor: Arc<Executor>,
    pub(crate) events: Arc<EventBus>,
    /// Set once restored components are compiled (`/readyz`).
    pub(crate) ready: AtomicBool,
    pub(crate) ingress_addr: OnceLock<SocketAddr>,
    /// The admin API's address once bound; the egress policy never lets tenants reach it.
    pub(crate) admin_addr: Arc<OnceLock<SocketAddr>>,
    /// A pod-style node's function (`default-function`).
    pub(crate) default_function: Option<FunctionKey>,
    /// Functions announced and not deployed yet (requests for them wait).
    pub(crate) pending: crate::pending::Pending,
}

impl Node {
    /// Builds the engine and restores the persisted function table.
    pub fn new(mut config: NodeConfig) -> Result<Node, Error> {
        config.validate()?;
        // Routing compares lowercased host names.
        config.domain.make_ascii_lowercase();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
        let metrics = Metrics::new();
        let code = Arc::new(CodeStore::new(&config, metrics.clone())?);
        let alarm = Arc::new(Alarm::default());
        let table = Arc::new(FunctionTable::new(&config, metrics.clone(), alarm.clone()));
        let admin_addr = Arc::new(OnceLock::new());
        let egress = crate::egress::EgressPolicy {
            allow_loopback: config.allow_loopback_egress,
            allow: config.egress_allow.clone().into(),
            resolver: crate::egress::resolver(&config.dns_servers),
            admin: admin_addr.clone(),
            publisher: Arc::default(),
        };
        let policy = NodePolicy { egress: egress.clone(), max_request_body: config.max_request_body.bytes() };
        let idle = IdleBudget::new(config.pool.idle_instances, metrics.idle_instances.clone());
        let budget = MemoryBudget::new(config.memory_budget(), config.fair_share);
        let admission = Admission::new(config.pool.instances, budget.clone(), config.fair_share);
        let executor = Arc::new(Executor::new(code.clone(), admission, policy.clone(), alarm, idle));
        let limits = BusLimits {
            deliveries: config.max_event_deliveries,
            share: config.fair_share,
            budget: budget.clone(),
            sensitive_types: config.sensitive_event_types.clone(),
        };
        let events = Arc::new(EventBus::new(table.clone(), executor.clone(), metrics.clone(), egress.clone(), limits));
        let publisher: std::sync::Weak<dyn crate::egress::Publish> =
            Arc::downgrade(&events) as std::sync::Weak<EventBus>;
        let _ = egress.publisher.set(publisher);
        table.restore(&|d| code.has_blob(d))?;
        // Restoring parses a file per function; hand the parse buffers' pages back rather than keep them
        // resident for the node's lifetime (~20 MB at 10,000 functions).
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free heap memory; it is safe to call at any time.
        unsafe {
            libc::malloc_trim(0);
        }
        let default_function = config.default_function.as_deref().and_then(FunctionKey::parse);
        let inner = Inner {
            default_function,
            config,
            metrics,
            code,
            table,
            executor,
            events,
            ready: AtomicBool::new(false),
            ingress_addr: OnceLock::new(),
            admin_addr,
            pending: Default::default(),
        };
        Ok(Node { inner: Arc::new(inner) })
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.code.allocator()
    }

    /// The current table snapshot.
    pub(crate) fn snapshot(&self) -> Arc<Table> {
        self.inner.table.snapshot()
    }

    fn urls_base(&self) -> Urls<'_> {
        let addr = self.inner.ingress_addr.get().copied().unwrap_or(self.inner.config.listen);
        Urls { addr, domain: &self.inner.config.domain }
    }

    /// The view of a service of the table.
    pub(crate) fn info(&self, service: &crate::service::Service) -> FunctionInfo {
        views::info(service, &self.urls_base())
    }

    /// Recent guest and build output (`/v1/logs`); `wasmfn up` adds its build output here.
    pub fn log_hub(&self) -> Arc<crate::logs::LogHub> {
        self.inner.metrics.logs.clone()
    }

    /// The address the ingress listens on (the configured one until it is bound).
    pub fn ingress_addr(&self) -> SocketAddr {
        self.inner.ingress_addr.get().copied().unwrap_or(self.inner.config.listen)
    }

    /// Every function in the table.
    pub fn list(&self) -> Vec<FunctionInfo> {
        self.inner.table.load().functions.values().map(|s| self.info(s)).collect()
    }

    /// The event types the brokers have seen, by namespace (one, or all with `None`), with the count of events
    /// of types not kept.
    pub fn event_types(
        &self,
        namespace: Option<&str>,
    ) -> std::collections::BTreeMap<String, (Vec<crate::events::types::EventType>, u64)> {
        self.inner.events.types.list(namespace)
    }

    /// The last hour of a function's activity (the console's charts); `None` when there is no such function.
    pub fn series(&self, namespace: &str, name: &str) -> Option<Vec<crate::series::Point>> {
        let table = self.inner.table.load();
        let service = table.get(&FunctionKey::new(namespace, name))?;
        let stats = &service.state.revisions.first()?.stats;
        Some(stats.activity_if_any().map(|a| a.points()).unwrap_or_default())
    }

    /// Closes an interval of every function's series, every `series-interval`.
    pub(crate) async fn sample_series(self) {
        let interval = self.inner.config.series_interval.max(std::time::Duration::from_millis(100));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = std::time::SystemTime::now();
            let table = self.inner.table.load();
            for service in table.functions.values() {
                let Some(stats) = service.state.revisions.first().map(|r| &r.stats) else { continue };
                if let Some(activity) = stats.activity_if_any() {
                    let in_flight = service.state.revisions.iter().map(|r| r.gate.in_flight() as i64).sum();
                    activity.sample(now, in_flight, interval);
                }
            }
        }
    }

    /// One function.
    pub fn get(&self, namespace: &str, name: &str) -> Option<FunctionInfo> {
        self.inner.table.load().get(&FunctionKey::new(namespace, name)).map(|s| self.info(s))
    }

    /// Where a function answers: `http://<name>.<namespace>.<domain>:<port>/` and `http://<addr>/<ns>/<name>/`.
    pub fn urls(&self, namespace: &str, name: &str) -> Vec<String> {
        self.urls_base().function(namespace, name)
    }

    /// Compiles every restored component missing from the AOT cache, then reports ready.
    pub(crate) async fn warm_up(&self) {
        let mut digests: Vec<Digest> =
            self.inner.table.load().functions.values().flat_map(|s| s.routed().map(|r| r.digest)).collect();
        digests.sort();
        digests.dedup();
        for digest in digests {
            if self.inner.code.is_compiled(&digest) {
                continue;
            }
            if let Err(e) = self.inner.code.load(digest, None).await {
                tracing::error!(%digest, error = %e, "cannot precompile a restored component");
            }
        }
        self.inner.ready.store(true, Ordering::Release);
    }

    /// Collects unreferenced blobs every so often until the node stops.
    pub(crate) async fn collect_garbage_periodically(self) {
        let grace = self.inner.config.gc_grace;
        let period = (grace / 4).clamp(Duration::from_millis(100), Duration::from_secs(300));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let referenced: HashSet<Digest> = (self.inner.table.load().functions.values())
                .flat_map(|s| s.state.revisions.iter().map(|r| r.digest))
                .collect();
            let node = self.clone();
            let collect = move || {
                let inner = &node.inner;
                inner.code.collect_garbage(&inner.config.data_dir, referenced, grace)
            };
            match tokio::task::spawn_blocking(collect).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "garbage collection skipped"),
                Err(e) => tracing::warn!(error = %e, "garbage collection task failed"),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Evicts idle code every so often until the node stops.
    pub(crate) async fn reap_idle(self) {
        let ttl = self.inner.config.idle_ttl;
        let period = (ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let mut evicted = Vec::new();
            for service in self.inner.table.load().functions.values() {
                for revision in &service.state.revisions {
                    let (code, instances) = revision.evict_if_idle(ttl);
                    if code.is_some() || !instances.is_empty() {
                        evicted.push((code, instances));
                    }
                }
            }
            if !evicted.is_empty() {
                // Unmapping code and purging pool slots is blocking work.
                let _ = tokio::task::spawn_blocking(move || drop(evicted)).await;
            }
        }
    }
}
