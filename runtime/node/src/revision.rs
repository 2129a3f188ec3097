//! A deployed revision: its immutable config, its admission gate, its counters and its compiled code, which
//! leaves memory after the idle TTL (scale to zero) and comes back from the AOT cache on the next request.

use crate::admission::{FunctionGate, RevisionGate};
use crate::blobs::Digest;
use crate::code::Loaded;
use crate::counters::RevisionCounters;
use crate::egress::Grants;
use crate::instances::{Discarded, InstancePool};
use crate::stats::FunctionStats;
use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use wasmfn_api::{Function, FunctionKey};

/// What a function's revisions share: its stats and its slots and queue.
#[derive(Clone)]
pub(crate) struct Common {
    pub(crate) stats: Arc<FunctionStats>,
    pub(crate) gate: Arc<FunctionGate>,
}

impl Common {
    pub(crate) fn new(
        key: &FunctionKey,
        metrics: &crate::metrics::Metrics,
        log: &crate::config::GuestLogConfig,
    ) -> Common {
        let stats = Arc::new(FunctionStats::new(key, metrics, log));
        let (queued, in_flight) = stats.admission_series();
        Common { gate: Arc::new(FunctionGate::new(queued, in_flight)), stats }
    }
}

/// Milliseconds since the first call: the clock of `last_used`.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The environment of every instance: the function's identity and limits (what the SDKs and the Kubeless-style
/// `context` read; Knative's `K_SERVICE`/`K_REVISION` too), then `spec.env`, which may override them.
fn guest_env(function: &Function, generation: u64) -> Vec<(String, String)> {
    let meta = &function.metadata;
    let limits = &function.spec.limits;
    let revision = function.revision_name(generation);
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
    /// The same, shared by every request's log lines.
    pub(crate) log_name: Arc<str>,
    pub(crate) generation: u64,
    /// The manifest it captured: `spec.component` pinned to the digest, no routing fields.
    pub(crate) function: Function,
    pub(crate) digest: Digest,
    pub(crate) created: SystemTime,
    pub(crate) env: Vec<(String, String)>,
    /// What its `spec.egress` opens for its outgoing HTTP.
    pub(crate) egress: Arc<Grants>,
    pub(crate) stats: Arc<FunctionStats>,
    /// Its slots and the requests running on it.
    pub(crate) gate: Arc<RevisionGate>,
    /// What this revision answered (the function's `stats` count over all its revisions).
    pub(crate) counters: RevisionCounters,
    /// Its idle instances, when `spec.scaling.reuse` is set.
    pub(crate) instances: Option<InstancePool>,
    code: ArcSwapOption<Loaded>,
    load_lock: tokio::sync::Mutex<()>,
    /// [`now_ms`] of the last request.
    last_used: AtomicU64,
}

impl Revision {
    pub(crate) fn new(
        function: Function,
        digest: Digest,
        generation: u64,
        created: SystemTime,
        common: &Common,
    ) -> Revision {
        let name = function.revision_name(generation);
        Revision {
            log_name: name.as_str().into(),
            name,
            generation,
            env: guest_env(&function, generation),
            egress: Grants::shared(function.spec.egress.as_ref()),
            digest,
            created,
            stats: common.stats.clone(),
            gate: Arc::new(RevisionGate::new(common.gate.clone(), &function.spec.scaling)),
            counters: Default::default(),
            instances: (function.spec.scaling.reuse.clone())
                .map(|r| InstancePool::new(r, function.spec.limits.memory.bytes() as usize)),
            code: ArcSwapOption::empty(),
            load_lock: tokio::sync::Mutex::new(()),
            last_used: AtomicU64::new(now_ms()),
            function,
        }
    }

    /// The loaded code, if in memory.
    pub(crate) fn loaded(&self) -> Option<Arc<Loaded>> {
        self.code.load_full()
    }

    /// The loaded code, loading it with `load` (once, even under concurrent requests) when evicted.
    /// Returns whether this call loaded it (a cold start).
    pub(crate) async fn code<F, Fut>(&self, load: F) -> Result<(Arc<Loaded>, bool), crate::error::Error>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<Loaded>, crate::error::Error>>,
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
        self.last_used.store(now_ms(), Ordering::Relaxed);
    }

    /// Takes the compiled code and idle instances out if unused for `ttl`, and idle instances past their
    /// idle timeout; the caller drops them (unmapping code and purging pool slots is blocking work).
    /// In-flight requests keep their own reference.
    pub(crate) fn evict_if_idle(&self, ttl: Duration) -> (Option<Arc<Loaded>>, Discarded) {
        let mut discarded = self.discard_idle_instances("idle", InstancePool::expire);
        if self.idle_for(ttl) && self.code.load().is_some() {
            discarded.extend(self.discard_idle_instances("evicted", InstancePool::clear));
            let code = self.code.swap(None);
            self.stats.evictions.inc();
            tracing::debug!(revision = %self.name, "evicted compiled code (scale to zero)");
            return (code, discarded);
        }
        (None, discarded)
    }

    /// Takes instances out of the idle list with `take` and counts them as discarded for `reason`.
    pub(crate) fn discard_idle_instances(
        &self,
        reason: &'static str,
        take: fn(&InstancePool) -> Discarded,
    ) -> Discarded {
        let Some(pool) = &self.instances else { return Vec::new() };
        let discarded = take(pool);
        for _ in &discarded {
            self.stats.discarded(reason);
        }
        discarded
    }

    /// Whether no request ran on this revision for `ttl` and none runs now. Only its own requests count: a
    /// busy sibling revision does not keep it loaded.
    fn idle_for(&self, ttl: Duration) -> bool {
        // `touch` may run between the two reads: saturate rather than underflow.
        let idle = now_ms().saturating_sub(self.last_used.load(Ordering::Relaxed));
        idle >= ttl.as_millis() as u64 && self.gate.in_flight() == 0
    }

    pub(crate) fn key(&self) -> FunctionKey {
        self.function.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Admission;

    #[tokio::test]
    async fn a_busy_revision_does_not_keep_its_idle_sibling_loaded() {
        let f = Function::new("default", "hello", &format!("sha256:{}", "a".repeat(64)));
        let common = Common::new(&f.key(), &crate::metrics::Metrics::new(), &Default::default());
        let revision = |g: u64| Revision::new(f.clone(), Digest::of(&g.to_le_bytes()), g, SystemTime::now(), &common);
        let (busy, idle) = (revision(1), revision(2));
        assert_eq!(
            (busy.name.as_str(), idle.env.iter().find(|(k, _)| k == "K_REVISION").map(|(_, v)| v.as_str())),
            ("hello-1", Some("hello-2"))
        );
        let node = Admission::new(4, crate::budget::MemoryBudget::new(1 << 30, 100), 100);
        let running = node.admit(&busy.gate, node.reservation(&busy.gate)).await.unwrap();
        assert!(!busy.idle_for(Duration::ZERO), "a revision with a request in flight is not idle");
        assert!(idle.idle_for(Duration::ZERO), "its sibling is, whatever the function's in-flight count");
        assert!(!idle.idle_for(Duration::from_secs(3600)), "not before the TTL");
        drop(running);
        assert!(busy.idle_for(Duration::ZERO));
    }
}
