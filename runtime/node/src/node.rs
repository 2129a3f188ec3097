//! The node: engine, stores, function table and the deploy/remove operations shared by the CLI, the admin
//! API and (later) the Kubernetes watcher.

use crate::aot::AotCache;
use crate::blobs::{Blobs, Digest, write_atomic};
use crate::config::NodeConfig;
use crate::engine::{self, AllocatorKind, EpochTicker};
use crate::function::{Code, FunctionStats, Loaded, Revision};
use crate::host::Host;
use crate::metrics::{AllocatorLabels, Metrics};
use crate::revisions::{RolloutStatus, TrafficStatus};
use crate::service::{RolloutState, Service, State};
use crate::table::{Persisted, Table};
use crate::{Error, validate};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Instant, SystemTime};
use tokio::sync::Semaphore;
use wasmfn_api::{Function, FunctionSpec};
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Event deliveries (each holding its event, retrying for up to minutes) a node takes at once from its broker.
const MAX_EVENT_DELIVERIES: usize = 10_000;

/// A function as the node sees it: its current revision and counters.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The newest revision, `<name>-<n>`.
    pub revision: String,
    /// The revision `latestRevision: true` resolves to (the newest, unless a rollout or rollback holds it back).
    pub latest_ready_revision: String,
    /// The newest revision's component digest.
    pub digest: String,
    /// When the newest revision was created (RFC 3339).
    pub created: String,
    /// How requests split now, with the URL of each tag.
    pub traffic: Vec<TrafficStatus>,
    /// The rollout in progress, or how the last one ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Where the function answers (host form, then path form).
    pub urls: Vec<String>,
    /// Requests running now.
    pub in_flight: i64,
    /// Requests waiting for a slot now.
    pub queued: i64,
    /// Requests answered.
    pub requests: u64,
    /// Requests that loaded code into memory first.
    pub cold_starts: u64,
    /// Requests served by code already in memory.
    pub warm_starts: u64,
    /// Whether compiled code is in memory now.
    pub loaded: bool,
    /// The last error a request of this function hit.
    pub last_error: Option<String>,
    /// The applied spec, with `component` pinned to the digest.
    pub spec: FunctionSpec,
}

/// The result of a deploy.
#[derive(Clone, Debug, Serialize)]
pub struct Deployed {
    /// The function after the deploy.
    pub function: FunctionInfo,
    /// `false` when the manifest and component were identical to the serving revision.
    pub changed: bool,
    /// Something to know about the result, e.g. that the newest revision is out of service after a rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Says when the manifest just applied is not what serves the latest traffic: its revision failed a rollout or
/// was rolled back.
fn note(s: &Service) -> Option<String> {
    let st = &s.state;
    let reason = st.failed.get(&st.latest)?;
    Some(format!(
        "{} is out of service ({reason}); {} serves the latest traffic. Change the configuration to deploy again, or `wasmfn rollback --to {}`",
        st.name_of(st.latest),
        st.name_of(st.ready),
        st.name_of(st.latest)
    ))
}

pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    pub(crate) engine: Engine,
    pub(crate) allocator: AllocatorKind,
    linker: Linker<Host>,
    aot: AotCache,
    blobs: Blobs,
    codes: Mutex<HashMap<Digest, Weak<Code>>>,
    /// One load (and compile) at a time per digest; the others then find it in `codes` or the AOT cache.
    loading: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    pub(crate) table: ArcSwap<Table>,
    stats: Mutex<HashMap<String, Arc<FunctionStats>>>,
    pub(crate) deploy_lock: tokio::sync::Mutex<()>,
    registry: OnceLock<wasmfn_oci::Registry>,
    /// One download at a time per layer digest; concurrent deploys of one image then find it in the store.
    pulling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) metrics: Metrics,
    pub(crate) capacity: Arc<Semaphore>,
    pub(crate) ready: AtomicBool,
    pub(crate) ingress_addr: OnceLock<SocketAddr>,
    /// Poked on a 5xx while a rollout runs, so a failing rollout is rolled back at once, not at the next tick.
    pub(crate) errors_seen: tokio::sync::Notify,
    /// Whether any function is in a rollout (set with every table swap).
    pub(crate) rolling_out: AtomicBool,
    /// Sequence of counter snapshots and the last one written: an older snapshot never overwrites a newer one.
    pub(crate) counter_snapshots: std::sync::atomic::AtomicU64,
    pub(crate) counters_written: Mutex<u64>,
    /// Bumped on every table swap; the event sources follow it.
    pub(crate) table_version: tokio::sync::watch::Sender<u64>,
    /// Event deliveries in progress (broker and replies), capped so a flood is refused, not buffered.
    pub(crate) event_slots: Arc<Semaphore>,
    /// NATS connections by server URL.
    pub(crate) nats_clients: tokio::sync::Mutex<HashMap<String, async_nats::Client>>,
    epoch: Instant,
    _ticker: EpochTicker,
}

