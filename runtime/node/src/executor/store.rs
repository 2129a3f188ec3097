//! One request's store, built in one place (as wasmtime's `serve` does in `new_store`): the WASI context (the
//! revision's environment, stdout and stderr into the function's rate-limited log), the `wasi:http` context
//! with the node's egress policy, the memory cap, and the epoch deadline that stops the guest at its timeout.

use crate::budget::Reservation;
use crate::egress::{Egress, EgressPolicy};
use crate::engine::deadline_ticks;
use crate::host::{Host, MemoryCap};
use crate::revision::Revision;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

/// Per-request settings that come from the node rather than the revision.
#[derive(Clone)]
pub(crate) struct NodePolicy {
    /// Where guests' outgoing HTTP may go.
    pub(crate) egress: EgressPolicy,
    /// The node's cap on any function's `maxRequestBody` (also for functions restored from before it).
    pub(crate) max_request_body: u64,
}

/// The store of one request to `revision`, stopped `timeout` from now.
pub(super) fn new_store(
    engine: &Engine,
    revision: &Revision,
    request_id: &Arc<str>,
    timeout: Duration,
    policy: &NodePolicy,
    memory: Reservation,
) -> Store<Host> {
    let stdout = revision.stats.log.stream(request_id.clone(), revision.log_name.clone(), "stdout");
    let stderr = revision.stats.log.stream(request_id.clone(), revision.log_name.clone(), "stderr");
    let mut wasi = WasiCtxBuilder::new();
    wasi.envs(&revision.env).stdout(stdout.clone()).stderr(stderr.clone());
    let host = Host {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        table: wasmtime::component::ResourceTable::new(),
        memory: MemoryCap::new(revision.function.spec.limits.memory.bytes() as usize, memory),
        egress: Egress {
            policy: policy.egress.clone(),
            grants: revision.egress.clone(),
            namespace: revision.function.metadata.namespace.as_str().into(),
            traceparent: None,
            hops: 0,
        },
        output: [stdout, stderr],
    };
    let mut store = Store::new(engine, host);
    store.limiter(|h| &mut h.memory);
    store.set_epoch_deadline(deadline_ticks(timeout));
    store.epoch_deadline_trap();
    store
}

/// Readies a reused instance's store for its next request: a fresh deadline, output tagged with the request.
pub(super) fn restart_store(store: &mut Store<Host>, request_id: &Arc<str>, timeout: Duration) {
    for output in &store.data().output {
        output.restart(request_id.clone());
    }
    store.set_epoch_deadline(deadline_ticks(timeout));
}
