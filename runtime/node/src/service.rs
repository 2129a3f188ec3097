//! A function's state with its traffic resolved: the weighted split over its revisions and the revision
//! each tag reaches. Immutable: every change builds a new one for the next table snapshot.

use crate::error::Error;
use crate::revision::Revision;
use crate::rollout::share;
use crate::state::State;
use std::collections::BTreeMap;
use std::sync::Arc;

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
                    .ok_or_else(|| state.unknown_revision(Some(format!("spec.traffic[{i}].revisionName")), name))?;
                shares.push(Share { revision: revision.clone(), percent: t.percent, tag: t.tag, latest: false });
                continue;
            }
            let ready = state
                .revision(state.ready)
                .ok_or_else(|| Error::Invariant(format!("{}: no ready revision", state.function.key())))?;
            match state.rollout.as_ref().and_then(|r| Some((r, state.revision(r.to)?))) {
                Some((r, to)) => {
                    let steps = state.function.spec.rollout.as_ref().map_or(1, |r| r.steps);
                    let new = share(t.percent, r.step, steps);
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
