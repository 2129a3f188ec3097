//! Cranelift's incremental compilation cache, on disk and shared by every component the node compiles.
//! Components built from one template share most of their code (every componentize-js component carries the
//! same SpiderMonkey, every componentize-py one the same CPython), so a new function compiles only what is
//! new in it: the rest are cache hits. Cranelift keys each entry by a hash of the function's IR and the
//! target's flags; an entry whose checksum does not match (a torn write, a flipped bit) is deleted and
//! counted, and the function is compiled again. Past `compile-cache-max` bytes the cache is emptied (moved
//! aside and deleted in the background) and refills with what is compiled next. The bound is per process:
//! nodes sharing an `aot-dir` each count their own writes.
//!
//! With the node's AOT key (a key derived from it), entry names and checksums are keyed BLAKE3 hashes: the code of
//! a function planted by someone without the key is never found, or fails its check, so it cannot slip into code
//! the AOT cache then tags as its own. Unkeyed entries are never looked up by a keyed cache, and vice versa.

use prometheus_client::metrics::counter::Counter;
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::CacheStore;

/// Entries are a BLAKE3 hash (keyed, when the cache has a key) of key and value, then the value.
const SUM: usize = 32;

/// The node's series for the cache.
#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) corrupt: Counter,
}

/// The on-disk store behind `Config::enable_incremental_compilation`.
#[derive(Debug)]
pub(crate) struct FunctionCache {
    dir: PathBuf,
    /// Bytes in `dir`: what the scan at start found plus what this process wrote (approximate: a file written
    /// while the scan runs may count twice, which only empties the cache a little early).
    bytes: AtomicU64,
    max: u64,
    counters: CacheCounters,
    /// Keys entry names and checksums.
    secret: Option<Secret>,
}

/// A key that `Debug` does not print.
struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl FunctionCache {
    /// A cache in `dir` (created on the first insert) of at most `max` bytes, keyed with `secret` when given.
    /// Its size is found by a scan on a thread of its own, which also deletes what an earlier process left moved
    /// aside.
    pub(crate) fn new(
        dir: PathBuf,
        max: u64,
        counters: CacheCounters,
        secret: Option<[u8; 32]>,
    ) -> std::sync::Arc<Self> {
        let secret = secret.map(Secret);
        let cache = std::sync::Arc::new(FunctionCache { dir, bytes: AtomicU64::new(0), max, counters, secret });
        let weak = std::sync::Arc::downgrade(&cache);
        let _ = std::thread::Builder::new().name("wasmfn-cache-scan".into()).spawn(move || {
            let Some(cache) = weak.upgrade() else { return };
            cache.bytes.fetch_add(size_of_dir(&cache.dir), Ordering::Relaxed);
            for old in cache.moved_aside() {
                let _ = std::fs::remove_dir_all(old);
            }
        });
        cache
    }

    /// Directories an emptying moved aside (`<dir>.old-<random>`).
    fn moved_aside(&self) -> Vec<PathBuf> {
        let (Some(parent), Some(name)) = (self.dir.parent(), self.dir.file_name()) else { return Vec::new() };
        let prefix = format!("{}.old-", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
        entries.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect()
    }

    /// Moves the whole cache aside and deletes it in the background: compiles go on, filling a new one.
    fn empty(&self) {
        let aside = self.dir.with_file_name(format!(
            "{}.old-{}",
            self.dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
            uuid::Uuid::new_v4().simple()
        ));
        if std::fs::rename(&self.dir, &aside).is_ok() {
            self.bytes.store(0, Ordering::Relaxed);
            tracing::info!(limit = self.max, "the compilation cache reached its size limit; emptied");
            let _ = std::thread::Builder::new()
                .name("wasmfn-cache-empty".into())
                .spawn(move || std::fs::remove_dir_all(aside));
        }
    }

    /// `<dir>/<first 2 hex digits>/<the rest>` of the key's hash: no directory holds all of them.
    fn path(&self, key: &[u8]) -> PathBuf {
        let hex = match &self.secret {
            // A prefix keeps names and checksums apart under the one key.
            Some(s) => blake3::Hasher::new_keyed(&s.0).update(b"name\0").update(key).finalize(),
            None => blake3::hash(key),
        }
        .to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    fn sum(&self, key: &[u8], value: &[u8]) -> [u8; SUM] {
        let mut h = match &self.secret {
            Some(s) => {
                let mut h = blake3::Hasher::new_keyed(&s.0);
                h.update(b"sum\0");
                h
            }
            None => blake3::Hasher::new(),
        };
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
                self.counters.misses.inc();
                return None;
            }
        };
        if bytes.len() < SUM || bytes[..SUM] != self.sum(key, &bytes[SUM..]) {
            tracing::warn!(path = %path.display(), "corrupt compilation cache entry removed; compiling the function again");
            self.counters.corrupt.inc();
            self.counters.misses.inc();
            let _ = std::fs::remove_file(&path);
            return None;
        }
        self.counters.hits.inc();
        bytes.drain(..SUM);
        Some(Cow::Owned(bytes))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let path = self.path(key);
        match Self::write(&path, &self.sum(key, &value), &value) {
            Ok(()) => {
                let size = (SUM + value.len()) as u64;
                if self.bytes.fetch_add(size, Ordering::Relaxed) + size > self.max {
                    self.empty();
                }
                true
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot write a compilation cache entry");
                false
            }
        }
    }
}

