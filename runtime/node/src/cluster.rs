//! Cluster mode (`wasmfn serve --kubernetes`): the node watches every `Function` of the cluster and keeps its
//! table in sync, and reports what it serves in its own entry of the Function's `status.nodes`.
//!
//! - A Function runs once the operator has recorded its image (`status.image`, or a digest-pinned `spec.image`).
//! - Functions deployed from the cluster carry the annotation `wasmfn.dev/origin: kubernetes`; after a relist
//!   (at start, or when the watch expired) those no longer listed are removed. Others (deployed through the
//!   admin API) are left alone.
//! - The table persists as always, so a node that restarts while the API server is unreachable serves what it
//!   served until the watch resumes.
//! - Deploys that fail (a registry down) and reports that fail (the API server down) are retried with
//!   exponential backoff (1 s doubling to 5 min, jittered) until they succeed or the spec changes; the status
//!   says why the function waits and when it is tried next.

use crate::error::Error;
use crate::node::Node;
use futures_util::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use wasmfn_api::FunctionKey;
use wasmfn_api::{Function, FunctionResource, NodeStatus};

/// The annotation marking functions that came from the cluster.
pub const ORIGIN: &str = "wasmfn.dev/origin";
/// How often the retry queue is looked at; each entry waits its own backoff.
const RETRY_TICK: Duration = Duration::from_secs(1);
/// The first retry's delay, doubled per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// When a failed deploy or report is tried next: exponential backoff with ±20% jitter, so a registry or API
/// server coming back is not hit by every node at once.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    failures: u32,
    next: tokio::time::Instant,
}

impl Backoff {
    /// The backoff after one more failure (the first when `previous` is none).
    fn after(previous: Option<Backoff>) -> Backoff {
        let failures = previous.map_or(1, |b| b.failures.saturating_add(1));
        let base = FIRST_BACKOFF.saturating_mul(1u32 << (failures - 1).min(16)).min(MAX_BACKOFF);
        let jitter = base.mul_f64(0.8 + 0.4 * fastrand::f64());
        Backoff { failures, next: tokio::time::Instant::now() + jitter }
    }

    fn due(&self) -> bool {
        tokio::time::Instant::now() >= self.next
    }

    fn delay(&self) -> Duration {
        self.next.saturating_duration_since(tokio::time::Instant::now())
    }
}

/// Keeps `node`'s table in sync with the cluster's Functions, until `shutdown` resolves.
pub async fn run(node: Node, client: Client, node_name: String, shutdown: impl std::future::Future<Output = ()>) {
    // Each object parses on its own: one the types reject (a newer CRD, a bad value) is skipped and kept, and
    // does not stop the watch.
    let api: Api<DeserializeGuard<FunctionResource>> = Api::all(client.clone());
    let mut sync = Sync {
        node,
        client,
        manager: format!("wasmfn-node-{node_name}"),
        node_name,
        applied: HashMap::new(),
        failed: HashMap::new(),
        unreported: HashMap::new(),
        reported: HashMap::new(),
    };
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut retry = tokio::time::interval(RETRY_TICK);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listed: Option<HashSet<FunctionKey>> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = retry.tick() => sync.retry().await,
            event = stream.next() => match event {
                None => break,
                Some(Err(e)) => tracing::warn!(error = %e, "watching Functions failed; serving the current table, retrying"),
                Some(Ok(Event::Init)) => listed = Some(HashSet::new()),
                Some(Ok(Event::InitApply(f))) => {
                    listed.get_or_insert_default().insert(guarded_key(&f));
                    sync.apply_guarded(&f).await;
                }
                Some(Ok(Event::InitDone)) => {
                    let listed = listed.take().unwrap_or_default();
                    sync.prune(&listed).await;
                    tracing::info!(functions = listed.len(), "in sync with the cluster's Functions");
                }
                Some(Ok(Event::Apply(f))) => sync.apply_guarded(&f).await,
                Some(Ok(Event::Delete(f))) => sync.delete(&guarded_key(&f)).await,
            },
        }
    }
}

/// Whether two versions of a Function ask for the same deploy (generation and serving image).
fn same_spec(a: &FunctionResource, b: &FunctionResource) -> bool {
    a.metadata.generation == b.metadata.generation && a.serving_image() == b.serving_image()
}

fn key(f: &FunctionResource) -> FunctionKey {
    FunctionKey::new(f.namespace().unwrap_or_default(), f.name_any())
}

