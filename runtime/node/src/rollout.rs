//! Gradual rollouts as a state machine on a function's [`State`]: a new revision takes the latest traffic
//! step by step (`spec.rollout`), is rolled back as soon as its 5xx rate passes `maxErrorRate` over at least
//! `minRequests` answers, and succeeds at `duration`. Every transition is a function of the state, the clock
//! passed in and the new revision's counters: no node, no task, no I/O; callers log and count what they
//! return. The driver task that applies them on a timer lives with the function table (`table/driver.rs`);
//! `deploy`, traffic changes and rollbacks call the transitions below.

use crate::error::Error;
use crate::state::{Ended, Outcome, Progress, State};
use std::time::SystemTime;
use wasmfn_api::Function;

/// The new revision's share of `percent` after `step` of `steps`.
pub(crate) fn share(percent: u32, step: u32, steps: u32) -> u32 {
    (percent as u64 * step.min(steps) as u64 / steps.max(1) as u64) as u32
}

/// Whether the function's traffic has a share that follows the latest revision.
pub(crate) fn follows_latest(f: &Function) -> bool {
    f.spec.traffic.is_empty() || f.spec.traffic.iter().any(|t| t.is_latest() && t.percent > 0)
}

/// What is due next for a rollout in progress.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Next {
    /// Move to this step.
    Step(u32),
    /// The new revision takes all of the latest traffic.
    Complete,
    /// The new revision fails: take it out of service.
    RollBack(String),
    /// The rollout cannot go on (its revision is gone).
    Cancel(String),
}

impl State {
    fn steps(&self) -> u32 {
        self.function.spec.rollout.as_ref().map_or(1, |r| r.steps)
    }

    /// The share of the latest traffic the rollout's new revision gets now.
    pub(crate) fn rollout_percent(&self, p: &Progress) -> u32 {
        share(100, p.step, self.steps())
    }

    /// Revision `generation` was just created as the latest. A rollout in progress is cancelled (it targets an
    /// older revision). With `spec.rollout`, a share following the latest revision and a ready revision to
    /// move from, a rollout to it starts (returns `true`); otherwise it is ready at once.
    pub(crate) fn new_latest(&mut self, generation: u64, now: SystemTime) -> bool {
        self.latest = generation;
        if let Some(old) = self.rollout.take() {
            let reason = format!("{} was deployed during the rollout", self.name_of(generation));
            self.outcome = Some(Outcome::of(&old, Ended::Cancelled, reason, now));
        }
        let ready = self.revision(self.ready).is_some();
        if self.function.spec.rollout.is_some() && follows_latest(&self.function) && ready {
            self.rollout = Some(Progress { from: self.ready, to: generation, step: 1, started: now });
            true
        } else {
            self.ready = generation;
            false
        }
    }

