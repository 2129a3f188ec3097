//! The table on disk: one file per function, `<data-dir>/functions/<hash of namespace/name>.json`, written
//! (with an fsync) before the swap that changes it, so a deploy answered is on disk and costs one small file
//! however many functions the node has, and a restarted node serves the same revisions, splits and rollouts
//! at once. File names are hashes: a function's name never becomes a path.
//!
//! Format versions, all read: 3 (a file per function, `"version": 3`, written now); and the single
//! `<data-dir>/functions.json` of earlier nodes, migrated to files at the first start: its version 2
//! (`"version": 2`), 1 (no `version`, the same fields) and the format before revisions were kept (no
//! `revisions`; one `generation` and `created` per function). Conversions go through
//! [`PersistedService::of`] (state → file) and [`PersistedService::into_service`] (file → state) only.

use super::FunctionTable;
use crate::blobs::{Digest, write_atomic};
use crate::error::Error;
use crate::revision::Revision;
use crate::service::Service;
use crate::state::{Outcome, Progress, State};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use wasmfn_api::{Function, FunctionKey};

/// The format this node writes, and the newest it reads.
const VERSION: u32 = 3;

/// One function's file: `{"version": 3, "state": {…}}` (nested rather than flattened: serde cannot read a
/// flattened map's integer keys, such as `failed`'s generations).
#[derive(Serialize, Deserialize)]
struct FunctionFile {
    version: u32,
    #[serde(rename = "state")]
    service: PersistedService,
}

/// One function as persisted: its manifest, revisions and routing state.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PersistedService {
    /// The applied manifest with `spec.component` pinned to `sha256:…`.
    function: Function,
    #[serde(default)]
    revisions: Vec<PersistedRevision>,
    #[serde(default)]
    latest: u64,
    #[serde(default)]
    ready: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollout: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    failed: BTreeMap<u64, String>,
    /// The format before revisions were kept: one revision, this generation and creation time.
    #[serde(default, skip_serializing)]
    generation: Option<u64>,
    #[serde(default, skip_serializing, with = "humantime_serde")]
    created: Option<SystemTime>,
}

/// One revision as persisted: the manifest it captured (no routing fields).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersistedRevision {
    generation: u64,
    #[serde(with = "humantime_serde")]
    created: SystemTime,
    function: Function,
}

impl PersistedService {
    /// The file's form of a service.
    fn of(service: &Service) -> PersistedService {
        let st = &service.state;
        PersistedService {
            function: st.function.clone(),
            revisions: (st.revisions.iter())
                .map(|r| PersistedRevision {
                    generation: r.generation,
                    created: r.created,
                    function: r.function.clone(),
                })
                .collect(),
            latest: st.latest,
            ready: st.ready,
            rollout: st.rollout.clone(),
            outcome: st.outcome.clone(),
            failed: st.failed.clone(),
            generation: None,
            created: None,
        }
    }

    /// The service of a file, its revisions sharing `table`'s per-function parts. `has_blob` tells whether
    /// a revision's component is in the store.
    pub(super) fn into_service(
        mut self,
        path: &Path,
        table: &FunctionTable,
        has_blob: &dyn Fn(&Digest) -> bool,
    ) -> Result<(FunctionKey, Arc<Service>), Error> {
        let entry = |message: String| Error::TableEntry { path: path.to_owned(), message };
        let key = self.function.key();
        if self.revisions.is_empty()
            && let Some(generation) = self.generation
        {
            // The format before revisions were kept: the function was its only revision.
            self.revisions.push(PersistedRevision {
                generation,
                created: self.created.unwrap_or_else(SystemTime::now),
                function: Function { spec: self.function.spec.revision_config(), ..self.function.clone() },
            });
            (self.latest, self.ready) = (generation, generation);
        }
        let common = table.common(&key);
        let mut revisions = Vec::new();
        for r in self.revisions {
            let Some(digest) = r.function.spec.component.as_deref().and_then(Digest::parse) else {
                return Err(entry(format!("{key} has no component digest")));
            };
            // Kept even when its blob is unreadable now (a volume not mounted yet): its requests fail with
            // the reason, and the next write does not silently drop it.
            if !has_blob(&digest) {
                tracing::error!(function = %key, %digest, "restored revision's component is not in the store");
            }
            revisions.push(Arc::new(Revision::new(r.function, digest, r.generation, r.created, &common)));
        }
        let state = State {
            function: self.function,
            revisions,
            latest: self.latest,
            ready: self.ready,
            rollout: self.rollout,
            outcome: self.outcome,
            failed: self.failed,
        };
        let service = Service::new(state).map_err(|e| entry(format!("{key}: {e}")))?;
        Ok((key, Arc::new(service)))
    }
}

impl FunctionTable {
    /// The file of `key`: a hash of its text, so no name becomes a path.
    fn file_of(&self, key: &FunctionKey) -> std::path::PathBuf {
        let hash = blake3::hash(key.to_string().as_bytes()).to_hex();
        self.dir.join(format!("{}.json", &hash[..32]))
    }