fn guarded_key(f: &DeserializeGuard<FunctionResource>) -> FunctionKey {
    let meta = match &f.0 {
        Ok(f) => &f.metadata,
        Err(invalid) => &invalid.metadata,
    };
    FunctionKey::new(meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

/// What was deployed for a Function: its generation and image.
type Applied = (Option<i64>, String);

struct Sync {
    node: Node,
    client: Client,
    node_name: String,
    manager: String,
    applied: HashMap<FunctionKey, Applied>,
    /// Deploys to try again (a registry down), with their backoff; a new generation resets it.
    failed: HashMap<FunctionKey, (FunctionResource, Backoff)>,
    unreported: HashMap<FunctionKey, (String, String, NodeStatus, Option<Backoff>)>,
    reported: HashMap<FunctionKey, NodeStatus>,
}

impl Sync {
    /// The manifest the node deploys for a cluster object, or why there is none.
    fn manifest(f: &FunctionResource, image: &str) -> Result<Function, Error> {
        let mut cluster = f.clone();
        // The node runs the built or resolved image: the source and the build are the operator's business.
        cluster.spec.source = None;
        cluster.spec.build = None;
        cluster.spec.component = None;
        cluster.spec.image = Some(image.into());
        let mut function = Function::try_from(&cluster)?;
        function.status = None;
        function.metadata.annotations.insert(ORIGIN.into(), "kubernetes".into());
        Ok(function)
    }

    async fn apply_guarded(&mut self, f: &DeserializeGuard<FunctionResource>) {
        match &f.0 {
            Ok(f) => self.apply(f).await,
            Err(invalid) => tracing::warn!(function = %guarded_key(f), error = %invalid.error,
                "a Function that does not parse: keeping what serves (the operator reports it)"),
        }
    }

    /// Whether the table holds `key` from somewhere else than the cluster (the admin API).
    fn foreign(&self, key: &FunctionKey) -> bool {
        let table = self.node.snapshot();
        table.get(key).is_some_and(|s| !s.state.function.metadata.annotations.contains_key(ORIGIN))
    }

    async fn apply(&mut self, f: &FunctionResource) {
        let key = key(f);
        if self.foreign(&key) {
            let message = "a function of the same name was deployed through this node's admin API".to_string();
            tracing::warn!(function = %key, "{message}; not replacing it");
            let status = NodeStatus {
                node: self.node_name.clone(),
                ready: false,
                message: Some(message),
                observed_generation: f.metadata.generation,
                ..Default::default()
            };
            return self.report(f, status).await;
        }
        let Some(image) = f.serving_image().map(String::from) else {
            tracing::debug!(function = %key, "no image yet");
            return;
        };
        let applied = (f.metadata.generation, image.clone());
        if self.applied.get(&key) == Some(&applied) && !self.failed.contains_key(&key) {
            return;
        }
        // A failed deploy of this same spec waits for its backoff (our own status patch comes back as an event).
        if self.failed.get(&key).is_some_and(|(old, b)| same_spec(old, f) && !b.due()) {
            return;
        }
        let result = match Self::manifest(f, &image) {
            Ok(function) => self.node.deploy(function, None).await,
            Err(e) => Err(e),
        };
        let status = match result {
            Ok(deployed) => {
                self.failed.remove(&key);
                self.applied.insert(key.clone(), applied);
                tracing::info!(function = %key, revision = %deployed.function.revision, %image, "deployed from the cluster");
                NodeStatus {
                    node: self.node_name.clone(),
                    ready: true,
                    image: Some(image),
                    revision: Some(deployed.function.revision),
                    message: deployed.note,
                    observed_generation: f.metadata.generation,
                }
            }
            Err(e) => {
                tracing::warn!(function = %key, %image, error = %e, "deploying from the cluster failed");
                // Configuration errors wait for a new generation; anything else (a registry down) is retried.
                let message = if e.is_client_error() {
                    self.applied.insert(key.clone(), applied);
                    e.to_string()
                } else {
                    // The same generation failing again backs off further; a changed one starts over.
                    let previous = self.failed.get(&key).filter(|(old, _)| same_spec(old, f)).map(|(_, b)| *b);
                    let backoff = Backoff::after(previous);
                    self.failed.insert(key.clone(), (f.clone(), backoff));
                    let wait = humantime::format_duration(Duration::from_secs(backoff.delay().as_secs().max(1)));
                    format!("{e}; retrying in {wait} (failure {})", backoff.failures)
                };
                let served = self.node.get(&f.namespace().unwrap_or_default(), &f.name_any());
                NodeStatus {
                    node: self.node_name.clone(),
                    ready: false,
                    image: Some(image),
                    revision: served.map(|s| s.revision),
                    message: Some(message),
                    observed_generation: f.metadata.generation,
                }
            }
        };
        self.report(f, status).await;
    }

    async fn delete(&mut self, key: &FunctionKey) {
        self.forget(key);
        if self.foreign(key) {
            return;
        }
        match self.node.remove(&key.namespace, &key.name).await {
            Ok(true) => tracing::info!(function = %key, "removed: deleted from the cluster"),
            Ok(false) => {}
            Err(e) => tracing::warn!(function = %key, error = %e, "removing a deleted function failed"),
        }
    }

    fn forget(&mut self, key: &FunctionKey) {
        self.applied.remove(key);
        self.failed.remove(key);
        self.unreported.remove(key);
        self.reported.remove(key);
    }

    /// Removes the cluster's functions a relist no longer has (deleted while the watch was down), and forgets
    /// their pending deploys and reports.
    async fn prune(&mut self, listed: &HashSet<FunctionKey>) {
        self.applied.retain(|k, _| listed.contains(k));
        self.failed.retain(|k, _| listed.contains(k));
        self.unreported.retain(|k, _| listed.contains(k));
        self.reported.retain(|k, _| listed.contains(k));
        let table = self.node.snapshot();
        let stale: Vec<FunctionKey> = table
            .functions
            .iter()
            .filter(|(key, s)| {
                s.state.function.metadata.annotations.get(ORIGIN).is_some_and(|o| o == "kubernetes")
                    && !listed.contains(*key)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.forget(&key);
            match self.node.remove(&key.namespace, &key.name).await {
                Ok(_) => tracing::info!(function = %key, "removed: gone from the cluster"),
                Err(e) => tracing::warn!(function = %key, error = %e, "removing failed"),
            }
        }
    }

    /// Applies this node's entry of `status.nodes` when it changed.
    async fn report(&mut self, f: &FunctionResource, status: NodeStatus) {
        let key = key(f);
        if self.reported.get(&key) == Some(&status) {
            return;
        }
        self.unreported.insert(key.clone(), (f.namespace().unwrap_or_default(), f.name_any(), status, None));
        self.send(&key).await;
    }

    async fn send(&mut self, key: &FunctionKey) {
        let Some((ns, name, status, backoff)) = self.unreported.get(key).cloned() else { return };
        let api: Api<FunctionResource> = Api::namespaced(self.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": wasmfn_api::API_VERSION, "kind": wasmfn_api::KIND, "status": {"nodes": [status]},
        });
        match api.patch_status(&name, &PatchParams::apply(&self.manager).force(), &Patch::Apply(&patch)).await {
            Ok(_) => {
                self.unreported.remove(key);
                self.reported.insert(key.clone(), status);
            }
            // Deleted meanwhile: nothing to report.
            Err(kube::Error::Api(s)) if s.code == 404 => {
                self.unreported.remove(key);
            }
            Err(e) => {
                let backoff = Backoff::after(backoff);
                tracing::warn!(function = %key, error = %e, retry_in = ?backoff.delay(), "reporting status failed");
                if let Some(entry) = self.unreported.get_mut(key) {
                    entry.3 = Some(backoff);
                }
            }
        }
    }

    /// Tries again the deploys and reports whose backoff has passed.
    async fn retry(&mut self) {
        let due: Vec<FunctionResource> =
            self.failed.values().filter(|(_, b)| b.due()).map(|(f, _)| f.clone()).collect();
        for f in due {
            self.apply(&f).await;
        }
        let keys: Vec<FunctionKey> =
            (self.unreported.iter()).filter(|(_, (.., b))| b.is_none_or(|b| b.due())).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.send(&key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_with_jitter_up_to_a_cap() {
        let mut b = Backoff::after(None);
        let mut delays = vec![b.delay()];
        for _ in 0..12 {
            b = Backoff::after(Some(b));
            delays.push(b.delay());
        }
        assert_eq!(b.failures, 13);
        for (i, d) in delays.iter().enumerate() {
            let base = FIRST_BACKOFF.saturating_mul(1 << i).min(MAX_BACKOFF);
            assert!(*d >= base.mul_f64(0.79) && *d <= base.mul_f64(1.21), "failure {}: {d:?} vs {base:?}", i + 1);
        }
        assert!(!b.due());
        tokio::time::advance(MAX_BACKOFF.mul_f64(1.25)).await;
        assert!(b.due());
    }
}