    /// What is due for the rollout in progress at `now`, judged on the new revision's counters.
    pub(crate) fn next_step(&self, now: SystemTime) -> Option<Next> {
        let r = self.rollout.as_ref()?;
        let Some(spec) = &self.function.spec.rollout else {
            return Some(Next::Complete);
        };
        let Some(to) = self.revision(r.to) else {
            return Some(Next::Cancel(format!("{} no longer exists", self.name_of(r.to))));
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

    /// Applies a decision of [`State::next_step`]; returns how the rollout ended, if it did.
    pub(crate) fn apply(&mut self, next: Next, now: SystemTime) -> Option<Ended> {
        let r = self.rollout.take()?;
        let to = self.name_of(r.to);
        let (ended, reason) = match next {
            Next::Step(step) => {
                self.rollout = Some(Progress { step, ..r });
                return None;
            }
            Next::Complete => {
                self.ready = r.to;
                (Ended::Succeeded, format!("{to} serves all of the latest traffic"))
            }
            Next::RollBack(reason) => {
                self.failed.insert(r.to, reason.clone());
                (Ended::RolledBack, reason)
            }
            Next::Cancel(reason) => (Ended::Cancelled, reason),
        };
        self.outcome = Some(Outcome::of(&r, ended, reason, now));
        Some(ended)
    }

    /// `spec.traffic` changed: a rollout ends when the latest revision no longer gets a share. Returns the
    /// reason when it did.
    pub(crate) fn traffic_changed(&mut self, now: SystemTime) -> Option<String> {
        if follows_latest(&self.function) {
            return None;
        }
        let r = self.rollout.take()?;
        let reason = "spec.traffic no longer gives the latest revision a share".to_string();
        self.outcome = Some(Outcome::of(&r, Ended::Cancelled, reason.clone(), now));
        Some(reason)
    }

    /// A rollback on request: stops a rollout in progress (promoting its revision when `to` names it), or
    /// points `latestRevision` at the revision before the ready one (or at `to`). The revision taken out of
    /// service is marked failed with the reason. Returns how a rollout in progress ended, if there was one.
    pub(crate) fn roll_back(&mut self, to: Option<&str>, now: SystemTime) -> Result<Option<Ended>, Error> {
        let key = self.function.key();
        let aborted = self.rollout.take();
        let mut ended = None;
        if let Some(r) = &aborted {
            let new = self.name_of(r.to);
            if to == Some(new.as_str()) {
                // Asked for the revision being rolled out: finish the rollout now.
                self.ready = r.to;
                self.outcome = Some(Outcome::of(r, Ended::Succeeded, format!("{new} promoted on request"), now));
                return Ok(Some(Ended::Succeeded));
            }
            let reason = format!("rolled back on request during the rollout to {new}");
            self.failed.insert(r.to, reason.clone());
            self.outcome = Some(Outcome::of(r, Ended::RolledBack, reason, now));
            ended = Some(Ended::RolledBack);
        }
        if aborted.is_some() && to.is_none_or(|t| t == self.name_of(self.ready)) {
            return Ok(ended);
        }
        if !follows_latest(&self.function) {
            return Err(Error::Conflict(format!(
                "{key}'s traffic names its revisions explicitly, so there is no latest revision to roll back; set the split with `wasmfn traffic`"
            )));
        }
        let target = match to {
            Some(t) => self
                .function
                .revision_generation(t)
                .filter(|g| self.revision(*g).is_some())
                .ok_or_else(|| self.unknown_revision(None, t))?,
            None => self
                .revisions
                .iter()
                .rev()
                .map(|r| r.generation)
                .find(|g| *g < self.ready && !self.failed.contains_key(g))
                .ok_or_else(|| Error::Conflict(format!("{key} has no earlier revision to roll back to")))?,
        };
        if target == self.ready {
            return Err(Error::Conflict(format!("{} already gets the latest traffic", self.name_of(target))));
        }
        let reason = format!("rolled back on request to {}", self.name_of(target));
        if target < self.ready {
            self.failed.insert(self.ready, reason);
        }
        self.failed.remove(&target);
        self.ready = target;
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revision::{Common, Revision};
    use std::sync::Arc;
    use std::time::Duration;
    use wasmfn_api::{Rollout, TrafficTarget};

    /// `hello` with revisions 1..=n, the newest ready, rolled out over 60 s in 4 steps.
    fn state(n: u64) -> State {
        let mut f = Function::new("default", "hello", &format!("sha256:{}", "a".repeat(64)));
        f.spec.rollout = Some(Rollout { steps: 4, min_requests: 10, ..Rollout::over(Duration::from_secs(60)) });
        let common = Common::new(&f.key(), &crate::metrics::Metrics::new(), &Default::default());
        let mut st = State::new(f.clone());
        for g in 1..=n {
            let digest = crate::blobs::Digest::of(&g.to_le_bytes());
            st.revisions.push(Arc::new(Revision::new(f.clone(), digest, g, SystemTime::now(), &common)));
        }
        (st.latest, st.ready) = (n, n);
        st
    }

    fn answer(st: &State, generation: u64, ok: u64, failed: u64) {
        let r = st.revision(generation).unwrap();
        (0..ok).for_each(|_| r.counters.record(200, Duration::from_millis(1)));
        (0..failed).for_each(|_| r.counters.record(500, Duration::from_millis(1)));
    }

    #[test]
    fn a_rollout_steps_then_succeeds_once_it_has_a_verdict() {
        let t0 = SystemTime::now();
        let mut two = state(2);
        two.ready = 1;
        assert!(two.new_latest(2, t0), "a rollout starts from the ready revision");
        assert_eq!(two.ready, 1);
        let p = two.rollout.clone().unwrap();
        assert_eq!((p.from, p.to, p.step, two.rollout_percent(&p)), (1, 2, 1, 25));
        assert_eq!(two.next_step(t0 + Duration::from_secs(1)), None);
        assert_eq!(two.next_step(t0 + Duration::from_secs(31)), Some(Next::Step(3)));
        assert_eq!(two.apply(Next::Step(3), t0), None);
        assert_eq!(two.rollout.as_ref().unwrap().step, 3);
        // At the end, too few answers: the new revision takes the whole share until it has them.
        let end = t0 + Duration::from_secs(61);
        assert_eq!(two.next_step(end), Some(Next::Step(4)));
        two.apply(Next::Step(4), end);
        assert_eq!(two.next_step(end), None);
        answer(&two, 2, 10, 0);
        assert_eq!(two.next_step(end), Some(Next::Complete));
        assert_eq!(two.apply(Next::Complete, end), Some(Ended::Succeeded));
        assert_eq!((two.ready, two.rollout.is_none()), (2, true));
        assert_eq!(two.outcome.as_ref().unwrap().state, Ended::Succeeded);
    }

    #[test]
    fn errors_roll_back_and_the_revision_leaves_service() {
        let t0 = SystemTime::now();
        let mut st = state(2);
        st.ready = 1;
        st.new_latest(2, t0);
        answer(&st, 2, 9, 0);
        answer(&st, 2, 0, 1);
        // 1 of 10 is above the default maxErrorRate.
        let Some(Next::RollBack(reason)) = st.next_step(t0) else { panic!("{:?}", st.next_step(t0)) };
        assert!(reason.contains("hello-2") && reason.contains("1 of its 10"), "{reason}");
        assert_eq!(st.apply(Next::RollBack(reason), t0), Some(Ended::RolledBack));
        assert_eq!(st.ready, 1);
        assert!(st.failed.contains_key(&2));
    }

    #[test]
    fn a_deploy_or_a_traffic_change_cancels_a_rollout() {
        let t0 = SystemTime::now();
        let mut st = state(3);
        st.ready = 1;
        st.new_latest(2, t0);
        st.new_latest(3, t0);
        let o = st.outcome.clone().unwrap();
        assert_eq!((o.state, o.to), (Ended::Cancelled, 2));
        assert!(o.reason.contains("hello-3 was deployed"), "{}", o.reason);
        assert_eq!(st.rollout.as_ref().map(|r| (r.from, r.to)), Some((1, 3)));
        st.function.spec.traffic = vec![TrafficTarget::revision("hello-1", 100)];
        assert!(st.traffic_changed(t0).is_some());
        assert!(st.rollout.is_none());
        // Without spec.rollout a new revision is ready at once.
        let mut plain = state(1);
        plain.function.spec.rollout = None;
        assert!(!plain.new_latest(2, t0));
        assert_eq!(plain.ready, 2);
    }

    #[test]
    fn rollbacks_on_request() {
        let t0 = SystemTime::now();
        let mut st = state(3);
        st.function.spec.rollout = None;
        assert_eq!(st.roll_back(None, t0).unwrap(), None);
        assert_eq!(st.ready, 2);
        assert!(st.failed.contains_key(&3));
        // Forward again by name; an unknown name is the same error as in a manifest.
        st.roll_back(Some("hello-3"), t0).unwrap();
        assert_eq!(st.ready, 3);
        let e = st.roll_back(Some("hello-9"), t0).unwrap_err();
        assert_eq!(e.kind(), "unknown-revision");
        assert!(matches!(st.roll_back(Some("hello-3"), t0), Err(Error::Conflict(_))));
        // During a rollout: naming its revision promotes it; anything else aborts it.
        let mut r = state(2);
        r.ready = 1;
        r.new_latest(2, t0);
        assert_eq!(r.clone().roll_back(Some("hello-2"), t0).unwrap(), Some(Ended::Succeeded));
        assert_eq!(r.roll_back(None, t0).unwrap(), Some(Ended::RolledBack));
        assert_eq!((r.ready, r.rollout.is_none(), r.failed.contains_key(&2)), (1, true, true));
    }
}