/// A node runtime. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Node {
    pub(crate) shared: Arc<Shared>,
}

impl Node {
    /// Builds the engine and restores the persisted function table.
    pub fn new(mut config: NodeConfig) -> Result<Node, Error> {
        config.validate().map_err(|e| Error::Config(e.to_string()))?;
        // Routing compares lowercased host names.
        config.domain.make_ascii_lowercase();
        std::fs::create_dir_all(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?;
        let (engine, allocator) = engine::build(&config.pool).map_err(|e| Error::Engine(format!("{e:#}")))?;
        tracing::info!(allocator = allocator.as_str(), instances = config.pool.instances, "engine ready");
        let linker = engine::linker(&engine).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let metrics = Metrics::new();
        metrics.allocator.get_or_create(&AllocatorLabels { strategy: allocator.as_str() }).set(1);
        let ticker = EpochTicker::start(engine.clone()).map_err(|e| Error::Engine(e.to_string()))?;
        // The client is built on first pull: it loads the system's CA certificates, which a node embedded in a
        // container (the shim) may not have and never needs. A CA file that cannot be read fails here.
        if let Some(path) = &config.registry.ca_file {
            std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        }
        let shared = Shared {
            registry: OnceLock::new(),
            pulling: Mutex::default(),
            aot: AotCache::new(
                config.aot_dir.as_deref().unwrap_or(&config.data_dir.join("aot")),
                &engine,
                metrics.clone(),
            ),
            blobs: Blobs::new(&config.data_dir),
            capacity: Arc::new(Semaphore::new(config.pool.instances as usize)),
            codes: Mutex::default(),
            loading: Mutex::default(),
            table: ArcSwap::default(),
            stats: Mutex::default(),
            deploy_lock: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            ingress_addr: OnceLock::new(),
            errors_seen: tokio::sync::Notify::new(),
            rolling_out: AtomicBool::new(false),
            counter_snapshots: std::sync::atomic::AtomicU64::new(0),
            counters_written: Mutex::new(0),
            table_version: tokio::sync::watch::Sender::new(0),
            nats_clients: tokio::sync::Mutex::default(),
            event_slots: Arc::new(Semaphore::new(MAX_EVENT_DELIVERIES)),
            epoch: Instant::now(),
            _ticker: ticker,
            metrics,
            linker,
            engine,
            allocator,
            config,
        };
        let node = Node { shared: Arc::new(shared) };
        node.restore()?;
        Ok(node)
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> AllocatorKind {
        self.shared.allocator
    }

    fn table_path(&self) -> PathBuf {
        self.shared.config.data_dir.join("functions.json")
    }

    fn restore(&self) -> Result<(), Error> {
        let path = self.table_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let persisted: Persisted =
            serde_json::from_str(&text).map_err(|e| Error::Table(format!("{}: {e}", path.display())))?;
        let mut functions = std::collections::BTreeMap::new();
        for mut record in persisted.functions {
            let key = record.function.key();
            if record.revisions.is_empty()
                && let Some(generation) = record.generation
            {
                // The format before revisions were kept: the function was its only revision.
                record.revisions.push(crate::table::PersistedRevision {
                    generation,
                    created: record.created.unwrap_or_else(SystemTime::now),
                    function: Function { spec: record.function.spec.revision_config(), ..record.function.clone() },
                });
                (record.latest, record.ready) = (generation, generation);
            }
            let stats = self.stats_for(&record.function);
            let mut revisions = Vec::new();
            for r in record.revisions {
                let Some(digest) = r.function.spec.component.as_deref().and_then(Digest::parse) else {
                    return Err(Error::Table(format!("{}: {key} has no component digest", path.display())));
                };
                // Kept even when its blob is unreadable now (a volume not mounted yet): its requests fail with
                // the reason, and the next write of the table does not silently drop it.
                if !self.shared.blobs.path(&digest).exists() {
                    tracing::error!(function = %key, %digest, "restored revision's component is not in the store");
                }
                let rev = Revision::new(r.function, digest, r.generation, r.created, stats.clone(), self.shared.epoch);
                revisions.push(Arc::new(rev));
            }
            let state = State {
                function: record.function,
                revisions,
                latest: record.latest,
                ready: record.ready,
                rollout: record.rollout,
                outcome: record.outcome,
                failed: record.failed,
            };
            let service = Service::new(state).map_err(|e| Error::Table(format!("{}: {key}: {e}", path.display())))?;
            functions.insert(key, Arc::new(service));
        }
        tracing::info!(functions = functions.len(), "restored function table");
        let table = Table::from_functions(functions);
        self.restore_counters(&table);
        self.store(table);
        Ok(())
    }

    /// Compiles every restored component missing from the AOT cache, then reports ready.
    pub(crate) async fn warm_up(&self) {
        let mut digests: Vec<Digest> =
            self.shared.table.load().functions.values().flat_map(|s| s.routed().map(|r| r.digest)).collect();
        digests.dedup();
        for digest in digests {
            if self.shared.aot.contains(&digest) {
                continue;
            }
            let node = self.clone();
            let result = tokio::task::spawn_blocking(move || node.load_blocking(digest, None)).await;
            if let Ok(Err(e)) = result {
                tracing::error!(%digest, error = %e, "cannot precompile a restored component");
            }
        }
        self.shared.ready.store(true, Ordering::Release);
    }

    fn stats_for(&self, f: &Function) -> Arc<FunctionStats> {
        let mut stats = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats
            .entry(f.key())
            .or_insert_with(|| {
                Arc::new(FunctionStats::new(
                    &f.metadata.namespace,
                    &f.metadata.name,
                    &self.shared.metrics,
                    &self.shared.config.guest_log,
                ))
            })
            .clone()
    }

    /// Compiles (or loads from the AOT cache) and links a component. Blocking.
    fn load_blocking(&self, digest: Digest, bytes: Option<Vec<u8>>) -> Result<Arc<Loaded>, Error> {
        let shared = &self.shared;
        let started = Instant::now();
        let gate = shared.loading.lock().unwrap_or_else(|e| e.into_inner()).entry(digest).or_default().clone();
        let _one_at_a_time = gate.lock().unwrap_or_else(|e| e.into_inner());
        let cached = shared.codes.lock().unwrap_or_else(|e| e.into_inner()).get(&digest).and_then(Weak::upgrade);
        let code = match cached {
            Some(code) => code,
            None => {
                let (component, outcome) = shared.aot.load_or_compile(&digest, || match bytes {
                    Some(b) => Ok(b),
                    None => shared.blobs.get(&digest),
                })?;
                tracing::debug!(%digest, ?outcome, "component loaded");
                let code = Arc::new(Code { component });
                shared.codes.lock().unwrap_or_else(|e| e.into_inner()).insert(digest, Arc::downgrade(&code));
                code
            }
        };
        let loaded_at = started.elapsed();
        let pre = shared.linker.instantiate_pre(&code.component).map_err(|e| Error::Link(format!("{e:#}")))?;
        let pre = ProxyPre::new(pre).map_err(|e| Error::MissingHandler(format!("{e:#}")))?;
        tracing::debug!(%digest, load_us = loaded_at.as_micros() as u64, link_us = (started.elapsed() - loaded_at).as_micros() as u64, "code ready");
        Ok(Arc::new(Loaded::new(pre, code, shared.metrics.loaded.clone())))
    }

    /// Loads a revision's code for a request after it was evicted (a cold start).
    pub(crate) async fn load(&self, digest: Digest) -> Result<Arc<Loaded>, Error> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.load_blocking(digest, None))
            .await
            .map_err(|e| Error::Engine(format!("loader task failed: {e}")))?
    }

