//! Content-addressed component store (`<data>/blobs/sha256/<hex>`, the OCI image layout's blob path).

use crate::error::Error;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Option<Digest> {
        let hex = text.strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        (hex.bytes().all(|b| !b.is_ascii_uppercase())).then_some(Digest(out))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never a torn one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // The random part: processes in different pid namespaces (containers, all pid 1) share directories.
    let name =
        format!(".tmp-{}-{}-{:016x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), fastrand::u64(..));
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    Ok((path, file))
}

/// The content-addressed component store of a data folder (`<data-dir>/blobs/sha256/<hex>`): the node's,
/// and where `wasmfn build` puts components so they deploy as `spec.component: sha256:<hex>`.
#[derive(Clone, Debug)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// The store of `data_dir`.
    pub fn new(data_dir: &Path) -> Blobs {
        Blobs { dir: data_dir.join("blobs").join("sha256") }
    }

    /// Where the blob with `digest` lives.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Stores `bytes` and returns their digest; storing the same bytes twice is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, Error> {
        self.put_as(Digest::of(bytes), bytes)
    }

    /// [`Blobs::put`] for bytes whose digest the caller just computed.
    pub(crate) fn put_as(&self, digest: Digest, bytes: &[u8]) -> Result<Digest, Error> {
        let path = self.path(&digest);
        if !path.exists() {
            write_atomic(&path, bytes).map_err(|e| Error::io(&path, e))?;
        }
        Ok(digest)
    }

    /// Reads a blob and checks its content against the digest.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.path(digest);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::UnknownComponent(digest.to_string())
            } else {
                Error::io(&path, e)
            }
        })?;
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(Error::DigestMismatch { expected: digest.to_string(), actual: actual.to_string() });
        }
        Ok(bytes)
    }
}
