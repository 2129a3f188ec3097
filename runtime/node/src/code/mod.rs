//! The code store: everything between a component's bytes and code ready to instantiate. It owns the engine
//! (and its epoch ticker), the host linker, the blob store, the AOT cache, the compiled code in memory (shared
//! by every revision with the same digest), the one-load-per-digest gates, and the registry client (`pull.rs`).
//! Unreferenced blobs are collected here too (`gc.rs`).

mod fncache;
mod gc;
mod pull;

use crate::aot::{AotCache, AotKey};
use crate::blobs::{Blobs, Digest};
use crate::config::NodeConfig;
use crate::engine::{self, AllocatorKind, EpochTicker};
use crate::error::{Error, cause};
use crate::host::Host;
use crate::metrics::{AllocatorLabels, Metrics};
use crate::validate;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

pub(crate) use pull::Pulled;

/// Compiled code of one component, shared by every revision that uses the same digest.
pub(crate) struct Code {
    component: Component,
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

/// Compiles, caches and links components; see the module doc.
pub(crate) struct CodeStore {
    engine: Engine,
    allocator: AllocatorKind,
    linker: Linker<Host>,
    aot: AotCache,
    blobs: Blobs,
    compiled: Mutex<HashMap<Digest, Weak<Code>>>,
    /// One load (and compile) at a time per digest; the others then find it in `compiled` or the AOT cache.
    loading: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    puller: pull::Puller,
    metrics: Metrics,
    _ticker: EpochTicker,
}

impl CodeStore {
    /// Builds the engine (pooling when the address space allows), the linker and the stores of `config`.
    pub(crate) fn new(config: &NodeConfig, metrics: Metrics) -> Result<CodeStore, Error> {
        let aot_root = config.aot_dir.clone().unwrap_or_else(|| config.data_dir.join("aot"));
        let key = config.aot_key_file.as_deref().map(AotKey::read).transpose();
        let key = key.map_err(|e| Error::Engine { what: "reading the AOT key", source: e.into() })?;
        let cache = config.compile_cache.then(|| {
            let m = &metrics;
            let counters = fncache::CacheCounters {
                hits: m.fn_cache_hits.clone(),
                misses: m.fn_cache_misses.clone(),
                corrupt: m.fn_cache_corrupt.clone(),
            };
            let max = config.compile_cache_max.bytes();
            // Keyed too: a function planted in this cache would end up in code the AOT cache then vouches for.
            let key = key.as_ref().map(|k| k.derive("wasmfn compilation cache v1"));
            fncache::FunctionCache::new(aot_root.join("functions"), max, counters, key) as Arc<dyn wasmtime::CacheStore>
        });
        let (engine, allocator) = engine::build(&config.pool, cache)
            .map_err(|e| Error::Engine { what: "building the engine", source: cause(e) })?;
        tracing::info!(allocator = allocator.as_str(), instances = config.pool.instances, "engine ready");
        let linker =
            engine::linker(&engine).map_err(|e| Error::Engine { what: "linking the host", source: cause(e) })?;
        metrics.allocator.get_or_create(&AllocatorLabels { strategy: allocator.as_str() }).set(1);
        let ticker = EpochTicker::start(engine.clone())
            .map_err(|e| Error::Engine { what: "starting the epoch thread", source: e.into() })?;
        Ok(CodeStore {
            aot: AotCache::new(&aot_root, &engine, metrics.clone(), key),
            blobs: Blobs::new(&config.data_dir),
            compiled: Mutex::default(),
            loading: Mutex::default(),
            puller: pull::Puller::new(config)?,
            _ticker: ticker,
            metrics,
            linker,
            engine,
            allocator,
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn allocator(&self) -> AllocatorKind {
        self.allocator
    }

    /// Whether the store can load `digest` without its bytes: the blob or its compiled code is here.
    pub(crate) fn has(&self, digest: &Digest) -> bool {
        self.blobs.path(digest).exists() || self.aot.contains(digest)
    }

    /// Resolves an image reference and makes sure its component is in the store (`pull.rs`).
    pub(crate) async fn pull(&self, image: &str) -> Result<Pulled, Error> {
        self.puller.pull(image, &self.blobs, &self.metrics.image_layer_fetches).await
    }

    /// Whether the blob of `digest` is in the store.
    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.path(digest).exists()
    }

    /// Whether compiled code for `digest` is in the AOT cache.
    pub(crate) fn is_compiled(&self, digest: &Digest) -> bool {
        self.aot.contains(digest)
    }

    /// Compiles (or loads from the AOT cache) and links a component; `bytes` when the caller has them.
    /// Blocking.
    pub(crate) fn load_blocking(&self, digest: Digest, bytes: Option<Vec<u8>>) -> Result<Arc<Loaded>, Error> {
        let started = Instant::now();
        let gate = self.loading.lock().unwrap_or_else(|e| e.into_inner()).entry(digest).or_default().clone();
        let _one_at_a_time = gate.lock().unwrap_or_else(|e| e.into_inner());
        let cached = self.compiled.lock().unwrap_or_else(|e| e.into_inner()).get(&digest).and_then(Weak::upgrade);
        let code = match cached {
            Some(code) => code,
            None => {
                let (component, outcome) = self.aot.load_or_compile(&digest, || match bytes {
                    Some(b) => Ok(b),
                    None => self.blobs.get(&digest),
                })?;
                tracing::debug!(%digest, ?outcome, "component loaded");
                let code = Arc::new(Code { component });
                self.compiled.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, Arc::downgrade(&code));
                code
            }
        };
        let loaded_at = started.elapsed();
        let pre = self.linker.instantiate_pre(&code.component).map_err(|e| Error::Link { source: cause(e) })?;
        let pre = ProxyPre::new(pre).map_err(|e| Error::HandlerType { source: cause(e) })?;
        tracing::debug!(%digest, load_us = loaded_at.as_micros() as u64, link_us = (started.elapsed() - loaded_at).as_micros() as u64, "code ready");
        let series = self.metrics.loaded.clone();
        series.inc();
        Ok(Arc::new(Loaded { pre, _code: code, _counted: Counted(series) }))
    }

    /// Loads code off the runtime threads: a revision's code after it was evicted (a cold start), or a deploy's.
    pub(crate) async fn load(self: &Arc<Self>, digest: Digest, bytes: Option<Vec<u8>>) -> Result<Arc<Loaded>, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.load_blocking(digest, bytes)).await.map_err(Error::task("loader"))?
    }

