//! Operations on a function's revisions: traffic changes, rollbacks, the gradual-rollout driver that steps
//! traffic over to a new revision (or rolls it back on errors), and the per-revision counters kept across
//! restarts.

use crate::Error;
use crate::blobs::write_atomic;
use crate::counters::SavedCounters;
use crate::metrics::RolloutLabels;
use crate::node::{FunctionInfo, Node};
use crate::service::{RevisionInfo, RolloutOutcome, RolloutState, Service, State, rollout_share};
use crate::table::Table;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wasmfn_api::{Function, TrafficTarget};

/// One share of a function's traffic, resolved to a revision.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStatus {
    /// The revision, `<name>-<n>`.
    pub revision_name: String,
    /// Its share of the requests.
    pub percent: u32,
    /// Whether the share follows the latest ready revision (a rollout splits it in two).
    pub latest_revision: bool,
    /// The tag routed to this revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Where the tag answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A rollout in progress, or how the last one ended.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `Progressing`, `Succeeded`, `RolledBack` or `Cancelled`.
    pub state: String,
    /// The revision traffic moves away from.
    pub from: String,
    /// The revision traffic moves to.
    pub to: String,
    /// The share of the latest traffic `to` gets now.
    pub percent: u32,
    /// Steps taken.
    pub step: u32,
    /// Steps in all.
    pub steps: u32,
    /// Why it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started (in progress) or ended (RFC 3339).
    pub since: String,
}

pub(crate) fn outcome(r: &RolloutState, state: &str, reason: String) -> RolloutOutcome {
    RolloutOutcome { from: r.from, to: r.to, state: state.into(), reason, at: SystemTime::now() }
}

/// Whether the function's traffic has a share that follows the latest revision.
pub(crate) fn follows_latest(f: &Function) -> bool {
    f.spec.traffic.is_empty() || f.spec.traffic.iter().any(|t| t.is_latest() && t.percent > 0)
}

/// What the rollout driver does next with one rollout.
enum Next {
    Step(u32),
    Complete,
    RollBack(String),
    Cancel(String),
}

fn next(state: &State, r: &RolloutState, now: SystemTime) -> Option<Next> {
    let Some(spec) = &state.function.spec.rollout else {
        return Some(Next::Complete);
    };
    let Some(to) = state.revision(r.to) else {
        return Some(Next::Cancel(format!("{} no longer exists", state.name_of(r.to))));
    };
    let (n, e) = (to.counters.requests(), to.counters.errors());
    if n >= spec.min_requests && e as f64 > spec.max_error_rate * n as f64 {
        return Some(Next::RollBack(format!(
            "{}: {e} of its {n} responses were 5xx ({:.1}%), above the rollout's maxErrorRate of {:.1}%",
            to.name,
            100.0 * e as f64 / n as f64,
            100.0 * spec.max_error_rate
        )));
    }
    let elapsed = now.duration_since(r.started).unwrap_or_default();
    if elapsed >= spec.duration {
        // Success needs a verdict: with too few answers yet, the new revision holds the whole share until it
        // has `minRequests` (and is still rolled back if they fail).
        return if n >= spec.min_requests {
            Some(Next::Complete)
        } else {
            (r.step < spec.steps).then_some(Next::Step(spec.steps))
        };
    }
    let step_len = spec.duration / spec.steps;
    let due = (1 + (elapsed.as_nanos() / step_len.as_nanos().max(1)) as u32).min(spec.steps);
    (due > r.step).then_some(Next::Step(due))
}

impl Node {
    /// `http://<tag>-<name>.<namespace>.<domain>:<port>/`.
    fn tag_url(&self, f: &Function, tag: &str) -> String {
        let port = self.shared.ingress_addr.get().copied().unwrap_or(self.shared.config.listen).port();
        let (name, ns) = (&f.metadata.name, &f.metadata.namespace);
        format!("http://{tag}-{name}.{ns}.{}:{port}/", self.shared.config.domain)
    }

    pub(crate) fn traffic_status(&self, s: &Service) -> Vec<TrafficStatus> {
        s.shares
            .iter()
            .map(|share| TrafficStatus {
                revision_name: share.revision.name.clone(),
                percent: share.percent,
                latest_revision: share.latest,
                url: share.tag.as_deref().map(|t| self.tag_url(&s.state.function, t)),
                tag: share.tag.clone(),
            })
            .collect()
    }

    pub(crate) fn rollout_status(&self, s: &Service) -> Option<RolloutStatus> {
        let st = &s.state;
        let steps = st.function.spec.rollout.as_ref().map_or(1, |r| r.steps);
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        if let Some(r) = &st.rollout {
            return Some(RolloutStatus {
                state: "Progressing".into(),
                from: st.name_of(r.from),
                to: st.name_of(r.to),
                percent: rollout_share(100, r.step, steps),
                step: r.step,
                steps,
                reason: None,
                since: time(r.started),
            });
        }
        let o = st.outcome.as_ref()?;
        let done = o.state == "Succeeded";
        Some(RolloutStatus {
            state: o.state.clone(),
            from: st.name_of(o.from),
            to: st.name_of(o.to),
            percent: if done { 100 } else { 0 },
            step: if done { steps } else { 0 },
            steps,
            reason: Some(o.reason.clone()),
            since: time(o.at),
        })
    }

