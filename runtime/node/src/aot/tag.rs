//! The tag beside each AOT entry: what binds the compiled bytes to the component and engine they were compiled
//! for, and, with an [`AotKey`], to whoever holds the key.
//!
//! Formats (a change adds a version here and keeps reading the older ones):
//! - version 1, read only and only without a key: `<hex>.b3`, the BLAKE3 hex of the digest's hex and the code.
//! - version 2: `<hex>.sum`, one line `wasmfn-aot/2 <algorithm> <hex>`. The algorithm is `hmac-sha256` when
//!   the node has a key and `blake3` when it has none, over [`header`] and then the code.
//!
//! An unkeyed tag is a checksum: anyone who can write the directory can compute it for code of their own. A node
//! with a key accepts only `hmac-sha256` tags, compared in constant time, so an entry planted by someone who
//! can write the directory but not read the key is refused before its code is mapped.

use crate::blobs::Digest;
use hmac::{KeyInit, Mac};
use std::fmt;
use std::path::Path;

/// The format version of the tags this node writes.
pub(crate) const VERSION: u32 = 2;
const MAGIC: &str = "wasmfn-aot";
const HMAC: &str = "hmac-sha256";
const BLAKE3: &str = "blake3";

type HmacSha256 = hmac::Hmac<sha2_for_hmac::Sha256>;

/// The secret that keys AOT entries (and the compilation cache's): 32 bytes from a file only its owner reads.
#[derive(Clone)]
pub(crate) struct AotKey([u8; AotKey::LEN]);

impl fmt::Debug for AotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AotKey(..)")
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// The file cannot be read.
    #[error("cannot read the AOT key file {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file's size or permissions are wrong.
    #[error("AOT key file {}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl AotKey {
    /// Bytes in a key.
    pub(crate) const LEN: usize = 32;

    /// A key from its bytes.
    #[cfg(test)]
    pub(crate) fn new(bytes: [u8; AotKey::LEN]) -> AotKey {
        AotKey(bytes)
    }

    /// Reads a key file: exactly [`AotKey::LEN`] bytes, neither readable nor writable by group or others (a key
    /// others can read keys nothing).
    pub(crate) fn read(path: &Path) -> Result<AotKey, KeyError> {
        use std::os::unix::fs::PermissionsExt;
        let read = |source| KeyError::Read { path: path.to_owned(), source };
        let invalid = |problem: String| KeyError::Invalid { path: path.to_owned(), problem };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(invalid(format!("mode {:04o} lets group or others use it; make it 0600", mode & 0o7777)));
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let bytes: [u8; AotKey::LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| invalid(format!("holds {} bytes, a key is exactly {}", bytes.len(), AotKey::LEN)))?;
        Ok(AotKey(bytes))
    }

    /// A key for another use of the same secret (BLAKE3's key derivation), independent of this one.
    pub(crate) fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }
}

/// Why an entry's tag does not vouch for its code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TagError {
    /// Not a tag this node can read (damaged, or written by a newer node).
    #[error("unreadable tag `{0}` (this node reads `{MAGIC}/{VERSION}`)")]
    Format(String),
    /// The node has a key and the entry's tag is a plain checksum: planted, or written before the key existed.
    #[error("the entry is not keyed ({0}) but this node has an AOT key: refused")]
    Unkeyed(&'static str),
    /// The entry was keyed and this node has no key to check it with.
    #[error("the entry is keyed and this node has no AOT key to check it")]
    Keyed,
    /// The tag does not match the code, digest and engine: tampered with, forged or damaged.
    #[error("{0} mismatch: the code was changed or forged, or belongs to another component or engine")]
    Mismatch(&'static str),
}

/// What the tag covers before the code: the format, the algorithm, the component's digest, the engine's
/// compatibility key and the code's length, each of fixed size or NUL-terminated.
fn header(algorithm: &str, digest: &Digest, engine: u64, len: usize) -> Vec<u8> {
    let mut h = format!("{MAGIC}/{VERSION}\0{algorithm}\0{}\0", digest.hex()).into_bytes();
    h.extend_from_slice(&engine.to_be_bytes());
    h.extend_from_slice(&(len as u64).to_be_bytes());
    h
}

fn hmac(key: &AotKey, digest: &Digest, engine: u64, code: &[u8]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&key.0).expect("HMAC takes keys of any length");
    mac.update(&header(HMAC, digest, engine, code.len()));
    mac.update(code);
    mac
}

fn blake3(digest: &Digest, engine: u64, code: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(&header(BLAKE3, digest, engine, code.len()));
    h.update(code);
    h.finalize()
}

/// The current format's tag of `code`, keyed when there is a key.
pub(crate) fn compute(key: Option<&AotKey>, digest: &Digest, engine: u64, code: &[u8]) -> String {
    match key {
        Some(key) => {
            let mac = hmac(key, digest, engine, code).finalize().into_bytes();
            format!("{MAGIC}/{VERSION} {HMAC} {}\n", hex::encode(mac))
        }
        None => format!("{MAGIC}/{VERSION} {BLAKE3} {}\n", blake3(digest, engine, code).to_hex()),
    }
}

