//! Blob garbage collection: components no function references and the local OCI index does not name are
//! deleted, with their compiled code, once unreferenced (unmodified) for `gc-grace`. The grace covers a
//! deploy that stored its component but has not yet entered the table.

use super::CodeStore;
use crate::blobs::Digest;
use crate::error::Error;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

impl CodeStore {
    /// Deletes what `referenced` (the table's digests) and the OCI index of `data_dir` do not keep. Blocking.
    pub(crate) fn collect_garbage(
        &self,
        data_dir: &Path,
        mut referenced: HashSet<Digest>,
        grace: Duration,
    ) -> Result<usize, Error> {
        // A damaged index keeps everything rather than deleting what it may name.
        referenced.extend(wasmfn_oci::Layout::open(data_dir)?.referenced()?.iter().filter_map(|d| Digest::parse(d)));
        let dir = data_dir.join("blobs").join("sha256");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(digest) = Digest::parse(&format!("sha256:{name}")) else { continue };
            if referenced.contains(&digest) {
                continue;
            }
            let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
            if age.is_none_or(|a| a < grace) {
                continue;
            }
            if std::fs::remove_file(entry.path()).is_ok() {
                self.aot.remove(&digest);
                self.puller.forget(&digest);
                self.metrics.blobs_collected.inc();
                tracing::info!(%digest, "deleted an unreferenced component");
                removed += 1;
            }
        }
        Ok(removed)
    }
}