    fn service(table: &Table, namespace: &str, name: &str) -> Result<Arc<Service>, Error> {
        table
            .functions
            .get(&format!("{namespace}/{name}"))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{namespace}/{name}")))
    }

    /// A function's retained revisions, newest first, with their share, counters and latency.
    pub fn revisions(&self, namespace: &str, name: &str) -> Result<Vec<RevisionInfo>, Error> {
        Ok(Self::service(&self.shared.table.load(), namespace, name)?.revision_infos())
    }

    /// Replaces `spec.traffic` (no new revision). Rejected like a deploy: percents that do not add up to 100,
    /// an unknown revision, a tag used twice or clashing with a function name. A rollout in progress ends if
    /// the latest revision no longer gets a share.
    pub async fn set_traffic(
        &self,
        namespace: &str,
        name: &str,
        traffic: Vec<TrafficTarget>,
    ) -> Result<FunctionInfo, Error> {
        let _guard = self.shared.deploy_lock.lock().await;
        let table = self.shared.table.load_full();
        let service = Self::service(&table, namespace, name)?;
        let mut function = service.state.function.clone();
        function.spec.traffic = traffic;
        function.validate()?;
        let mut state = State { function, ..service.state.clone() };
        if !follows_latest(&state.function)
            && let Some(r) = state.rollout.take()
        {
            let reason = "spec.traffic no longer gives the latest revision a share".to_string();
            tracing::info!(function = %service.state.function.key(), %reason, "rollout cancelled");
            state.outcome = Some(outcome(&r, "Cancelled", reason));
        }
        let service = self.commit(&table, state).await?;
        tracing::info!(function = %service.state.function.key(), traffic = ?service.state.function.spec.traffic, "traffic changed");
        Ok(self.info(&service))
    }

    /// Rolls a function back: stops a rollout in progress, or points `latestRevision` at the revision before
    /// the ready one (or at `to`). The revision taken out of service is marked failed with the reason.
    pub async fn rollback(&self, namespace: &str, name: &str, to: Option<&str>) -> Result<FunctionInfo, Error> {
        let _guard = self.shared.deploy_lock.lock().await;
        let table = self.shared.table.load_full();
        let service = Self::service(&table, namespace, name)?;
        let key = service.state.function.key();
        let mut state = service.state.clone();
        let aborted = state.rollout.take();
        if let Some(r) = &aborted {
            let (from, new) = (state.name_of(r.from), state.name_of(r.to));
            if to == Some(new.as_str()) {
                // Asked for the revision being rolled out: finish the rollout now.
                tracing::info!(function = %key, %from, to = %new, "rollout promoted on request");
                state.ready = r.to;
                state.outcome = Some(outcome(r, "Succeeded", format!("{new} promoted on request")));
                self.count_rollout(&state.function, "succeeded");
                let service = self.commit(&table, state).await?;
                return Ok(self.info(&service));
            }
            let reason = format!("rolled back on request during the rollout to {new}");
            tracing::warn!(function = %key, from = %new, to = %from, %reason, "rolled back");
            state.failed.insert(r.to, reason.clone());
            state.outcome = Some(outcome(r, "RolledBack", reason));
            self.count_rollout(&state.function, "rolled-back");
        }
        if aborted.is_none() || to.is_some_and(|t| t != state.name_of(state.ready)) {
            if !follows_latest(&state.function) {
                return Err(Error::Conflict(format!(
                    "{key}'s traffic names its revisions explicitly, so there is no latest revision to roll back; set the split with `wasmfn traffic`"
                )));
            }
            let target = match to {
                Some(t) => {
                    state.function.revision_generation(t).filter(|g| state.revision(*g).is_some()).ok_or_else(|| {
                        let have: Vec<&str> = state.revisions.iter().map(|r| r.name.as_str()).collect();
                        Error::Conflict(format!("revision `{t}` does not exist; {name} has {}", have.join(", ")))
                    })?
                }
                None => state
                    .revisions
                    .iter()
                    .rev()
                    .map(|r| r.generation)
                    .find(|g| *g < state.ready && !state.failed.contains_key(g))
                    .ok_or_else(|| Error::Conflict(format!("{key} has no earlier revision to roll back to")))?,
            };
            if target == state.ready {
                return Err(Error::Conflict(format!("{} already gets the latest traffic", state.name_of(target))));
            }
            let reason = format!("rolled back on request to {}", state.name_of(target));
            tracing::warn!(function = %key, from = %state.name_of(state.ready), to = %state.name_of(target), "rolled back");
            if target < state.ready {
                state.failed.insert(state.ready, reason);
            }
            state.failed.remove(&target);
            state.ready = target;
        }
        let service = self.commit(&table, state).await?;
        Ok(self.info(&service))
    }