    /// Loads the code of a new revision: stores `bytes` (checked by the caller) as the blob of `digest` first
    /// when given; without them, the blob or its compiled code must be here already.
    pub(crate) async fn load_new(
        self: &Arc<Self>,
        digest: Digest,
        bytes: Option<Vec<u8>>,
    ) -> Result<Arc<Loaded>, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            match &bytes {
                Some(b) => drop(store.blobs.put_as(digest, b)?),
                None if !store.has(&digest) => return Err(Error::UnknownComponent(digest.to_string())),
                None => {}
            }
            store.load_blocking(digest, bytes)
        })
        .await
        .map_err(Error::task("deploy"))?
    }

    /// Checks and stores a component; returns its digest.
    pub(crate) async fn upload(self: &Arc<Self>, bytes: Vec<u8>) -> Result<Digest, Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let digest = Digest::of(&bytes);
            // Compiled code for these very bytes exists only if they passed this check before (with a key: only
            // code the cache itself tagged counts, not a file someone put there).
            if !store.aot.verifies(&digest) {
                validate::check_component(&bytes)?;
            }
            store.blobs.put_as(digest, &bytes)
        })
        .await
        .map_err(Error::task("upload"))?
    }

    /// Installs compiled code for `digest` in the AOT cache.
    ///
    /// # Safety
    /// As [`crate::Node::import_compiled`]: `compiled` is a [`crate::Precompiler`]'s output for `digest`, kept
    /// where only trusted parties could change it.
    pub(crate) async unsafe fn import_compiled(
        self: &Arc<Self>,
        digest: Digest,
        compiled: Vec<u8>,
    ) -> Result<(), Error> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store
                .aot
                .check_compiled(&compiled)
                .map_err(|source| Error::Precompiled { digest: digest.to_string(), source })?;
            store.aot.store(&digest, &compiled).map_err(|e| Error::io(store.aot.dir(), e))
        })
        .await
        .map_err(Error::task("import"))?
    }
}
