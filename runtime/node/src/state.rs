//! The plain state of a function as the node serves it (Knative's Service): its manifest, its retained
//! immutable revisions, the ready revision that `latestRevision: true` resolves to, and its rollout. The split
//! and tags are derived from it (`service.rs`); the rollout's transitions are in `rollout.rs`.

use crate::error::Error;
use crate::revision::Revision;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;
use wasmfn_api::{Function, TrafficTarget};

/// A rollout in progress: the latest share moves from `from` to `to`, `step` of the rollout's steps done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Progress {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) step: u32,
    #[serde(with = "humantime_serde")]
    pub(crate) started: SystemTime,
}

/// How a rollout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Ended {
    /// The new revision took all of the latest traffic.
    Succeeded,
    /// The new revision failed (too many 5xx) or a rollback was asked for; it is out of service.
    RolledBack,
    /// Something else ended it: a newer deploy, a traffic change, the revision gone.
    Cancelled,
}

/// The phases of a rollout, as the admin API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Traffic is moving step by step.
    Progressing,
    /// It ended.
    Ended(Ended),
}

impl Phase {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "Progressing",
            Phase::Ended(Ended::Succeeded) => "Succeeded",
            Phase::Ended(Ended::RolledBack) => "RolledBack",
            Phase::Ended(Ended::Cancelled) => "Cancelled",
        }
    }
}

/// How the last rollout ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Outcome {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) state: Ended,
    pub(crate) reason: String,
    #[serde(with = "humantime_serde")]
    pub(crate) at: SystemTime,
}

impl Outcome {
    pub(crate) fn of(p: &Progress, state: Ended, reason: String, at: SystemTime) -> Outcome {
        Outcome { from: p.from, to: p.to, state, reason, at }
    }
}

/// The plain state of a service, from which the split and tags are derived.
#[derive(Clone)]
pub(crate) struct State {
    /// The applied manifest (component pinned), routing fields included.
    pub(crate) function: Function,
    /// Retained revisions, oldest first.
    pub(crate) revisions: Vec<Arc<Revision>>,
    /// The newest generation ever created; names are never reused while the function exists.
    pub(crate) latest: u64,
    /// What `latestRevision: true` resolves to outside a rollout (Knative's latest ready revision).
    pub(crate) ready: u64,
    pub(crate) rollout: Option<Progress>,
    pub(crate) outcome: Option<Outcome>,
    /// Revisions taken out of service by a rollback, with the reason.
    pub(crate) failed: BTreeMap<u64, String>,
}

impl State {
    /// A function with no revision yet.
    pub(crate) fn new(function: Function) -> State {
        State {
            function,
            revisions: Vec::new(),
            latest: 0,
            ready: 0,
            rollout: None,
            outcome: None,
            failed: BTreeMap::new(),
        }
    }

    /// The newest revision.
    pub(crate) fn latest(&self) -> Option<&Arc<Revision>> {
        self.revisions.last()
    }

    /// Rejects traffic that names a revision that does not exist (or is not about to: `pending`).
    pub(crate) fn check_traffic(&self, pending: Option<u64>) -> Result<(), Error> {
        for (i, t) in self.function.spec.traffic.iter().enumerate() {
            if let Some(name) = &t.revision_name {
                let g = self.function.revision_generation(name);
                if !g.is_some_and(|g| Some(g) == pending || self.revision(g).is_some()) {
                    return Err(self.unknown_revision(Some(format!("spec.traffic[{i}].revisionName")), name));
                }
            }
        }
        Ok(())
    }

    /// The error for a revision name that is not retained; `field` when a manifest named it.
    pub(crate) fn unknown_revision(&self, field: Option<String>, name: &str) -> Error {
        Error::UnknownRevision {
            field,
            revision: name.to_string(),
            function: self.function.metadata.name.clone(),
            have: self.revisions.iter().map(|r| r.name.clone()).collect(),
        }
    }

    pub(crate) fn revision(&self, generation: u64) -> Option<&Arc<Revision>> {
        self.revisions.iter().find(|r| r.generation == generation)
    }

    pub(crate) fn name_of(&self, generation: u64) -> String {
        self.function.revision_name(generation)
    }

    pub(crate) fn targets(&self) -> Vec<TrafficTarget> {
        match self.function.spec.traffic.as_slice() {
            [] => vec![TrafficTarget::latest(100)],
            t => t.to_vec(),
        }
    }

    /// Generations the routing needs: traffic targets, the ready revision, a rollout's two.
    fn referenced(&self) -> BTreeSet<u64> {
        let f = &self.function;
        let mut keep: BTreeSet<u64> = self
            .targets()
            .iter()
            .filter_map(|t| t.revision_name.as_deref())
            .filter_map(|n| f.revision_generation(n))
            .collect();
        keep.extend([self.ready, self.latest]);
        if let Some(r) = &self.rollout {
            keep.extend([r.from, r.to]);
        }
        keep
    }

    /// Keeps the newest `history` revisions and every referenced one.
    pub(crate) fn prune(&mut self, history: usize) {
        let keep = self.referenced();
        let cutoff = self.revisions.len().saturating_sub(history);
        let mut i = 0;
        self.revisions.retain(|r| {
            i += 1;
            i > cutoff || keep.contains(&r.generation)
        });
        let kept: BTreeSet<u64> = self.revisions.iter().map(|r| r.generation).collect();
        self.failed.retain(|g, _| kept.contains(g));
    }
}
