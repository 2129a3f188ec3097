//! A function as the node serves it (Knative's Service): its manifest, its retained immutable revisions, the
//! ready revision that `latestRevision: true` resolves to, a rollout in progress, and the weighted split and
//! tags derived from `spec.traffic`. Immutable: every change builds a new one for the next table snapshot.

use crate::Error;
use crate::function::Revision;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wasmfn_api::{Function, TrafficTarget};

/// A rollout in progress: the latest share moves from `from` to `to`, `step` of the rollout's steps done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RolloutState {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) step: u32,
    #[serde(with = "humantime_serde")]
    pub(crate) started: SystemTime,
}

/// How the last rollout ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RolloutOutcome {
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// `Succeeded`, `RolledBack` or `Cancelled`.
    pub(crate) state: String,
    pub(crate) reason: String,
    #[serde(with = "humantime_serde")]
    pub(crate) at: SystemTime,
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
    pub(crate) rollout: Option<RolloutState>,
    pub(crate) outcome: Option<RolloutOutcome>,
    /// Revisions taken out of service by a rollback, with the reason.
    pub(crate) failed: BTreeMap<u64, String>,
}

/// One resolved share of the traffic.
#[derive(Clone)]
pub(crate) struct Share {
    pub(crate) revision: Arc<Revision>,
    pub(crate) percent: u32,
    pub(crate) tag: Option<String>,
    pub(crate) latest: bool,
}

/// A service: its state plus the split and tags resolved against its revisions.
pub(crate) struct Service {
    pub(crate) state: State,
    pub(crate) shares: Vec<Share>,
    /// Cumulative percent bounds (exclusive) of the shares with traffic; the last is 100.
    split: Vec<(u32, Arc<Revision>)>,
    tags: BTreeMap<String, Arc<Revision>>,
}

