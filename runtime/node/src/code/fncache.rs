//! Cranelift's incremental compilation cache, on disk and shared by every component the node compiles.
//! Components built from one template share most of their code (every componentize-js component carries the
//! same SpiderMonkey, every componentize-py one the same CPython), so a new function compiles only what is
//! new in it: the rest are cache hits. Cranelift keys each entry by a hash of the function's IR and the
//! target's flags; an entry whose checksum does not match (a torn write, a flipped bit) is deleted and
//! counted, and the function is compiled again.

use prometheus_client::metrics::counter::Counter;
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::CacheStore;

/// Entries are a BLAKE3 hash of key and value, then the value.
const SUM: usize = 32;

/// The on-disk store behind `Config::enable_incremental_compilation`.
#[derive(Debug)]
pub(crate) struct FunctionCache {
    dir: PathBuf,
    hits: Counter,
    misses: Counter,
    corrupt: Counter,
}

impl FunctionCache {
    /// A cache in `dir` (created on the first insert); the counters are the node's metrics.
    pub(crate) fn new(dir: PathBuf, hits: Counter, misses: Counter, corrupt: Counter) -> Self {
        FunctionCache { dir, hits, misses, corrupt }
    }

    /// `<dir>/<first 2 hex digits>/<the rest>` of the key's hash: no directory holds all of them.
    fn path(&self, key: &[u8]) -> PathBuf {
        let hex = blake3::hash(key).to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    fn sum(key: &[u8], value: &[u8]) -> [u8; SUM] {
        let mut h = blake3::Hasher::new();
        h.update(&(key.len() as u64).to_le_bytes());
        h.update(key);
        h.update(value);
        *h.finalize().as_bytes()
    }

    fn write(path: &Path, sum: &[u8; SUM], value: &[u8]) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        // A crash may leave a torn file: the checksum catches it, so no fsync is needed for a cache.
        // A random name: compiles in other processes sharing the directory write the same entries.
        let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(sum)?;
            f.write_all(value)
        });
        match written.and_then(|()| std::fs::rename(&tmp, path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

impl CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let path = self.path(key);
        let mut bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(_) => {
                self.misses.inc();
                return None;
            }
        };
        if bytes.len() < SUM || bytes[..SUM] != Self::sum(key, &bytes[SUM..]) {
            tracing::warn!(path = %path.display(), "corrupt compilation cache entry removed; compiling the function again");
            self.corrupt.inc();
            self.misses.inc();
            let _ = std::fs::remove_file(&path);
            return None;
        }
        self.hits.inc();
        bytes.drain(..SUM);
        Some(Cow::Owned(bytes))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let path = self.path(key);
        match Self::write(&path, &Self::sum(key, &value), &value) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot write a compilation cache entry");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> FunctionCache {
        FunctionCache::new(dir.to_path_buf(), Counter::default(), Counter::default(), Counter::default())
    }

    #[test]
    fn hits_misses_and_corrupt_entries_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        assert!(c.get(b"key").is_none());
        assert!(c.insert(b"key", b"compiled".to_vec()));
        assert_eq!(c.get(b"key").as_deref(), Some(&b"compiled"[..]));
        assert_eq!((c.hits.get(), c.misses.get()), (1, 1));
        // Another key's value never answers for this key.
        assert!(c.get(b"other").is_none());

        // A flipped byte, a truncated file, another entry's bytes copied over: all deleted and counted.
        let path = c.path(b"key");
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(c.get(b"key").is_none());
        assert!(!path.exists(), "the corrupt entry is removed");
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(c.get(b"key").is_none());
        c.insert(b"other", b"other code".to_vec());
        std::fs::copy(c.path(b"other"), &path).unwrap();
        assert!(c.get(b"key").is_none());
        assert_eq!(c.corrupt.get(), 3);

        // The next compile writes it again.
        assert!(c.insert(b"key", b"compiled".to_vec()));
        assert_eq!(c.get(b"key").as_deref(), Some(&b"compiled"[..]));
    }
}
