//! The table on disk, `<data-dir>/functions.json`: written (with an fsync) before every swap, so a restarted
//! node serves the same revisions, splits and rollouts at once.
//!
//! Format versions, all read: 2 (`"version": 2`, written now); 1 (no `version`, the same fields); and the
//! format before revisions were kept (no `revisions`; one `generation` and `created` per function).
//! Conversions go through [`Persisted::of`] (state → file) and [`Persisted::into_states`] (file → state) only.

use super::FunctionTable;
use crate::blobs::{Digest, write_atomic};
use crate::error::Error;
use crate::revision::Revision;
use crate::service::Service;
use crate::state::{Outcome, Progress, State};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;
use wasmfn_api::{Function, FunctionKey};

/// The format this node writes, and the newest it reads.
const VERSION: u32 = 2;

fn unversioned() -> u32 {
    1
}

/// The persisted form of the table.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Persisted {
    #[serde(default = "unversioned")]
    version: u32,
    functions: Vec<PersistedService>,
}

/// One function as persisted: its manifest, revisions and routing state.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersistedService {
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

impl Persisted {
    /// The file's form of the in-memory table.
    fn of(table: &super::Table) -> Persisted {
        let functions = table.functions.values().map(|s| {
            let st = &s.state;
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
        });
        Persisted { version: VERSION, functions: functions.collect() }
    }

    /// The services of a file, their revisions sharing `table`'s per-function parts. `has_blob` tells whether
    /// a revision's component is in the store.
    fn into_states(
        self,
        path: &Path,
        table: &FunctionTable,
        has_blob: &dyn Fn(&Digest) -> bool,
    ) -> Result<BTreeMap<FunctionKey, Arc<Service>>, Error> {
        if self.version > VERSION {
            return Err(Error::TableVersion { path: path.to_owned(), found: self.version, supported: VERSION });
        }
        let entry = |message: String| Error::TableEntry { path: path.to_owned(), message };
        let mut functions = BTreeMap::new();
        for mut record in self.functions {
            let key = record.function.key();
            if record.revisions.is_empty()
                && let Some(generation) = record.generation
            {
                // The format before revisions were kept: the function was its only revision.
                record.revisions.push(PersistedRevision {
                    generation,
                    created: record.created.unwrap_or_else(SystemTime::now),
                    function: Function { spec: record.function.spec.revision_config(), ..record.function.clone() },
                });
                (record.latest, record.ready) = (generation, generation);
            }
            let common = table.common(&key);
            let mut revisions = Vec::new();
            for r in record.revisions {
                let Some(digest) = r.function.spec.component.as_deref().and_then(Digest::parse) else {
                    return Err(entry(format!("{key} has no component digest")));
                };
                // Kept even when its blob is unreadable now (a volume not mounted yet): its requests fail with
                // the reason, and the next write of the table does not silently drop it.
                if !has_blob(&digest) {
                    tracing::error!(function = %key, %digest, "restored revision's component is not in the store");
                }
                revisions.push(Arc::new(Revision::new(r.function, digest, r.generation, r.created, &common)));
            }
            let state = State {
                function: record.function,
                revisions,
                latest: record.latest,
                ready: record.ready,
                rollout: record.rollout,
                outcome: record.outcome,
                failed: record.failed,
            };
            let service = Service::new(state).map_err(|e| entry(format!("{key}: {e}")))?;
            functions.insert(key, Arc::new(service));
        }
        Ok(functions)
    }
}

impl FunctionTable {
    /// Reads the persisted table and its counters back (nothing to do on a new node).
    pub(crate) fn restore(&self, has_blob: &dyn Fn(&Digest) -> bool) -> Result<(), Error> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let persisted: Persisted =
            serde_json::from_str(&text).map_err(|source| Error::TableFormat { path: self.path.clone(), source })?;
        let functions = persisted.into_states(&self.path, self, has_blob)?;
        tracing::info!(functions = functions.len(), "restored function table");
        let table = super::Table::from_functions(functions);
        self.restore_counters(&table);
        self.store(table);
        Ok(())
    }

    /// Writes the table (with an fsync) off the runtime threads.
    pub(super) async fn persist(&self, table: &super::Table) -> Result<(), Error> {
        let path = self.path.clone();
        let json = serde_json::to_vec_pretty(&Persisted::of(table))
            .map_err(|source| Error::TableFormat { path: path.clone(), source })?;
        tokio::task::spawn_blocking(move || write_atomic(&path, &json).map_err(|e| Error::io(&path, e)))
            .await
            .map_err(Error::task("persist"))?
    }
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

    #[test]
    fn version_1_restores_and_is_written_back_as_version_2_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let revision = |g: u64| serde_json::json!({"generation": g, "created": "2026-01-02T03:04:05Z", "function": manifest("v1")});
        let json = serde_json::json!({"functions": [{"function": manifest("v1"), "revisions": [revision(1), revision(2)],
            "latest": 2, "ready": 1, "failed": {"2": "rolled back"},
            "outcome": {"from": 1, "to": 2, "state": "RolledBack", "reason": "rolled back", "at": "2026-01-02T03:04:05Z"}}]});
        let t = restored(dir.path(), &json.to_string()).unwrap();
        let s = t.get(&FunctionKey::new("default", "v1")).unwrap();
        assert_eq!((s.state.ready, s.state.revisions.len(), s.pick().name.as_str()), (1, 2, "v1-1"));
        assert_eq!(s.state.outcome.as_ref().map(|o| o.state), Some(crate::state::Ended::RolledBack));
        // Written back through the one conversion: version 2, the same content.
        let written = serde_json::to_value(Persisted::of(&t)).unwrap();
        assert_eq!(written["version"], 2);
        for field in ["latest", "ready", "failed", "outcome"] {
            assert_eq!(written["functions"][0][field], json["functions"][0][field], "{field}");
        }
        let generations: Vec<_> = (0..2).map(|i| &written["functions"][0]["revisions"][i]["generation"]).collect();
        assert_eq!(generations, [1, 2]);
        let again = restored(dir.path(), &written.to_string()).unwrap();
        assert_eq!(serde_json::to_value(Persisted::of(&again)).unwrap(), written);
    }

    #[test]
    fn a_newer_format_or_a_bad_entry_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let e = restored(dir.path(), r#"{"version": 3, "functions": []}"#).err().unwrap();
        assert!(e.to_string().contains("format version 3 is newer"), "{e}");
        let mut bad = manifest("bad");
        bad["spec"]["component"] = "./x.wasm".into();
        let json = serde_json::json!({"functions": [{"function": bad, "generation": 1}]});
        let e = restored(dir.path(), &json.to_string()).err().unwrap();
        assert!(e.to_string().contains("default/bad has no component digest"), "{e}");
        let e = restored(dir.path(), "{").err().unwrap();
        assert!(matches!(e, Error::TableFormat { .. }) && std::error::Error::source(&e).is_some(), "{e}");
    }
}
