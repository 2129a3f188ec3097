//! The on-disk AOT cache: compiled components keyed by the component's sha256 and the engine's
//! `precompile_compatibility_hash`, loaded with `Component::deserialize_file`.
//!
//! Each entry is `<hex>.cwasm` plus its tag `<hex>.sum` (`tag.rs`: the format versions, and the HMAC that keys
//! entries when the node has an AOT key). wasmtime checks its own header but not the code it maps, so the tag is
//! what keeps a flipped bit, or code planted by someone without the key, from ever running. An unkeyed tag is
//! BLAKE3 rather than sha256: every process verifies an entry once before its first use, and a JavaScript
//! component's code is ~40 MB.

use crate::blobs::{Digest, write_atomic};
use crate::error::{Cause, Error, cause};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
pub(crate) use tag::AotKey;
use wasmtime::Engine;
use wasmtime::component::Component;

mod tag;

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Deserialized from a valid cache entry.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry was corrupt or stale: logged, compiled again and replaced.
    Recovered,
}

/// A stable key of what compiled code this engine can load (wasmtime's compatibility hash, hashed to a u64).
pub(crate) fn compatibility_key(engine: &Engine) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

/// Compiles components ahead of time for nodes with the same pool settings, outside any node: the containerd
/// shim's precompile step, whose output containerd stores next to the image.
pub struct Precompiler {
    engine: Engine,
}

impl Precompiler {
    /// An engine configured exactly as a node with this pool config builds its own.
    pub fn new(pool: &crate::config::PoolConfig) -> Result<Precompiler, Error> {
        let (engine, _) = crate::engine::build(pool, None)
            .map_err(|e| Error::Engine { what: "building the engine", source: cause(e) })?;
        Ok(Precompiler { engine })
    }

    /// Changes whenever code compiled by an older engine could not be loaded (wasmtime version, settings).
    pub fn key(&self) -> u64 {
        compatibility_key(&self.engine)
    }

    /// Checks that `wasm` is an HTTP-handler-shaped component and compiles it.
    pub fn compile(&self, wasm: &[u8]) -> Result<Vec<u8>, Error> {
        crate::validate::check_component(wasm)?;
        self.engine.precompile_component(wasm).map_err(|e| Error::Compile { source: cause(e) })
    }
}

pub(crate) struct AotCache {
    dir: PathBuf,
    engine: Engine,
    /// [`compatibility_key`] of `engine`, which every tag covers.
    engine_key: u64,
    /// With a key, only entries tagged with it are loaded and new ones are tagged with it.
    key: Option<AotKey>,
    metrics: Metrics,
    /// Entries whose tag this process verified, with the file identity seen then. A cold start after
    /// scale to zero skips reading and hashing an unchanged file; any write to it changes its identity.
    verified: Mutex<HashMap<PathBuf, FileId>>,
}

/// What identifies a file's content without reading it: inode, size, and modification and change times.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FileId([i64; 6]);

impl FileId {
    fn of(path: &Path) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileId([m.ino() as i64, m.size() as i64, m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()]))
    }
}

/// The files of one entry.
struct Paths {
    code: PathBuf,
    /// The tag in the current format.
    sum: PathBuf,
    /// The version 1 checksum, read without a key and deleted when the entry is written again.
    v1: PathBuf,
}

impl AotCache {
    /// A cache in `<root>/<engine compatibility hash>`, keyed with `key` when there is one.
    pub(crate) fn new(root: &Path, engine: &Engine, metrics: Metrics, key: Option<AotKey>) -> AotCache {
        let engine_key = compatibility_key(engine);
        let dir = root.join(format!("{engine_key:016x}"));
        AotCache { dir, engine: engine.clone(), engine_key, key, metrics, verified: Mutex::default() }
    }

    fn paths(&self, digest: &Digest) -> Paths {
        let hex = digest.hex();
        Paths {
            code: self.dir.join(format!("{hex}.cwasm")),
            sum: self.dir.join(format!("{hex}.sum")),
            v1: self.dir.join(format!("{hex}.b3")),
        }
    }

    /// The directory of this engine's entries.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine's compiled-code format must match; returns why not.
    pub(crate) fn check_compiled(&self, compiled: &[u8]) -> Result<(), Cause> {
        match Engine::detect_precompiled(compiled) {
            Some(wasmtime::Precompiled::Component) => {}
            _ => return Err("not a precompiled component".into()),
        }
        // SAFETY: the caller of `Node::import_compiled` guarantees these are a `Precompiler`'s output, kept where
        // only trusted parties could change them; deserializing checks the engine's compatibility header.
        unsafe { Component::deserialize(&self.engine, compiled) }.map(drop).map_err(cause)
    }

    /// Deletes the entry of `digest`, if any.
    pub(crate) fn remove(&self, digest: &Digest) {
        let p = self.paths(digest);
        let _ = std::fs::remove_file(p.sum);
        let _ = std::fs::remove_file(p.v1);
        let _ = std::fs::remove_file(p.code);
    }