/// The new revision's share of `percent` after `step` of `steps`.
pub(crate) fn rollout_share(percent: u32, step: u32, steps: u32) -> u32 {
    (percent as u64 * step.min(steps) as u64 / steps.max(1) as u64) as u32
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
                    return Err(unknown_revision(self, i, name));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn revision(&self, generation: u64) -> Option<&Arc<Revision>> {
        self.revisions.iter().find(|r| r.generation == generation)
    }

    pub(crate) fn name_of(&self, generation: u64) -> String {
        format!("{}-{generation}", self.function.metadata.name)
    }

    fn targets(&self) -> Vec<TrafficTarget> {
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

impl Service {
    /// Resolves the traffic; a target naming a revision that is not retained is rejected.
    pub(crate) fn new(state: State) -> Result<Service, Error> {
        let mut shares = Vec::new();
        for (i, t) in state.targets().into_iter().enumerate() {
            if let Some(name) = &t.revision_name {
                let revision = state
                    .function
                    .revision_generation(name)
                    .and_then(|g| state.revision(g))
                    .ok_or_else(|| unknown_revision(&state, i, name))?;
                shares.push(Share { revision: revision.clone(), percent: t.percent, tag: t.tag, latest: false });
                continue;
            }
            let ready = state
                .revision(state.ready)
                .ok_or_else(|| Error::Table(format!("{}: no ready revision", state.function.key())))?;
            match state.rollout.as_ref().and_then(|r| Some((r, state.revision(r.to)?))) {
                Some((r, to)) => {
                    let steps = state.function.spec.rollout.as_ref().map_or(1, |r| r.steps);
                    let new = rollout_share(t.percent, r.step, steps);
                    let from = state.revision(r.from).unwrap_or(ready);
                    shares.push(Share { revision: from.clone(), percent: t.percent - new, tag: None, latest: true });
                    // During a rollout the tag reaches the new revision, so it can be tried at any share.
                    shares.push(Share { revision: to.clone(), percent: new, tag: t.tag, latest: true });
                }
                None => shares.push(Share { revision: ready.clone(), percent: t.percent, tag: t.tag, latest: true }),
            }
        }
        let mut split = Vec::new();
        let mut bound = 0;
        for s in shares.iter().filter(|s| s.percent > 0) {
            bound += s.percent;
            split.push((bound, s.revision.clone()));
        }
        let tags = shares.iter().filter_map(|s| Some((s.tag.clone()?, s.revision.clone()))).collect();
        Ok(Service { state, shares, split, tags })
    }

    /// A revision for one request, by weight.
    pub(crate) fn pick(&self) -> &Arc<Revision> {
        let r = fastrand::u32(0..100);
        match self.split.iter().find(|(bound, _)| r < *bound) {
            Some((_, rev)) => rev,
            // Unreachable with validated percents; the ready revision is the safe answer.
            None => self.split.last().map(|(_, r)| r).unwrap_or(&self.shares[0].revision),
        }
    }

    /// The revision a tag routes to.
    pub(crate) fn tagged(&self, tag: &str) -> Option<&Arc<Revision>> {
        self.tags.get(tag)
    }

    pub(crate) fn tags(&self) -> impl Iterator<Item = &str> {
        self.tags.keys().map(String::as_str)
    }

    /// The share of requests a revision gets.
    pub(crate) fn percent_of(&self, generation: u64) -> u32 {
        self.shares.iter().filter(|s| s.revision.generation == generation).map(|s| s.percent).sum()
    }

    /// The revisions that may get requests (by weight or tag), for warming up.
    pub(crate) fn routed(&self) -> impl Iterator<Item = &Arc<Revision>> {
        self.shares.iter().filter(|s| s.percent > 0 || s.tag.is_some()).map(|s| &s.revision)
    }

    /// The newest revision.
    pub(crate) fn latest(&self) -> &Arc<Revision> {
        self.state.revisions.last().expect("a service has at least one revision")
    }
}

fn unknown_revision(state: &State, i: usize, name: &str) -> Error {
    let have: Vec<&str> = state.revisions.iter().map(|r| r.name.as_str()).collect();
    Error::Rejected {
        field: format!("spec.traffic[{i}].revisionName"),
        message: format!("revision `{name}` does not exist; {} has {}", state.function.metadata.name, have.join(", ")),
    }
}

/// A revision as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    /// `<name>-<n>`.
    pub name: String,
    /// The component's digest.
    pub digest: String,
    /// When the revision was created (RFC 3339).
    pub created: String,
    /// Share of the function's requests it gets now.
    pub percent: u32,
    /// Tags routed to it.
    pub tags: Vec<String>,
    /// Whether it is the newest revision.
    pub latest: bool,
    /// Whether `latestRevision: true` resolves to it.
    pub ready: bool,
    /// Requests answered.
    pub requests: u64,
    /// Requests answered with a 5xx status.
    pub errors: u64,
    /// Median latency to the response head, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency to the response head, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Why a rollback took it out of service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
}

impl Service {
    /// Every retained revision, newest first.
    pub(crate) fn revision_infos(&self) -> Vec<RevisionInfo> {
        let s = &self.state;
        s.revisions
            .iter()
            .rev()
            .map(|r| RevisionInfo {
                name: r.name.clone(),
                digest: r.digest.to_string(),
                created: humantime::format_rfc3339_seconds(r.created).to_string(),
                percent: self.percent_of(r.generation),
                tags: self
                    .shares
                    .iter()
                    .filter(|x| x.revision.generation == r.generation)
                    .filter_map(|x| x.tag.clone())
                    .collect(),
                latest: r.generation == s.latest,
                ready: r.generation == s.ready,
                requests: r.counters.requests(),
                errors: r.counters.errors(),
                p50_ms: ms(r.counters.latency().quantile(0.5)),
                p99_ms: ms(r.counters.latency().quantile(0.99)),
                failure: s.failed.get(&r.generation).cloned(),
            })
            .collect()
    }
}
