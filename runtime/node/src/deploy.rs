//! Deploys and removals: the node's operations that change what a function is. A deploy resolves the
//! component (a digest in the store, an image to pull, a file), checks and compiles it outside the deploy
//! lock, then under the lock decides whether it makes a new revision, starts a rollout when the function has
//! one (`rollout.rs`), and commits the new state to the table.

use crate::blobs::Digest;
use crate::error::Error;
use crate::node::Node;
use crate::state::State;
use crate::validate;
use crate::views::{self, Deployed};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use wasmfn_api::{Function, FunctionKey};

impl Node {
    /// Deploys or updates a function. `base_dir` resolves a relative `spec.component` path.
    ///
    /// Everything is checked (manifest, wasm, exports, imports, compile, link) before the table changes, so a
    /// rejected deploy leaves the serving revision untouched. In-flight requests finish on the revision they
    /// started on; new ones go to the new revision.
    pub async fn deploy(&self, function: Function, base_dir: Option<&Path>) -> Result<Deployed, Error> {
        let key = function.key();
        let deployed = self.deploy_checked(function, base_dir).await?;
        // Requests held for it (`wasmfn up` announced it while building) go on now.
        self.inner.pending.done(&key);
        Ok(deployed)
    }

    async fn deploy_checked(&self, mut function: Function, base_dir: Option<&Path>) -> Result<Deployed, Error> {
        function.validate()?;
        function.status = None;
        let node_max = self.inner.config.pool.max_memory;
        if function.spec.limits.memory > node_max {
            return Err(Error::Rejected {
                field: "spec.limits.memory".into(),
                message: format!("{} is above this node's pool.max-memory of {node_max}", function.spec.limits.memory),
            });
        }
        let body_max = self.inner.config.max_request_body;
        if function.spec.limits.max_request_body > body_max {
            return Err(Error::Rejected {
                field: "spec.limits.maxRequestBody".into(),
                message: format!(
                    "{} is above this node's max-request-body of {body_max}",
                    function.spec.limits.max_request_body
                ),
            });
        }
        let key = function.key();
        let (digest, mut bytes) = self.resolve(&mut function, base_dir).await?;
        function.spec.component = Some(digest.to_string());

        // A change of artifact or configuration makes a revision; a change of routing alone does not.
        let captured = Function { spec: function.spec.revision_config(), ..function.clone() };
        let table = &self.inner.table;
        let mut loaded = None;
        let (lock, mut state) = loop {
            let snapshot = table.snapshot();
            let current = snapshot.get(&key);
            if let Some(cur) = current
                && cur.state.function == function
                && cur.latest().function == captured
            {
                return Ok(Deployed { function: self.info(cur), changed: false, note: views::note(cur) });
            }
            let new_revision = current.is_none_or(|s| s.latest().function != captured);
            if new_revision && loaded.is_none() {
                // Compiling may take seconds: outside the lock, so other functions deploy meanwhile.
                loaded = Some(self.inner.code.load_new(digest, bytes.take()).await?);
            }
            let lock = table.lock().await;
            // Decided again under the lock: a concurrent deploy may have changed the function meanwhile.
            let current = lock.table().get(&key);
            let still_new = current.is_none_or(|s| s.latest().function != captured);
            if still_new && loaded.is_none() || current.is_some_and(|c| c.state.function == function && !still_new) {
                continue;
            }
            let state = match current {
                Some(s) => State { function: function.clone(), ..s.state.clone() },
                None => State::new(function.clone()),
            };
            break (lock, state);
        };
        // Checked under the lock, so two concurrent deploys cannot both claim a route.
        if let Some((path, owner)) = function
            .spec
            .routes
            .iter()
            .find_map(|r| lock.table().route_owner(&r.path, &key).map(|o| (r.path.clone(), o)))
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
            let now = SystemTime::now();
            let revision = crate::revision::Revision::new(captured, digest, generation, now, &table.common(&key));
            revision.install(loaded);
            state.revisions.push(Arc::new(revision));
            let from = state.name_of(state.ready);
            if state.new_latest(generation, now) {
                tracing::info!(function = %key, %from, to = %state.name_of(generation), "rollout started");
            }
        }
        let service = table.commit(&lock, state).await?;
        let l = service.latest();
        tracing::info!(function = %key, revision = %l.name, digest = %l.digest, new_revision = creates, "deployed");
        Ok(Deployed { function: self.info(&service), changed: true, note: views::note(&service) })
    }

    /// The component a manifest names: (its digest, its bytes when read or downloaded just now). An image is
    /// pulled and, like a Knative revision, the record names the digest the tag pointed to at deploy time.
    async fn resolve(
        &self,
        function: &mut Function,
        base_dir: Option<&Path>,
    ) -> Result<(Digest, Option<Vec<u8>>), Error> {
        let component = function.spec.component.clone().unwrap_or_default();
        if let Some(digest) = Digest::parse(&component) {
            return Ok((digest, None));
        }
        if component.is_empty()
            && let Some(image) = function.spec.image.clone()
        {
            let pulled = self.inner.code.pull(&image).await?;
            function.spec.image = Some(pulled.pinned);
            return Ok((pulled.digest, pulled.bytes));
        }
        let path = match base_dir {
            Some(dir) => dir.join(&component),
            None => PathBuf::from(&component),
        };
        let max = self.inner.config.registry.max_component.bytes();
        // Reading, parsing and hashing a large component would stall the ingress on a runtime thread.
        let (bytes, digest) = tokio::task::spawn_blocking(move || {
            let bytes = read_component_file(&path, max)
                .map_err(|source| Error::ComponentFile { path: path.clone(), source })?;
            validate::check_component(&bytes).map_err(|e| e.for_file(&path))?;
            let digest = Digest::of(&bytes);
            Ok::<_, Error>((bytes, digest))
        })
        .await
        .map_err(Error::task("validation"))??;
        Ok((digest, Some(bytes)))
    }

    /// Removes a function; in-flight requests finish. Returns whether it existed.
    pub async fn remove(&self, namespace: &str, name: &str) -> Result<bool, Error> {
        let key = FunctionKey::new(namespace, name);
        self.inner.pending.done(&key);
        let removed = self.inner.table.remove(&key).await?;
        if removed {
            tracing::info!(function = %key, "removed");
        }
        Ok(removed)
    }

    /// Announces a function that will be deployed soon (`wasmfn up` is building it): requests for it wait for
    /// the deploy, at most `queue_timeout`, instead of answering 404.
    pub fn announce(&self, key: FunctionKey, queue_timeout: std::time::Duration) {
        if self.inner.table.load().get(&key).is_none() {
            self.inner.pending.announce(key, queue_timeout);
        }
    }

    /// An announced function failed before its first deploy: requests for it get 503 with `message`.
    pub fn announce_failed(&self, key: &FunctionKey, message: String) {
        self.inner.pending.fail(key, message);
    }

    /// Stores a component in the node's blob store and returns its digest; deploy it with
    /// `spec.component: sha256:<hex>`.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<Digest, Error> {
        self.inner.code.upload(bytes).await
    }

    /// Installs code compiled by a [`crate::Precompiler`] for the component `digest` in the AOT cache, so a
    /// deploy of `spec.component: sha256:<hex>` runs it without the component's bytes and without compiling.
    ///
    /// # Safety
    /// `compiled` is loaded as native code: it must be the output of a [`crate::Precompiler`] for the component
    /// `digest`, kept where only trusted parties could change it (e.g. containerd's content store). wasmtime only
    /// checks its header.
    pub async unsafe fn import_compiled(&self, digest: Digest, compiled: Vec<u8>) -> Result<(), Error> {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.inner.code.import_compiled(digest, compiled) }.await
    }
}

/// Reads a component file named by a manifest: a regular file (not a device, FIFO or socket, which could
/// block or never end), at most `max` bytes. Opened without blocking and checked on the open file, so a path
/// swapped after a check cannot slip through.
fn read_component_file(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!(
            "{} bytes, over the limit of {max} (registry.max-component)",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than the limit of {max} bytes (registry.max-component)")));
    }
    Ok(bytes)
}