    /// Whether an entry this cache could use exists (its tag is not verified here).
    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        let p = self.paths(digest);
        p.code.exists() && (p.sum.exists() || (self.key.is_none() && p.v1.exists()))
    }

    /// Whether the entry of `digest` exists and its tag verifies: its code came from this cache (or, without a
    /// key, from anyone who can write the directory).
    pub(crate) fn verifies(&self, digest: &Digest) -> bool {
        matches!(self.check(digest, &self.paths(digest)), Ok(Some(_)))
    }

    /// Loads the compiled component for `digest`, compiling `wasm()` on a miss or a bad entry.
    /// Blocking: call it from a blocking thread.
    pub(crate) fn load_or_compile(
        &self,
        digest: &Digest,
        wasm: impl FnOnce() -> Result<Vec<u8>, Error>,
    ) -> Result<(Component, Outcome), Error> {
        let paths = self.paths(digest);
        let mut outcome = Outcome::Miss;
        match self.try_load(digest, &paths) {
            Ok(Some(component)) => {
                self.metrics.aot_hits.inc();
                return Ok((component, Outcome::Hit));
            }
            Ok(None) => {}
            Err(bad) => {
                let reason = crate::error::chain(&bad);
                let path = paths.code.display();
                tracing::warn!(%digest, %path, %reason, "AOT cache entry is corrupt or stale, or not tagged with this node's key; recompiling");
                self.metrics.aot_corrupt.inc();
                self.remove(digest);
                outcome = Outcome::Recovered;
            }
        }
        self.metrics.aot_misses.inc();
        let bytes = wasm()?;
        let started = Instant::now();
        let compiled = self.engine.precompile_component(&bytes).map_err(|e| Error::Compile { source: cause(e) })?;
        self.metrics.compile_seconds.observe(started.elapsed().as_secs_f64());
        tracing::info!(%digest, seconds = started.elapsed().as_secs_f64(), bytes = compiled.len(), "compiled component");
        if let Err(e) = self.store(digest, &compiled) {
            tracing::warn!(%digest, error = %e, "cannot write the AOT cache entry; serving from memory");
        }
        // SAFETY: `compiled` was just produced by this engine's `precompile_component`.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(|e| Error::Compile { source: cause(e) })?;
        Ok((component, outcome))
    }

    /// Writes the entry of `digest`: the code first, then its tag, so an entry without a tag is never a hit.
    pub(crate) fn store(&self, digest: &Digest, compiled: &[u8]) -> std::io::Result<()> {
        let p = self.paths(digest);
        // An old checksum must not vouch for the new code while its tag is being written.
        match std::fs::remove_file(&p.v1) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        write_atomic(&p.code, compiled)?;
        write_atomic(&p.sum, tag::compute(self.key.as_ref(), digest, self.engine_key, compiled).as_bytes())?;
        let id = FileId::of(&p.code)?;
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(p.code, id);
        Ok(())
    }

    /// `Ok(None)` when there is no entry, `Err(why)` when the entry is bad.
    fn try_load(&self, digest: &Digest, p: &Paths) -> Result<Option<Component>, BadEntry> {
        if self.check(digest, p)?.is_none() {
            return Ok(None);
        }
        // SAFETY: the file was written by this cache for an engine with the same compatibility hash (the
        // directory name, also covered by the tag) and its tag matched, in this process, for this very file
        // identity, so it is wasmtime's own output, unmodified (with a key: written by a holder of the key).
        match unsafe { Component::deserialize_file(&self.engine, &p.code) } {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                self.verified.lock().unwrap_or_else(|e| e.into_inner()).remove(&p.code);
                Err(BadEntry::Load(cause(e)))
            }
        }
    }

    /// Verifies the entry's tag unless this process already did for the file as it is now: `Ok(None)` when
    /// there is no (complete) entry.
    fn check(&self, digest: &Digest, p: &Paths) -> Result<Option<FileId>, BadEntry> {
        let id = match FileId::of(&p.code) {
            Ok(id) => id,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BadEntry::Read(e)),
        };
        // Code without its tag is an entry being written (by another process sharing the cache): a miss, not a
        // corrupt entry to delete.
        let v1 = !p.sum.exists();
        if v1 && !p.v1.exists() {
            return Ok(None);
        }
        let known = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(&p.code) == Some(&id);
        if known {
            return Ok(Some(id));
        }
        let key = self.key.as_ref();
        let text = std::fs::read_to_string(if v1 { &p.v1 } else { &p.sum }).map_err(BadEntry::ReadTag)?;
        let bytes = std::fs::read(&p.code).map_err(BadEntry::Read)?;
        let verified = if v1 {
            tag::verify_v1(key, digest, &bytes, &text)
        } else {
            tag::verify(key, digest, self.engine_key, &bytes, &text)
        };
        verified.map_err(BadEntry::Tag)?;
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(p.code.clone(), id);
        Ok(Some(id))
    }
}

/// Why a cache entry cannot be used (it is then deleted and compiled again).
#[derive(Debug, thiserror::Error)]
enum BadEntry {
    #[error("cannot read the entry")]
    Read(#[source] std::io::Error),
    #[error("cannot read its tag")]
    ReadTag(#[source] std::io::Error),
    #[error("its tag does not vouch for it")]
    Tag(#[source] tag::TagError),
    #[error("wasmtime cannot load it")]
    Load(#[source] Cause),
}

#[cfg(test)]
mod tests;