/// Bytes of the files in `dir` and its subdirectories (one level of fan-out).
fn size_of_dir(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += size_of_dir(&entry.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> std::sync::Arc<FunctionCache> {
        FunctionCache::new(dir.join("functions"), 1 << 30, CacheCounters::default(), None)
    }

    #[test]
    fn hits_misses_and_corrupt_entries_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        assert!(c.get(b"key").is_none());
        assert!(c.insert(b"key", b"compiled".to_vec()));
        assert_eq!(c.get(b"key").as_deref(), Some(&b"compiled"[..]));
        assert_eq!((c.counters.hits.get(), c.counters.misses.get()), (1, 1));
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
        assert_eq!(c.counters.corrupt.get(), 3);

        // The next compile writes it again.
        assert!(c.insert(b"key", b"compiled".to_vec()));
        assert_eq!(c.get(b"key").as_deref(), Some(&b"compiled"[..]));
    }

    /// Someone without the key cannot plant a function: a keyed cache never looks at unkeyed entries, and an
    /// entry copied to the name a keyed cache uses fails its keyed checksum.
    #[test]
    fn a_keyed_cache_ignores_and_refuses_entries_made_without_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let plain = cache(dir.path());
        let with = |secret| FunctionCache::new(dir.path().join("functions"), 1 << 30, CacheCounters::default(), secret);
        let keyed = with(Some([1; 32]));
        assert!(plain.insert(b"key", b"planted".to_vec()));
        assert!(keyed.get(b"key").is_none(), "another name");
        std::fs::create_dir_all(keyed.path(b"key").parent().unwrap()).unwrap();
        std::fs::copy(plain.path(b"key"), keyed.path(b"key")).unwrap();
        assert!(keyed.get(b"key").is_none(), "unkeyed checksum");
        assert_eq!(keyed.counters.corrupt.get(), 1);
        assert!(keyed.insert(b"key", b"compiled".to_vec()));
        assert_eq!(keyed.get(b"key").as_deref(), Some(&b"compiled"[..]));
        assert!(with(Some([2; 32])).get(b"key").is_none(), "another key: another name");
        assert_eq!(with(Some([1; 32])).get(b"key").as_deref(), Some(&b"compiled"[..]));
    }

    #[test]
    fn past_its_size_limit_the_cache_empties_and_refills() {
        let dir = tempfile::tempdir().unwrap();
        // Left moved aside by an earlier process: deleted by the scan, which is done once it is gone.
        std::fs::create_dir_all(dir.path().join("functions.old-1234/ab")).unwrap();
        let c = FunctionCache::new(dir.path().join("functions"), 4096, CacheCounters::default(), None);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !c.moved_aside().is_empty() {
            assert!(std::time::Instant::now() < deadline, "moved-aside caches are deleted: {:?}", c.moved_aside());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Entries of 32 + 1000 bytes: three fit in 4096, the fourth crosses it.
        let value = vec![7u8; 1000];
        for key in 0..3u8 {
            assert!(c.insert(&[key], value.clone()));
        }
        assert!(c.get(&[0]).is_some(), "under the limit: all kept");
        assert!(c.insert(&[3], value.clone()));
        assert!(c.get(&[0]).is_none() && c.get(&[3]).is_none(), "emptied");
        assert!(c.insert(&[4], value.clone()));
        assert_eq!(c.get(&[4]).as_deref(), Some(&value[..]), "and refilled");
    }
}
