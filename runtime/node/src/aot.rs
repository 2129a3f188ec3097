//! The on-disk AOT cache: compiled components keyed by the component's sha256 and the engine's
//! `precompile_compatibility_hash`, loaded with `Component::deserialize_file`.
//!
//! Each entry is `<hex>.cwasm` plus `<hex>.sum`, the sha256 of the component digest and the `.cwasm`. wasmtime checks its own header
//! but not the code it maps, so the checksum is what keeps a flipped bit from ever running.

use crate::blobs::{Digest, write_atomic};
use crate::metrics::Metrics;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
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

pub(crate) struct AotCache {
    dir: PathBuf,
    engine: Engine,
    metrics: Metrics,
}

impl AotCache {
    pub(crate) fn new(data_dir: &Path, engine: &Engine, metrics: Metrics) -> AotCache {
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let dir = data_dir.join("aot").join(format!("{:016x}", h.finish()));
        AotCache { dir, engine: engine.clone(), metrics }
    }

    fn paths(&self, digest: &Digest) -> (PathBuf, PathBuf) {
        let hex = digest.hex();
        (self.dir.join(format!("{hex}.cwasm")), self.dir.join(format!("{hex}.sum")))
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
        wasm: impl FnOnce() -> Result<Vec<u8>, crate::Error>,
    ) -> Result<(Component, Outcome), crate::Error> {
        let (code, sum) = self.paths(digest);
        let mut outcome = Outcome::Miss;
        match self.try_load(digest, &code, &sum) {
            Ok(Some(component)) => {
                self.metrics.aot_hits.inc();
                return Ok((component, Outcome::Hit));
            }
            Ok(None) => {}
            Err(reason) => {
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
        let compiled = self.engine.precompile_component(&bytes).map_err(|e| crate::Error::Compile(format!("{e:#}")))?;
        self.metrics.compile_seconds.observe(started.elapsed().as_secs_f64());
        tracing::info!(%digest, seconds = started.elapsed().as_secs_f64(), bytes = compiled.len(), "compiled component");
        // Code first, then its checksum: an entry without a checksum is a miss, never a hit.
        let stored =
            write_atomic(&code, &compiled).and_then(|()| write_atomic(&sum, self.checksum(digest, &compiled).as_bytes()));
        if let Err(e) = stored {
            tracing::warn!(%digest, error = %e, "cannot write the AOT cache entry; serving from memory");
        }
        // SAFETY: `compiled` was just produced by this engine's `precompile_component`.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(|e| crate::Error::Compile(format!("{e:#}")))?;
        Ok((component, outcome))
    }

    /// `Ok(None)` when there is no entry, `Err(reason)` when the entry is bad.
    /// Binds the compiled bytes to the component they came from, so an entry copied or renamed onto another
    /// digest's path fails the check instead of serving the wrong code.
    fn checksum(&self, digest: &Digest, compiled: &[u8]) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(digest.hex().as_bytes());
        h.update(compiled);
        hex::encode(h.finalize())
    }

    fn try_load(&self, digest: &Digest, code: &Path, sum: &Path) -> Result<Option<Component>, String> {
        let expected = match std::fs::read_to_string(sum) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read checksum: {e}")),
        };
        let bytes = match std::fs::read(code) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read entry: {e}")),
        };
        let actual = self.checksum(digest, &bytes);
        if actual != expected.trim() {
            return Err(format!("checksum mismatch: expected {}, found {actual}", expected.trim()));
        }
        drop(bytes);
        // SAFETY: the file was written by this cache for an engine with the same compatibility hash (the
        // directory name) and its checksum matches, so it is wasmtime's own output, unmodified.
        unsafe { Component::deserialize_file(&self.engine, code) }.map(Some).map_err(|e| format!("{e:#}"))
    }
}
