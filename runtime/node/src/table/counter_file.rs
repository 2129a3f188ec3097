//! The per-revision counters file, `<data-dir>/revision-counters.json`: requests, 5xx and the latency
//! histogram of every revision, saved every few seconds and at shutdown, so rollout verdicts and revision
//! status survive a restart (a crash loses the last few seconds).

use super::{FunctionTable, Table};
use crate::blobs::write_atomic;
use crate::counters::SavedCounters;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};
use wasmfn_api::FunctionKey;

/// The per-revision counters file.
#[derive(Serialize, Deserialize, Default)]
struct SavedRevisions {
    revisions: Vec<SavedRevision>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedRevision {
    /// `namespace/name`.
    function: String,
    generation: u64,
    /// Seconds since the epoch: tells a revision from a later one of the same name (the function was deleted
    /// and created again).
    created: u64,
    #[serde(flatten)]
    counters: SavedCounters,
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl FunctionTable {
    /// Adds the saved counters to the restored revisions.
    pub(super) fn restore_counters(&self, table: &Table) {
        let path = &self.counters.path;
        let saved: SavedRevisions = match std::fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "revision counters unreadable; starting from zero");
                    return;
                }
            },
            Err(_) => return,
        };
        for s in saved.revisions {
            if let Some(r) = FunctionKey::parse(&s.function)
                .and_then(|key| table.get(&key))
                .and_then(|f| f.state.revision(s.generation))
                && unix_secs(r.created) == s.created
            {
                r.counters.restore(&s.counters);
            }
        }
    }

    /// Writes every revision's counters. Returns the total of requests written.
    pub(crate) async fn save_counters(&self) -> u64 {
        // Numbered and read together, so a later number never carries an older table.
        let (seq, table) = {
            let mut last = self.counters.snapshots.lock().unwrap_or_else(|e| e.into_inner());
            *last += 1;
            (*last, self.snapshot())
        };
        let revisions: Vec<SavedRevision> = (table.functions.iter())
            .flat_map(|(key, s)| {
                s.state.revisions.iter().map(move |r| SavedRevision {
                    function: key.to_string(),
                    generation: r.generation,
                    created: unix_secs(r.created),
                    counters: r.counters.save(),
                })
            })
            .collect();
        let total = revisions.iter().map(|r| r.counters.requests).sum();
        let json = match serde_json::to_vec(&SavedRevisions { revisions }) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode revision counters");
                return total;
            }
        };
        let (path, written) = (self.counters.path.clone(), self.counters.written.clone());
        let write = move || {
            // Writers race (the periodic save, a remove, the shutdown); the newest snapshot must win.
            let mut written = written.lock().unwrap_or_else(|e| e.into_inner());
            if *written > seq {
                return Ok(());
            }
            write_atomic(&path, &json)?;
            *written = seq;
            Ok::<_, std::io::Error>(())
        };
        match tokio::task::spawn_blocking(write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot save revision counters"),
            Err(e) => tracing::warn!(error = %e, "revision counter task failed"),
        }
        total
    }

    /// Saves the counters every few seconds when they changed, until the node stops.
    pub(crate) async fn save_counters_periodically(self: std::sync::Arc<Self>) {
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut saved = u64::MAX;
        loop {
            interval.tick().await;
            let total: u64 = (self.load().functions.values())
                .flat_map(|s| s.state.revisions.iter().map(|r| r.counters.requests()))
                .sum();
            if total != saved {
                saved = self.save_counters().await;
            }
        }
    }
}