    fn count_rollout(&self, f: &Function, outcome: &'static str) {
        let labels =
            RolloutLabels { namespace: f.metadata.namespace.clone(), function: f.metadata.name.clone(), outcome };
        self.shared.metrics.rollouts.get_or_create(&labels).inc();
    }

    /// Advances rollouts until the node stops: a step when its time comes (checked every 100 ms), the end at
    /// `duration`, a rollback as soon as a 5xx takes the new revision's error rate past the threshold.
    pub(crate) async fn drive_rollouts(self) {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = self.shared.errors_seen.notified() => {}
            }
            let table = self.shared.table.load_full();
            for service in table.functions.values() {
                let Some(r) = &service.state.rollout else { continue };
                if next(&service.state, r, SystemTime::now()).is_some()
                    && let Err(e) = self.advance(&service.state.function.key(), r).await
                {
                    tracing::error!(error = %e, "cannot advance a rollout");
                }
            }
        }
    }

    async fn advance(&self, key: &str, seen: &RolloutState) -> Result<(), Error> {
        let _guard = self.shared.deploy_lock.lock().await;
        let table = self.shared.table.load_full();
        let Some(service) = table.functions.get(key) else { return Ok(()) };
        let mut state = service.state.clone();
        // A deploy or a rollback may have changed it since it was read.
        let Some(r) = state.rollout.clone().filter(|r| r.from == seen.from && r.to == seen.to) else { return Ok(()) };
        let Some(next) = next(&state, &r, SystemTime::now()) else { return Ok(()) };
        let (from, to) = (state.name_of(r.from), state.name_of(r.to));
        match next {
            Next::Step(step) => {
                let steps = state.function.spec.rollout.as_ref().map_or(1, |s| s.steps);
                tracing::info!(function = %key, %from, %to, step, steps, percent = rollout_share(100, step, steps), "rollout step");
                state.rollout = Some(RolloutState { step, ..r });
            }
            Next::Complete => {
                tracing::info!(function = %key, %from, %to, "rollout succeeded");
                state.ready = r.to;
                state.rollout = None;
                state.outcome = Some(outcome(&r, "Succeeded", format!("{to} serves all of the latest traffic")));
                self.count_rollout(&state.function, "succeeded");
            }
            Next::RollBack(reason) => {
                tracing::warn!(function = %key, %from, %to, %reason, "rollout rolled back automatically");
                state.failed.insert(r.to, reason.clone());
                state.rollout = None;
                state.outcome = Some(outcome(&r, "RolledBack", reason));
                self.count_rollout(&state.function, "rolled-back");
            }
            Next::Cancel(reason) => {
                tracing::warn!(function = %key, %from, %to, %reason, "rollout cancelled");
                state.rollout = None;
                state.outcome = Some(outcome(&r, "Cancelled", reason));
            }
        }
        self.commit(&table, state).await.map(drop)
    }
}

/// The per-revision counters file.
#[derive(Serialize, Deserialize, Default)]
struct SavedRevisions {
    revisions: Vec<SavedRevision>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SavedRevision {
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

impl Node {
    fn counters_path(&self) -> std::path::PathBuf {
        self.shared.config.data_dir.join("revision-counters.json")
    }

    /// Adds the saved counters to the restored revisions.
    pub(crate) fn restore_counters(&self, table: &Table) {
        let path = self.counters_path();
        let saved: SavedRevisions = match std::fs::read(&path) {
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
            if let Some(r) = table.functions.get(&s.function).and_then(|f| f.state.revision(s.generation))
                && unix_secs(r.created) == s.created
            {
                r.counters.restore(&s.counters);
            }
        }
    }

    /// Writes every revision's counters. Returns the total of requests written.
    pub(crate) async fn save_counters(&self) -> u64 {
        let table = self.shared.table.load_full();
        let seq = self.shared.counter_snapshots.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let revisions: Vec<SavedRevision> = (table.functions.iter())
            .flat_map(|(key, s)| {
                s.state.revisions.iter().map(move |r| SavedRevision {
                    function: key.clone(),
                    generation: r.generation,
                    created: unix_secs(r.created),
                    counters: r.counters.save(),
                })
            })
            .collect();
        let total = revisions.iter().map(|r| r.counters.requests).sum();
        let path = self.counters_path();
        let json = match serde_json::to_vec(&SavedRevisions { revisions }) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode revision counters");
                return total;
            }
        };
        let node = self.clone();
        let write = move || {
            // Writers race (the periodic save, a remove, the shutdown); the newest snapshot must win.
            let mut written = node.shared.counters_written.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Saves the counters every few seconds when they changed; the node saves them again when it stops, so
    /// only a crash loses the last few seconds.
    pub(crate) async fn save_counters_periodically(self) {
        let mut interval = tokio::time::interval(Duration::from_secs(5));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut saved = u64::MAX;
        loop {
            interval.tick().await;
            let total: u64 = (self.shared.table.load().functions.values())
                .flat_map(|s| s.state.revisions.iter().map(|r| r.counters.requests()))
                .sum();
            if total != saved {
                saved = self.save_counters().await;
            }
        }
    }
}