    /// Reads the persisted table and its counters back (nothing to do on a new node). A single-file table of
    /// an earlier node is migrated to files, then removed.
    pub(crate) fn restore(&self, has_blob: &dyn Fn(&Digest) -> bool) -> Result<(), Error> {
        let mut functions = BTreeMap::new();
        let migrate = self.read_single_file(has_blob, &mut functions)?;
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e.collect::<Result<Vec<_>, _>>().map_err(|e| Error::io(&self.dir, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            // Files being written (`.tmp-…`) are not part of the table yet.
            if name.to_string_lossy().starts_with('.') || path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let file: FunctionFile =
                serde_json::from_str(&text).map_err(|source| Error::TableFormat { path: path.clone(), source })?;
            if file.version > VERSION {
                return Err(Error::TableVersion { path, found: file.version, supported: VERSION });
            }
            let (key, service) = file.service.into_service(&path, self, has_blob)?;
            if self.file_of(&key) != path {
                // Not written by a node for this key (copied or renamed): serving it could shadow another.
                tracing::error!(path = %path.display(), function = %key, "a table file under another function's name: skipped");
                continue;
            }
            functions.insert(key, service);
        }
        if migrate {
            for service in functions.values() {
                self.write(service)?;
            }
            std::fs::remove_file(&self.legacy).map_err(|e| Error::io(&self.legacy, e))?;
            tracing::info!(functions = functions.len(), "function table migrated to a file per function");
        }
        tracing::info!(functions = functions.len(), "restored function table");
        let table = super::Table::from_functions(functions);
        self.restore_counters(&table);
        self.store(table);
        Ok(())
    }

    /// One function's file: where it goes, its bytes, and the counter of bytes written, for [`write_file`].
    fn encode(&self, service: &Service) -> Result<(std::path::PathBuf, Vec<u8>, Counter), Error> {
        let path = self.file_of(&service.state.function.key());
        let file = FunctionFile { version: VERSION, service: PersistedService::of(service) };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|source| Error::TableFormat { path: path.clone(), source })?;
        Ok((path, json, self.metrics.table_bytes_written.clone()))
    }

    /// Writes one function's file (with an fsync). Blocking.
    fn write(&self, service: &Service) -> Result<(), Error> {
        write_file(self.encode(service)?)
    }

    /// Writes a changed function's file off the runtime threads.
    pub(super) async fn persist(&self, service: &Service) -> Result<(), Error> {
        let file = self.encode(service)?;
        tokio::task::spawn_blocking(move || write_file(file)).await.map_err(Error::task("persist"))?
    }

    /// Deletes a removed function's file off the runtime threads; the deletion is durable when this returns.
    pub(super) async fn unpersist(&self, key: &FunctionKey) -> Result<(), Error> {
        let (path, dir) = (self.file_of(key), self.dir.clone());
        let delete = move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io(&path, e)),
            }
            std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(&dir, e))
        };
        tokio::task::spawn_blocking(delete).await.map_err(Error::task("persist"))?
    }
}

