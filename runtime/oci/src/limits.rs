//! Bounds on what a registry may send. A registry is a network peer: its manifests, digests and blobs are
//! checked before use and capped while they stream, so a hostile or broken one costs a bounded amount of memory
//! and time and gets an error that names the problem.

use crate::Error;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// Caps on registry input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest accepted, in bytes.
    pub manifest: u64,
    /// Largest layer (as stored in the registry, compressed or not), in bytes.
    pub layer: u64,
    /// Largest component, in bytes (after inflating a gzip layer).
    pub component: u64,
    /// Longest a pull (manifest and layer, retries included) may take.
    pub pull_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // Components of the JS and Python templates are 12–20 MB; these leave room without inviting abuse.
        Limits { manifest: 4 << 20, layer: 256 << 20, component: 256 << 20, pull_timeout: Duration::from_secs(300) }
    }
}

/// Checks that `digest` is `sha256:` and 64 lowercase hex digits (the only algorithm wasmfn accepts), so that
/// it is safe to compare, log and derive names from.
pub fn check_digest(digest: &str, what: &str) -> Result<(), Error> {
    let ok = digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    if ok {
        Ok(())
    } else {
        let shown: String = digest.chars().take(80).collect();
        Err(Error::Invalid(format!(
            "{what} has an invalid digest {shown:?}: expected sha256: and 64 lowercase hex digits"
        )))
    }
}

/// An in-memory sink that refuses to grow past `cap` bytes (and records that it did).
pub(crate) struct CappedVec {
    pub(crate) buf: Vec<u8>,
    cap: u64,
    pub(crate) overflowed: Arc<AtomicBool>,
}

impl CappedVec {
    pub(crate) fn new(cap: u64) -> CappedVec {
        CappedVec { buf: Vec::with_capacity(cap.min(64 << 20) as usize), cap, overflowed: Arc::default() }
    }
}

impl tokio::io::AsyncWrite for CappedVec {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() as u64 + data.len() as u64 > this.cap {
            this.overflowed.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(std::io::Error::other(format!("longer than {} bytes", this.cap))));
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A reader that fails once more than `left` bytes came through: inflating a layer stops at the cap instead of
/// at the end of a gzip bomb.
pub(crate) struct CappedReader<R> {
    inner: R,
    left: u64,
    pub(crate) overflowed: bool,
}

impl<R> CappedReader<R> {
    pub(crate) fn new(inner: R, cap: u64) -> CappedReader<R> {
        CappedReader { inner, left: cap, overflowed: false }
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            self.overflowed = true;
            return Err(std::io::Error::other("the layer inflates past the component size limit"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn digests_are_exact_sha256_hex() {
        check_digest(&format!("sha256:{}", "ab".repeat(32)), "the layer").unwrap();
        for bad in [
            "sha256:/dev/zero".to_string(),
            "sha256:../../etc/passwd".into(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha256:{}", "ab".repeat(33)),
            format!("sha512:{}", "ab".repeat(64)),
            "".into(),
        ] {
            let err = check_digest(&bad, "the layer").unwrap_err().to_string();
            assert!(err.contains("the layer has an invalid digest"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_capped_sink_refuses_what_exceeds_its_cap() {
        let mut sink = CappedVec::new(10);
        sink.write_all(b"0123456789").await.unwrap();
        assert!(sink.write_all(b"x").await.is_err());
        assert!(sink.overflowed.load(Ordering::Relaxed));
        assert_eq!(sink.buf, b"0123456789");
    }

    #[test]
    fn a_capped_reader_stops_at_its_cap() {
        let mut r = CappedReader::new(std::io::repeat(0), 1 << 20);
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        assert!(r.overflowed && out.len() <= 1 << 20);
    }
}
