//! Traffic changes and rollbacks: the node's operations on a function's revisions that make no new revision.
//! The rollout transitions they cause are the state machine's (`rollout.rs`).

use crate::error::Error;
use crate::node::Node;
use crate::service::Service;
use crate::state::{Ended, State};
use crate::table::Table;
use crate::views::{self, FunctionInfo, RevisionInfo};
use std::sync::Arc;
use std::time::SystemTime;
use wasmfn_api::{FunctionKey, TrafficTarget};

fn service(table: &Table, namespace: &str, name: &str) -> Result<Arc<Service>, Error> {
    let key = FunctionKey::new(namespace, name);
    table.get(&key).cloned().ok_or_else(|| Error::NotFound(key.to_string()))
}

impl Node {
    /// A function's retained revisions, newest first, with their share, counters and latency.
    pub fn revisions(&self, namespace: &str, name: &str) -> Result<Vec<RevisionInfo>, Error> {
        Ok(views::revisions(&*service(&self.inner.table.load(), namespace, name)?))
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
        let table = &self.inner.table;
        let lock = table.lock().await;
        let current = service(lock.table(), namespace, name)?;
        let mut function = current.state.function.clone();
        function.spec.traffic = traffic;
        function.validate()?;
        let key = function.key();
        let mut state = State { function, ..current.state.clone() };
        if let Some(reason) = state.traffic_changed(SystemTime::now()) {
            tracing::info!(function = %key, %reason, "rollout cancelled");
        }
        let service = table.commit(&lock, state).await?;
        tracing::info!(function = %key, traffic = ?service.state.function.spec.traffic, "traffic changed");
        Ok(self.info(&service))
    }

    /// Rolls a function back: stops a rollout in progress, or points `latestRevision` at the revision before
    /// the ready one (or at `to`). The revision taken out of service is marked failed with the reason.
    pub async fn rollback(&self, namespace: &str, name: &str, to: Option<&str>) -> Result<FunctionInfo, Error> {
        let table = &self.inner.table;
        let lock = table.lock().await;
        let mut state = service(lock.table(), namespace, name)?.state.clone();
        let (key, ready, rollout) = (state.function.key(), state.ready, state.rollout.clone());
        let ended = state.roll_back(to, SystemTime::now())?;
        match (&rollout, ended) {
            (Some(r), Some(Ended::Succeeded)) => {
                tracing::info!(function = %key, from = %state.name_of(r.from), to = %state.name_of(r.to), "rollout promoted on request")
            }
            (Some(r), _) => {
                tracing::warn!(function = %key, from = %state.name_of(r.to), to = %state.name_of(state.ready), "rolled back during the rollout")
            }
            (None, _) => {
                tracing::warn!(function = %key, from = %state.name_of(ready), to = %state.name_of(state.ready), "rolled back")
            }
        }
        if let Some(ended) = ended {
            table.count_rollout(&state.function, ended);
        }
        let service = table.commit(&lock, state).await?;
        Ok(self.info(&service))
    }
}
