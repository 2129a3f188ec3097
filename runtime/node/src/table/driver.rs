//! The rollout driver: a task that applies the rollout state machine's decisions (`rollout.rs`) when they are
//! due, checked every 100 ms and at once when a request fails during a rollout (the table's `Alarm`).

use super::FunctionTable;
use crate::error::Error;
use crate::metrics::RolloutLabels;
use crate::rollout::Next;
use crate::state::{Ended, Progress};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use wasmfn_api::{Function, FunctionKey};

impl FunctionTable {
    /// Advances rollouts until the node stops.
    pub(crate) async fn drive_rollouts(self: Arc<Self>) {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = self.alarm.wait() => {}
            }
            let table = self.snapshot();
            for (key, service) in &table.functions {
                let Some(r) = &service.state.rollout else { continue };
                if service.state.next_step(SystemTime::now()).is_some()
                    && let Err(e) = self.advance(key, r).await
                {
                    tracing::error!(function = %key, error = %e, "cannot advance a rollout");
                }
            }
        }
    }

    async fn advance(&self, key: &FunctionKey, seen: &Progress) -> Result<(), Error> {
        let lock = self.lock().await;
        let Some(service) = lock.table().get(key) else { return Ok(()) };
        let mut state = service.state.clone();
        // A deploy or a rollback may have changed it since it was read.
        let Some(r) = state.rollout.clone().filter(|r| r.from == seen.from && r.to == seen.to) else { return Ok(()) };
        let now = SystemTime::now();
        let Some(next) = state.next_step(now) else { return Ok(()) };
        let (from, to) = (state.name_of(r.from), state.name_of(r.to));
        match &next {
            Next::Step(step) => {
                let p = Progress { step: *step, ..r };
                let steps = state.function.spec.rollout.as_ref().map_or(1, |s| s.steps);
                tracing::info!(function = %key, %from, %to, step, steps, percent = state.rollout_percent(&p), "rollout step");
            }
            Next::Complete => tracing::info!(function = %key, %from, %to, "rollout succeeded"),
            Next::RollBack(reason) => {
                tracing::warn!(function = %key, %from, %to, %reason, "rollout rolled back automatically")
            }
            Next::Cancel(reason) => tracing::warn!(function = %key, %from, %to, %reason, "rollout cancelled"),
        }
        if let Some(ended) = state.apply(next, now) {
            self.count_rollout(&state.function, ended);
        }
        self.commit(&lock, state).await.map(drop)
    }

    /// Counts a rollout that succeeded or was rolled back.
    pub(crate) fn count_rollout(&self, f: &Function, ended: Ended) {
        let outcome = match ended {
            Ended::Succeeded => "succeeded",
            Ended::RolledBack => "rolled-back",
            Ended::Cancelled => return,
        };
        let labels =
            RolloutLabels { namespace: f.metadata.namespace.clone(), function: f.metadata.name.clone(), outcome };
        self.metrics.rollouts.get_or_create(&labels).inc();
    }
}