/// Checks a current-format tag (the `.sum` file's text) against `code`.
pub(crate) fn verify(
    key: Option<&AotKey>,
    digest: &Digest,
    engine: u64,
    code: &[u8],
    text: &str,
) -> Result<(), TagError> {
    let bad = || TagError::Format(text.trim().chars().take(100).collect());
    let mut fields = text.split_ascii_whitespace();
    let (Some(version), Some(algorithm), Some(hex), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad());
    };
    if version != format!("{MAGIC}/{VERSION}") {
        return Err(bad());
    }
    match (algorithm, key) {
        (HMAC, Some(key)) => {
            let tag = hex::decode(hex).map_err(|_| bad())?;
            // `verify_slice` compares in constant time.
            hmac(key, digest, engine, code).verify_slice(&tag).map_err(|_| TagError::Mismatch("HMAC"))
        }
        (BLAKE3, None) => {
            let expected = blake3::Hash::from_hex(hex).map_err(|_| bad())?;
            // `blake3::Hash`'s equality is constant time.
            if blake3(digest, engine, code) == expected { Ok(()) } else { Err(TagError::Mismatch("checksum")) }
        }
        (BLAKE3, Some(_)) => Err(TagError::Unkeyed("a BLAKE3 checksum")),
        (HMAC, None) => Err(TagError::Keyed),
        _ => Err(bad()),
    }
}

/// Checks a version 1 tag (the `.b3` file's text): only without a key, which it predates.
pub(crate) fn verify_v1(key: Option<&AotKey>, digest: &Digest, code: &[u8], text: &str) -> Result<(), TagError> {
    if key.is_some() {
        return Err(TagError::Unkeyed("a version 1 checksum"));
    }
    let expected = blake3::Hash::from_hex(text.trim()).map_err(|_| TagError::Format(text.trim().into()))?;
    let mut h = blake3::Hasher::new();
    h.update(digest.hex().as_bytes());
    h.update(code);
    if h.finalize() == expected { Ok(()) } else { Err(TagError::Mismatch("checksum")) }
}

/// A version 1 tag, as nodes before version 2 wrote them (for tests of reading old entries).
#[cfg(test)]
pub(crate) fn compute_v1(digest: &Digest, code: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(digest.hex().as_bytes());
    h.update(code);
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_bind_key_digest_engine_and_code() {
        let key = AotKey::new([7; 32]);
        let other = AotKey::new([8; 32]);
        let (d, e) = (Digest::of(b"component"), 42);
        let keyed = compute(Some(&key), &d, e, b"code");
        assert!(keyed.starts_with("wasmfn-aot/2 hmac-sha256 "), "{keyed}");
        verify(Some(&key), &d, e, b"code", &keyed).unwrap();
        for (k, digest, engine, code) in [
            (&other, d, e, &b"code"[..]),
            (&key, Digest::of(b"another"), e, b"code"),
            (&key, d, e + 1, b"code"),
            (&key, d, e, b"cod3"),
        ] {
            let err = verify(Some(k), &digest, engine, code, &keyed).unwrap_err();
            assert!(matches!(err, TagError::Mismatch(_)), "{err}");
        }
        // An unkeyed checksum of the very same code, which anyone can compute, is refused by a keyed node.
        let plain = compute(None, &d, e, b"code");
        verify(None, &d, e, b"code", &plain).unwrap();
        assert!(matches!(verify(Some(&key), &d, e, b"code", &plain), Err(TagError::Unkeyed(_))));
        assert!(matches!(verify(None, &d, e, b"code", &keyed), Err(TagError::Keyed)));
        // Other versions, algorithms and garbage.
        let v3 = keyed.replace("wasmfn-aot/2", "wasmfn-aot/3");
        for text in [v3.as_str(), "", "wasmfn-aot/2 md5 00", "wasmfn-aot/2 hmac-sha256 zz", &keyed.replace(' ', "  x ")]
        {
            assert!(matches!(verify(Some(&key), &d, e, b"code", text), Err(TagError::Format(_))), "{text:?}");
        }
        // Version 1: read without a key only.
        let v1 = compute_v1(&d, b"code");
        verify_v1(None, &d, b"code", &v1).unwrap();
        assert!(matches!(verify_v1(None, &d, b"cod3", &v1), Err(TagError::Mismatch(_))));
        assert!(matches!(verify_v1(Some(&key), &d, b"code", &v1), Err(TagError::Unkeyed(_))));
    }

    #[test]
    fn key_files_must_be_private_and_32_bytes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, [1u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(AotKey::read(&path).unwrap().0, [1; 32]);
        assert_eq!(format!("{:?}", AotKey::read(&path).unwrap()), "AotKey(..)", "never printed");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = AotKey::read(&path).unwrap_err().to_string();
        assert!(e.contains("mode 0640") && e.contains(&path.display().to_string()), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, [1u8; 31]).unwrap();
        assert!(AotKey::read(&path).unwrap_err().to_string().contains("31 bytes"));
        let missing = AotKey::read(&dir.path().join("none")).unwrap_err();
        assert!(std::error::Error::source(&missing).is_some(), "the I/O error is kept");
    }
}