    /// Stores a component in the node's blob store and returns its digest; deploy it with
    /// `spec.component: sha256:<hex>`.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<Digest, Error> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let digest = Digest::of(&bytes);
            // Compiled code for these very bytes exists only if they passed this check before.
            if !node.shared.aot.contains(&digest) {
                validate::check_component(&bytes)?;
            }
            node.shared.blobs.put_as(digest, &bytes)
        })
        .await
        .map_err(|e| Error::Engine(format!("upload task failed: {e}")))?
    }

    /// Installs code compiled by a [`crate::Precompiler`] for the component `digest` in the AOT cache, so a
    /// deploy of `spec.component: sha256:<hex>` runs it without the component's bytes and without compiling.
    ///
    /// # Safety
    /// `compiled` is loaded as native code: it must be the output of a [`crate::Precompiler`] for the component
    /// `digest`, kept where only trusted parties could change it (e.g. containerd's content store). wasmtime only
    /// checks its header.
    pub async unsafe fn import_compiled(&self, digest: Digest, compiled: Vec<u8>) -> Result<(), Error> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            node.shared
                .aot
                .check_compiled(&compiled)
                .map_err(|e| Error::Compile(format!("precompiled code for {digest} cannot be loaded: {e}")))?;
            node.shared.aot.store(&digest, &compiled).map_err(|e| Error::io(node.shared.aot.dir(), e))
        })
        .await
        .map_err(|e| Error::Engine(format!("import task failed: {e}")))?
    }

    /// Resolves an image reference and makes sure its component is in the store: (its digest, its bytes when
    /// they were just downloaded and checked, the digest-pinned reference). One download per layer digest, even
    /// under concurrent deploys.
    async fn pull(&self, image: &str) -> Result<(Digest, Option<Vec<u8>>, String), Error> {
        let registry = match self.shared.registry.get() {
            Some(r) => r,
            None => {
                let c = &self.shared.config.registry;
                let r = wasmfn_oci::Registry::new(&wasmfn_oci::RegistryConfig {
                    insecure: c.insecure.clone(),
                    ca_file: c.ca_file.clone(),
                })?;
                self.shared.registry.get_or_init(|| r)
            }
        };
        let located = registry.locate(image).await?;
        let gate = {
            let mut pulling = self.shared.pulling.lock().unwrap_or_else(|e| e.into_inner());
            pulling.entry(located.layer.digest.clone()).or_default().clone()
        };
        let _turn = gate.lock().await;
        // A wasm layer is the component; a tar layer's component digest was recorded when it was first fetched.
        let layers = self.shared.config.data_dir.join("oci-layers");
        let record = layers.join(located.layer.digest.trim_start_matches("sha256:"));
        let known = if located.layer_is_component() {
            Some(located.layer.digest.clone())
        } else {
            std::fs::read_to_string(&record).ok()
        };
        if let Some(d) = known.as_deref().and_then(Digest::parse)
            && self.shared.blobs.path(&d).exists()
        {
            return Ok((d, None, located.pinned));
        }
        let component = registry.fetch(&located).await?;
        self.shared.metrics.image_layer_fetches.inc();
        tracing::info!(%image, pinned = %located.pinned, bytes = component.len(), "pulled component");
        // Stored before the gate opens, so the next deploy of this digest finds it.
        let blobs = self.shared.blobs.clone();
        let (bytes, digest) = tokio::task::spawn_blocking(move || {
            validate::check_component(&component)?;
            let digest = blobs.put(&component)?;
            Ok::<_, Error>((component, digest))
        })
        .await
        .map_err(|e| Error::Engine(format!("validation task failed: {e}")))??;
        if !located.layer_is_component() {
            let _ = std::fs::create_dir_all(&layers);
            if let Err(e) = write_atomic(&record, digest.to_string().as_bytes()) {
                tracing::warn!(error = %e, "cannot record the layer's component digest; the next deploy fetches it again");
            }
        }
        Ok((digest, Some(bytes), located.pinned))
    }

    /// Deploys or updates a function. `base_dir` resolves a relative `spec.component` path.
    ///
    /// Everything is checked (manifest, wasm, exports, imports, compile, link) before the table changes, so a
    /// rejected deploy leaves the serving revision untouched. In-flight requests finish on the revision they
    /// started on; new ones go to the new revision.
    pub async fn deploy(&self, mut function: Function, base_dir: Option<&Path>) -> Result<Deployed, Error> {
        function.validate()?;
        function.status = None;
        let node_max = self.shared.config.pool.max_memory;
        if function.spec.limits.memory > node_max {
            return Err(Error::Rejected {
                field: "spec.limits.memory".into(),
                message: format!("{} is above this node's pool.max-memory of {node_max}", function.spec.limits.memory),
            });
        }
        let key = function.key();
        let component = function.spec.component.clone().unwrap_or_default();
        let image = function.spec.image.clone().filter(|_| component.is_empty());
        let (digest, mut bytes) = match Digest::parse(&component) {
            Some(d) => (d, None),
            None if image.is_some() => {
                let (digest, bytes, pinned) = self.pull(image.as_deref().unwrap_or_default()).await?;
                // Like a Knative revision, the record names the digest the tag pointed to at deploy time.
                function.spec.image = Some(pinned);
                (digest, bytes)
            }
            None => {
                let path = match base_dir {
                    Some(dir) => dir.join(&component),
                    None => PathBuf::from(&component),
                };
                let bytes = tokio::fs::read(&path)
                    .await
                    .map_err(|source| Error::ComponentFile { path: path.clone(), source })?;
                // Parsing and hashing a large component would stall the ingress on a runtime thread.
                let (bytes, digest) = tokio::task::spawn_blocking(move || {
                    validate::check_component(&bytes).map_err(|e| e.for_file(&path))?;
                    let digest = Digest::of(&bytes);
                    Ok::<_, Error>((bytes, digest))
                })
                .await
                .map_err(|e| Error::Engine(format!("validation task failed: {e}")))??;
                (digest, Some(bytes))
            }
        };
        function.spec.component = Some(digest.to_string());

        // A change of artifact or configuration makes a revision; a change of routing alone does not.
        let captured = Function { spec: function.spec.revision_config(), ..function.clone() };
        let mut loaded = None;
        let (_guard, table, mut state) = loop {
            let table = self.shared.table.load_full();
            let current = table.functions.get(&key);
            if let Some(cur) = current
                && cur.state.function == function
                && cur.latest().function == captured
            {
                return Ok(Deployed { function: self.info(cur), changed: false, note: note(cur) });
            }
            let new_revision = current.is_none_or(|s| s.latest().function != captured);
            if new_revision && loaded.is_none() {
                // Compiling may take seconds: outside the lock, so other functions deploy meanwhile.
                let node = self.clone();
                let bytes = bytes.take();
                loaded = Some(
                    tokio::task::spawn_blocking(move || {
                        if let Some(b) = &bytes {
                            node.shared.blobs.put(b)?;
                        } else if !node.shared.blobs.path(&digest).exists() && !node.shared.aot.contains(&digest) {
                            return Err(Error::UnknownComponent(digest.to_string()));
                        }
                        node.load_blocking(digest, bytes)
                    })
                    .await
                    .map_err(|e| Error::Engine(format!("deploy task failed: {e}")))??,
                );
            }
            let guard = self.shared.deploy_lock.lock().await;
            // Decided again under the lock: a concurrent deploy may have changed the function meanwhile.
            let table = self.shared.table.load_full();
            let current = table.functions.get(&key);
            let still_new = current.is_none_or(|s| s.latest().function != captured);
            if still_new && loaded.is_none() || current.is_some_and(|c| c.state.function == function && !still_new) {
                continue;
            }
            let state = match current {
                Some(s) => State { function: function.clone(), ..s.state.clone() },
                None => State::new(function.clone()),
            };
            break (guard, table, state);
        };
        // Checked under the lock, so two concurrent deploys cannot both claim a route.
        if let Some((path, owner)) =
            function.spec.routes.iter().find_map(|r| table.route_owner(&r.path, &key).map(|o| (r.path.clone(), o)))
        {
            return Err(Error::Rejected {
                field: "spec.routes".into(),
                message: format!("route `{path}` is already served by {owner}"),
            });
        }
        let creates = state.latest().is_none_or(|l| l.function != captured);
        if let (true, Some(loaded)) = (creates, loaded) {
            let generation = state.latest + 1;
            state.check_traffic(Some(generation))?;
            let stats = self.stats_for(&function);
            let revision =
                Arc::new(Revision::new(captured, digest, generation, SystemTime::now(), stats, self.shared.epoch));
            revision.install(loaded);
            state.revisions.push(revision);
            state.latest = generation;
            if let Some(old) = state.rollout.take() {
                let reason = format!("{} was deployed during the rollout", state.name_of(generation));
                state.outcome = Some(crate::revisions::outcome(&old, "Cancelled", reason));
            }
            if function.spec.rollout.is_some()
                && crate::revisions::follows_latest(&function)
                && state.revision(state.ready).is_some()
            {
                tracing::info!(function = %key, from = %state.name_of(state.ready), to = %state.name_of(generation), "rollout started");
                state.rollout =
                    Some(RolloutState { from: state.ready, to: generation, step: 1, started: SystemTime::now() });
            } else {
                state.ready = generation;
            }
        }
        let service = self.commit(&table, state).await?;
        let l = service.latest();
        tracing::info!(function = %key, revision = %l.name, digest = %l.digest, new_revision = creates, "deployed");
        Ok(Deployed { function: self.info(&service), changed: true, note: note(&service) })
    }

    /// Prunes old revisions, resolves the traffic (rejecting unknown revisions and clashing tags), persists and
    /// swaps in the table with the new state. Call with the deploy lock held.
    pub(crate) async fn commit(&self, table: &Table, mut state: State) -> Result<Arc<Service>, Error> {
        state.prune(self.shared.config.revision_history);
        let service = Service::new(state)?;
        if let Some((field, message)) = table.tag_conflict(&service) {
            return Err(Error::Rejected { field, message });
        }
        let service = Arc::new(service);
        let next = table.with(service.clone());
        self.persist(&next).await?;
        self.store(next);
        Ok(service)
    }

    /// Swaps in a new table.
    fn store(&self, table: Table) {
        self.shared.metrics.functions.set(table.functions.len() as i64);
        let rolling_out = table.functions.values().any(|s| s.state.rollout.is_some());
        self.shared.rolling_out.store(rolling_out, Ordering::Relaxed);
        self.shared.table.store(Arc::new(table));
        self.shared.table_version.send_modify(|v| *v += 1);
    }

    /// Removes a function; in-flight requests finish. Returns whether it existed.
    pub async fn remove(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        let key = format!("{namespace}/{name}");
        let _guard = self.shared.deploy_lock.lock().await;
        let table = self.shared.table.load_full();
        if !table.functions.contains_key(&key) {
            return Ok(false);
        }
        let next = table.without(&key);
        self.persist(&next).await?;
        self.store(next);
        if let Some(stats) = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner()).remove(&key) {
            stats.unregister();
        }
        // A function created again under this name starts its revisions and counters from zero.
        self.save_counters().await;
        tracing::info!(function = %key, "removed");
        Ok(true)
    }

    /// Writes the table (with an fsync) off the runtime threads.
    async fn persist(&self, table: &Table) -> Result<(), Error> {
        let path = self.table_path();
        let json = serde_json::to_vec_pretty(&Persisted::of(table)).map_err(|e| Error::Table(e.to_string()))?;
        tokio::task::spawn_blocking(move || write_atomic(&path, &json).map_err(|e| Error::io(&path, e)))
            .await
            .map_err(|e| Error::Engine(format!("persist task failed: {e}")))?
    }

    /// Every function in the table.
    pub fn list(&self) -> Vec<FunctionInfo> {
        self.shared.table.load().functions.values().map(|s| self.info(s)).collect()
    }

    /// One function.
    pub fn get(&self, namespace: &str, name: &str) -> Option<FunctionInfo> {
        self.shared.table.load().functions.get(&format!("{namespace}/{name}")).map(|s| self.info(s))
    }

    /// Where a function answers: `http://<name>.<namespace>.<domain>:<port>/` and `http://<addr>/<ns>/<name>/`.
    pub fn urls(&self, namespace: &str, name: &str) -> Vec<String> {
        let addr = self.shared.ingress_addr.get().copied().unwrap_or(self.shared.config.listen);
        let domain = &self.shared.config.domain;
        vec![
            format!("http://{name}.{namespace}.{domain}:{}/", addr.port()),
            format!("http://{addr}/{namespace}/{name}/"),
        ]
    }

    pub(crate) fn info(&self, service: &Service) -> FunctionInfo {
        let r = service.latest();
        let meta = &service.state.function.metadata;
        let s = &r.stats;
        FunctionInfo {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            revision: r.name.clone(),
            latest_ready_revision: service.state.name_of(service.state.ready),
            digest: r.digest.to_string(),
            created: humantime::format_rfc3339_seconds(r.created).to_string(),
            traffic: self.traffic_status(service),
            rollout: self.rollout_status(service),
            urls: self.urls(&meta.namespace, &meta.name),
            in_flight: s.in_flight.get(),
            queued: s.queued.get(),
            requests: s.total(),
            cold_starts: s.cold.get(),
            warm_starts: s.warm.load(Ordering::Relaxed),
            loaded: service.state.revisions.iter().any(|r| r.loaded().is_some()),
            last_error: s.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            spec: service.state.function.spec.clone(),
        }
    }

    /// Deletes blobs that no function references and the local OCI index does not name, once unreferenced
    /// (unmodified) for `gc-grace`, with their compiled code. The grace covers a deploy that stored its component
    /// but has not yet entered the table. Blocking.
    fn collect_garbage(&self) -> Result<usize, Error> {
        let grace = self.shared.config.gc_grace;
        let data_dir = &self.shared.config.data_dir;
        let mut keep: std::collections::HashSet<String> = self
            .shared
            .table
            .load()
            .functions
            .values()
            .flat_map(|s| s.state.revisions.iter().map(|r| r.digest.to_string()))
            .collect();
        // A damaged index keeps everything rather than deleting what it may name.
        keep.extend(wasmfn_oci::Layout::open(data_dir)?.referenced()?);
        let dir = data_dir.join("blobs").join("sha256");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(digest) = Digest::parse(&format!("sha256:{name}")) else { continue };
            if keep.contains(&digest.to_string()) {
                continue;
            }
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if age.is_none_or(|a| a < grace) {
                continue;
            }
            if std::fs::remove_file(entry.path()).is_ok() {
                self.shared.aot.remove(&digest);
                self.shared.pulling.lock().unwrap_or_else(|e| e.into_inner()).remove(&digest.to_string());
                self.shared.metrics.blobs_collected.inc();
                tracing::info!(%digest, "deleted an unreferenced component");
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Collects garbage every so often until the node stops.
    pub(crate) async fn collect_garbage_periodically(self) {
        let period = (self.shared.config.gc_grace / 4)
            .clamp(std::time::Duration::from_millis(100), std::time::Duration::from_secs(300));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let node = self.clone();
            match tokio::task::spawn_blocking(move || node.collect_garbage()).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "garbage collection skipped"),
                Err(e) => tracing::warn!(error = %e, "garbage collection task failed"),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Evicts idle code every so often until the node stops.
    pub(crate) async fn reap_idle(self) {
        let ttl = self.shared.config.idle_ttl;
        let period = (ttl / 4).clamp(std::time::Duration::from_millis(50), std::time::Duration::from_secs(5));
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let evicted: Vec<_> = self
                .shared
                .table
                .load()
                .functions
                .values()
                .flat_map(|s| s.state.revisions.iter().filter_map(|r| r.evict_if_idle(ttl)).collect::<Vec<_>>())
                .collect();
            if !evicted.is_empty() {
                let _ = tokio::task::spawn_blocking(move || drop(evicted)).await;
            }
        }
    }
}
