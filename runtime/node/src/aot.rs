//! The on-disk AOT cache: compiled components keyed by the component's sha256 and the engine's
//! `precompile_compatibility_hash`, loaded with `Component::deserialize_file`.
//!
//! Each entry is `<hex>.cwasm` plus `<hex>.b3`, the BLAKE3 hash of the component digest and the `.cwasm`. wasmtime checks its own
//! header but not the code it maps, so the checksum is what keeps a flipped bit from ever running. BLAKE3 rather than
//! sha256: every process verifies an entry once before its first use, and a JavaScript component's code is ~40 MB.

use crate::blobs::{Digest, write_atomic};
use crate::error::{Cause, Error, cause};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::Component;

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
    metrics: Metrics,
    /// Entries whose checksum this process verified, with the file identity seen then. A cold start after
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

impl AotCache {
    /// A cache in `<root>/<engine compatibility hash>`.
    pub(crate) fn new(root: &Path, engine: &Engine, metrics: Metrics) -> AotCache {
        let dir = root.join(format!("{:016x}", compatibility_key(engine)));
        AotCache { dir, engine: engine.clone(), metrics, verified: Mutex::default() }
    }

    fn paths(&self, digest: &Digest) -> (PathBuf, PathBuf) {
        let hex = digest.hex();
        (self.dir.join(format!("{hex}.cwasm")), self.dir.join(format!("{hex}.b3")))
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
        let (code, sum) = self.paths(digest);
        let _ = std::fs::remove_file(sum);
        let _ = std::fs::remove_file(code);
    }

    /// Whether a complete entry exists (its checksum is not verified here).
    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        let (code, sum) = self.paths(digest);
        code.exists() && sum.exists()
    }

    /// Loads the compiled component for `digest`, compiling `wasm()` on a miss or a bad entry.
    /// Blocking: call it from a blocking thread.
    pub(crate) fn load_or_compile(
        &self,
        digest: &Digest,
        wasm: impl FnOnce() -> Result<Vec<u8>, Error>,
    ) -> Result<(Component, Outcome), Error> {
        let (code, sum) = self.paths(digest);
        let mut outcome = Outcome::Miss;
        match self.try_load(digest, &code, &sum) {
            Ok(Some(component)) => {
                self.metrics.aot_hits.inc();
                return Ok((component, Outcome::Hit));
            }
            Ok(None) => {}
            Err(bad) => {
                let reason = crate::error::chain(&bad);
                tracing::warn!(%digest, path = %code.display(), %reason, "AOT cache entry is corrupt or stale; recompiling");
                self.metrics.aot_corrupt.inc();
                let _ = std::fs::remove_file(&sum);
                let _ = std::fs::remove_file(&code);
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

    /// Writes the entry of `digest`: the code first, then its checksum, so an entry without a checksum is never
    /// a hit.
    pub(crate) fn store(&self, digest: &Digest, compiled: &[u8]) -> std::io::Result<()> {
        let (code, sum) = self.paths(digest);
        write_atomic(&code, compiled)?;
        write_atomic(&sum, self.checksum(digest, compiled).as_bytes())?;
        let id = FileId::of(&code)?;
        self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(code, id);
        Ok(())
    }

    /// Binds the compiled bytes to the component they came from, so an entry copied or renamed onto another
    /// digest's path fails the check instead of serving the wrong code.
    fn checksum(&self, digest: &Digest, compiled: &[u8]) -> String {
        let mut h = blake3::Hasher::new();
        h.update(digest.hex().as_bytes());
        h.update(compiled);
        h.finalize().to_hex().to_string()
    }

    /// `Ok(None)` when there is no entry, `Err(why)` when the entry is bad.
    fn try_load(&self, digest: &Digest, code: &Path, sum: &Path) -> Result<Option<Component>, BadEntry> {
        let id = match FileId::of(code) {
            Ok(id) => id,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BadEntry::Read(e)),
        };
        // Code without its checksum is an entry being written (by another process sharing the cache): a miss,
        // not a corrupt entry to delete.
        if !sum.exists() {
            return Ok(None);
        }
        let known = self.verified.lock().unwrap_or_else(|e| e.into_inner()).get(code) == Some(&id);
        if !known {
            self.verify(digest, code, sum)?;
            self.verified.lock().unwrap_or_else(|e| e.into_inner()).insert(code.to_path_buf(), id);
        }
        // SAFETY: the file was written by this cache for an engine with the same compatibility hash (the
        // directory name) and its checksum matched, in this process, for this very file identity, so it is
        // wasmtime's own output, unmodified.
        match unsafe { Component::deserialize_file(&self.engine, code) } {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                self.verified.lock().unwrap_or_else(|e| e.into_inner()).remove(code);
                Err(BadEntry::Load(cause(e)))
            }
        }
    }

    /// Checks the entry's checksum. `Ok(())` when it matches.
    fn verify(&self, digest: &Digest, code: &Path, sum: &Path) -> Result<(), BadEntry> {
        let expected = std::fs::read_to_string(sum).map_err(BadEntry::ReadChecksum)?;
        let bytes = std::fs::read(code).map_err(BadEntry::Read)?;
        let actual = self.checksum(digest, &bytes);
        if actual != expected.trim() {
            return Err(BadEntry::Checksum { expected: expected.trim().to_string(), actual });
        }
        Ok(())
    }
}

/// Why a cache entry cannot be used (it is then deleted and compiled again).
#[derive(Debug, thiserror::Error)]
enum BadEntry {
    #[error("cannot read the entry")]
    Read(#[source] std::io::Error),
    #[error("cannot read its checksum")]
    ReadChecksum(#[source] std::io::Error),
    #[error("checksum mismatch: expected {expected}, found {actual}")]
    Checksum { expected: String, actual: String },
    #[error("wasmtime cannot load it")]
    Load(#[source] Cause),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> (AotCache, Metrics) {
        let engine = Engine::default();
        let metrics = Metrics::new();
        (AotCache::new(dir, &engine, metrics.clone()), metrics)
    }

    #[test]
    fn hit_after_miss_and_an_in_place_edit_is_caught_in_the_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let (aot, metrics) = cache(dir.path());
        let wasm = wat::parse_str("(component (core module))").unwrap();
        let digest = Digest::of(&wasm);
        let compile = || Ok(wasm.clone());
        assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Miss);
        assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Hit);
        assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Hit);

        // Rewrite the entry in place with different bytes of the same length: the file's identity changes,
        // so the checksum is verified again and fails.
        let (code, _) = aot.paths(&digest);
        let mut bytes = std::fs::read(&code).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&code, &bytes).unwrap();
        assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Recovered);
        assert_eq!(metrics.aot_corrupt.get(), 1);
        assert_eq!(aot.load_or_compile(&digest, compile).unwrap().1, Outcome::Hit);

        // In a new process (nothing verified yet), an entry without its checksum file is not trusted. It is a
        // miss, not a corrupt entry: another process sharing the cache may be between writing code and checksum.
        std::fs::remove_file(aot.paths(&digest).1).unwrap();
        let fresh = AotCache::new(dir.path(), &Engine::default(), metrics.clone());
        assert_eq!(fresh.load_or_compile(&digest, compile).unwrap().1, Outcome::Miss);
        assert_eq!(metrics.aot_corrupt.get(), 1, "not counted as corrupt");
        assert_eq!(fresh.load_or_compile(&digest, compile).unwrap().1, Outcome::Hit);
    }
}