/// Writes an encoded function file atomically and counts its bytes. Blocking.
fn write_file((path, json, written): (std::path::PathBuf, Vec<u8>, Counter)) -> Result<(), Error> {
    write_atomic(&path, &json).map_err(|e| Error::io(&path, e))?;
    written.inc_by(json.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn table(dir: &Path) -> FunctionTable {
        let config = NodeConfig { data_dir: dir.to_owned(), ..NodeConfig::default() };
        FunctionTable::new(&config, crate::metrics::Metrics::new(), Default::default())
    }

    fn restored(dir: &Path, json: &str) -> Result<Arc<super::super::Table>, Error> {
        std::fs::write(dir.join("functions.json"), json).unwrap();
        let t = table(dir);
        t.restore(&|_| true)?;
        Ok(t.snapshot())
    }

    fn manifest(name: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": "wasmfn.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": name, "namespace": "default"}, "spec": {"component": DIGEST}})
    }

    #[test]
    fn the_format_before_revisions_restores_as_one_revision() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::json!({"functions": [{"function": manifest("old"), "generation": 3, "created": "2026-01-02T03:04:05Z"}]});
        let t = restored(dir.path(), &json.to_string()).unwrap();
        let s = t.get(&FunctionKey::new("default", "old")).unwrap();
        assert_eq!((s.state.latest, s.state.ready, s.latest().name.as_str()), (3, 3, "old-3"));
        assert_eq!(humantime::format_rfc3339_seconds(s.latest().created).to_string(), "2026-01-02T03:04:05Z");
    }

    /// The one function file of `dir`, parsed.
    fn only_file(dir: &Path) -> serde_json::Value {
        let files: Vec<_> = std::fs::read_dir(dir.join("functions")).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
    }

    #[test]
    fn a_single_file_table_is_migrated_to_a_file_per_function_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let revision = |g: u64| serde_json::json!({"generation": g, "created": "2026-01-02T03:04:05Z", "function": manifest("v1")});
        let json = serde_json::json!({"functions": [{"function": manifest("v1"), "revisions": [revision(1), revision(2)],
            "latest": 2, "ready": 1, "failed": {"2": "rolled back"},
            "outcome": {"from": 1, "to": 2, "state": "RolledBack", "reason": "rolled back", "at": "2026-01-02T03:04:05Z"}}]});
        for version in [None, Some(2)] {
            let mut json = json.clone();
            if let Some(v) = version {
                json["version"] = v.into();
            }
            let t = restored(dir.path(), &json.to_string()).unwrap();
            let s = t.get(&FunctionKey::new("default", "v1")).unwrap();
            assert_eq!((s.state.ready, s.state.revisions.len(), s.pick().name.as_str()), (1, 2, "v1-1"));
            assert_eq!(s.state.outcome.as_ref().map(|o| o.state), Some(crate::state::Ended::RolledBack));
            // Migrated: the single file is gone, the function's own file holds the same state as version 3.
            assert!(!dir.path().join("functions.json").exists());
            let written = only_file(dir.path());
            assert_eq!(written["version"], 3);
            for field in ["latest", "ready", "failed", "outcome"] {
                assert_eq!(written["state"][field], json["functions"][0][field], "{field}");
            }
            let generations: Vec<_> = (0..2).map(|i| &written["state"]["revisions"][i]["generation"]).collect();
            assert_eq!(generations, [1, 2]);
            // And it restores from there.
            let again = table(dir.path());
            again.restore(&|_| true).unwrap();
            assert_eq!(again.snapshot().get(&FunctionKey::new("default", "v1")).unwrap().state.ready, 1);
            std::fs::remove_dir_all(dir.path().join("functions")).unwrap();
        }
    }

    fn one_revision(t: &FunctionTable, name: &str) -> State {
        let f = Function::new("default", name, DIGEST);
        let digest = Digest::parse(DIGEST).unwrap();
        let mut st = State::new(f.clone());
        st.revisions.push(Arc::new(Revision::new(f.clone(), digest, 1, SystemTime::now(), &t.common(&f.key()))));
        (st.latest, st.ready) = (1, 1);
        st
    }

    #[tokio::test]
    async fn a_deploy_writes_one_file_whatever_the_number_of_functions() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let written = || t.metrics.table_bytes_written.get();
        let mut costs = Vec::new();
        for i in 0..500 {
            let before = written();
            let lock = t.lock().await;
            t.commit(&lock, one_revision(&t, &format!("fn-{i:04}"))).await.unwrap();
            costs.push(written() - before);
        }
        // The same name length each time: the 500th deploy writes what the first did.
        assert!(costs[0] > 0 && costs[499] == costs[0], "{} then {} bytes", costs[0], costs[499]);
        assert_eq!(std::fs::read_dir(dir.path().join("functions")).unwrap().count(), 500);
        // A removal deletes that file only, and a restart restores the rest.
        assert!(t.remove(&FunctionKey::new("default", "fn-0007")).await.unwrap());
        let again = table(dir.path());
        again.restore(&|_| true).unwrap();
        let restored = again.snapshot();
        assert_eq!(restored.functions.len(), 499);
        assert!(restored.get(&FunctionKey::new("default", "fn-0007")).is_none());
        assert!(restored.get(&FunctionKey::new("default", "fn-0499")).is_some());
    }

    #[tokio::test]
    async fn files_that_are_not_the_tables_own_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let t = table(dir.path());
        let lock = t.lock().await;
        t.commit(&lock, one_revision(&t, "real")).await.unwrap();
        drop(lock);
        let functions = dir.path().join("functions");
        let real = std::fs::read_dir(&functions).unwrap().next().unwrap().unwrap().path();
        // A copy under another name (it would shadow another function's file) and a write in progress.
        std::fs::copy(&real, functions.join("00000000000000000000000000000000.json")).unwrap();
        std::fs::write(functions.join(".tmp-1-2-3"), "{").unwrap();
        let again = table(dir.path());
        again.restore(&|_| true).unwrap();
        assert_eq!(again.snapshot().functions.len(), 1);
    }

    #[test]
    fn a_newer_format_or_a_bad_entry_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = restored(dir.path(), r#"{"version": 3, "functions": []}"#).err().unwrap();
        assert!(e.to_string().contains("format version 3 is newer"), "{e}");
        std::fs::remove_file(dir.path().join("functions.json")).unwrap();
        std::fs::create_dir_all(dir.path().join("functions")).unwrap();
        std::fs::write(dir.path().join("functions").join("x.json"), r#"{"version": 4, "state": {}}"#).unwrap();
        let e = table(dir.path()).restore(&|_| true).err().unwrap();
        assert!(matches!(e, Error::TableFormat { .. } | Error::TableVersion { .. }), "{e}");
        std::fs::remove_dir_all(dir.path().join("functions")).unwrap();
        let mut bad = manifest("bad");
        bad["spec"]["component"] = "./x.wasm".into();
        let json = serde_json::json!({"functions": [{"function": bad, "generation": 1}]});
        let e = restored(dir.path(), &json.to_string()).err().unwrap();
        assert!(e.to_string().contains("default/bad has no component digest"), "{e}");
        let e = restored(dir.path(), "{").err().unwrap();
        assert!(matches!(e, Error::TableFormat { .. }) && std::error::Error::source(&e).is_some(), "{e}");
    }
}
