//! The executor: runs one request on one revision. The HTTP ingress and event delivery both call
//! [`Executor::run`], which reads top to bottom:
//! 1. bound the body (`maxRequestBody`; a body without a length is read before taking a slot);
//! 2. admit (`admission.rs`: function and node slots, the queue, the 503s);
//! 3. get the revision's code (a cold start loads it from the code store);
//! 4. build the request's store (`store.rs`), instantiate, call `wasi:http/incoming-handler`;
//! 5. classify how the guest failed into a status (504 past its timeout, 500 otherwise), count, and tag the
//!    response with the revision and request id.

mod body;
mod failure;
mod store;
mod trace;

pub(crate) use body::{RequestBody, ResponseBody, full, json_error};
pub(crate) use store::NodePolicy;

use crate::admission::{Admission, Admitted};
use crate::code::{CodeStore, Loaded};
use crate::instances::{IdleBudget, Warm};
use crate::revision::Revision;
use crate::table::Alarm;
use body::{GuestBody, GuestRequestBody, bounded_body};
use failure::{classify, discard_reason, guest_failure};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use trace::{new_traceparent, valid_traceparent};
use wasmtime::Trap;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

const REVISION_HEADER: &str = "x-wasmfn-revision";

/// Runs requests on revisions; see the module doc.
pub(crate) struct Executor {
    code: Arc<CodeStore>,
    admission: Admission,
    policy: NodePolicy,
    alarm: Arc<Alarm>,
    /// The node-wide cap on idle reusable instances.
    idle: Arc<IdleBudget>,
}

/// Marks a response the node gave before the revision ran (admission, body limits): counted in the metrics,
/// never in the revision's rollout health.
#[derive(Clone, Copy)]
struct NotTheRevision;

impl Executor {
    pub(crate) fn new(
        code: Arc<CodeStore>,
        admission: Admission,
        policy: NodePolicy,
        alarm: Arc<Alarm>,
        idle: Arc<IdleBudget>,
    ) -> Self {
        Executor { code, admission, policy, alarm, idle }
    }

    /// The node's memory budget.
    pub(crate) fn budget(&self) -> &crate::budget::MemoryBudget {
        self.admission.budget()
    }

    /// Runs one request on a revision (routed, or an event delivered in-process) and counts it. `timeout`
    /// shortens the function's own (an event delivery's per-attempt timeout): the guest is stopped at it.
    pub(crate) async fn run(
        &self,
        revision: &Arc<Revision>,
        req: Request<RequestBody>,
        strip: usize,
        timeout: Option<Duration>,
    ) -> Response<ResponseBody> {
        let started = Instant::now();
        let id = request_id(&req);
        let limit = revision.function.spec.limits.timeout;
        let timeout = timeout.map_or(limit, |t| t.min(limit));
        let mut resp = self.serve(revision, req, strip, id.clone(), timeout).await;
        let status = resp.status().as_u16();
        revision.stats.count(status);
        let elapsed = started.elapsed();
        revision.stats.latency.observe(elapsed.as_secs_f64());
        revision.stats.activity().record(status, elapsed);
        // Rollouts judge the revision, not the crowd: a request turned away before the revision ran (admission
        // 503s under a flood, unreadable bodies) says nothing about it and is not in its counters.
        if resp.extensions_mut().remove::<NotTheRevision>().is_none() {
            revision.counters.record(status, elapsed);
            if resp.status().is_server_error() {
                self.alarm.server_error();
            }
        }
        revision.touch();
        let headers = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&revision.name) {
            headers.insert(REVISION_HEADER, v);
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            headers.insert("x-request-id", v);
        }
        resp
    }

    async fn serve(
        &self,
        revision: &Arc<Revision>,
        req: Request<RequestBody>,
        strip: usize,
        id: Arc<str>,
        timeout: Duration,
    ) -> Response<ResponseBody> {
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut parts, body) = req.into_parts();
        // A body read before admission holds its bytes of the memory budget until the request ends.
        let mut memory = self.admission.reservation(&revision.gate);
        let max = self.policy.max_request_body;
        let body = match bounded_body(&parts.headers, body, revision, max, deadline, &mut memory).await {
            Ok(b) => b,
            Err(mut resp) => {
                resp.extensions_mut().insert(NotTheRevision);
                return resp;
            }
        };
        let admitted = match self.admission.admit(&revision.gate, memory).await {
            Ok(a) => a,
            Err(reason) => {
                let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, reason.message(), serde_json::json!({}));
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                resp.extensions_mut().insert(NotTheRevision);
                return resp;
            }
        };
        if strip > 0 {
            parts.uri = strip_prefix(&parts.uri, strip);
        }
        // The guest sees the id the client gets back, so it can put it in its own error bodies and logs.
        if let Ok(v) = HeaderValue::from_str(&id) {
            parts.headers.insert("x-request-id", v);
        }
        // W3C trace context: a request without a valid one starts a trace the guest and its calls continue.
        if !parts.headers.get("traceparent").and_then(|v| v.to_str().ok()).is_some_and(valid_traceparent) {
            parts.headers.insert("traceparent", new_traceparent());
        }
        if !parts.headers.contains_key(header::HOST) {
            let authority = parts.uri.authority().map(|a| a.to_string()).unwrap_or_else(|| "localhost".into());
            if let Ok(v) = HeaderValue::from_str(&authority) {
                parts.headers.insert(header::HOST, v);
            }
        }
        let req = Request::from_parts(parts, body);
        let code = self.code.clone();
        let (loaded, cold) = match revision.code(|| code.load(revision.digest, None)).await {
            Ok(x) => x,
            Err(e) => {
                let message = format!("cannot load the function's code: {e}");
                tracing::error!(revision = %revision.name, error = %message, "cold start failed");
                revision.stats.set_error(message.clone());
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, &message, serde_json::json!({}));
            }
        };
        revision.stats.count_start(cold);
        self.invoke(revision, loaded, req, id, timeout, deadline, admitted).await
    }

    /// Instantiates the revision's code in a new store and calls the guest's handler; the response head comes
    /// back as soon as the guest sets it, the body streams after.
    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        revision: &Arc<Revision>,
        loaded: Arc<Loaded>,
        req: Request<GuestRequestBody>,
        id: Arc<str>,
        timeout: Duration,
        deadline: tokio::time::Instant,
        mut admitted: Admitted,
    ) -> Response<ResponseBody> {
        // A reusable revision's most recently used idle instance (holding its own memory), else a fresh store
        // to instantiate in, given the request's reservation to grow.
        let (mut store, warm) = match self.take_idle(revision) {
            Some(mut w) => {
                store::restart_store(&mut w.store, &id, timeout);
                revision.stats.reused.inc();
                (w.store, Some((w.proxy, w.served)))
            }
            None => {
                let memory = admitted.memory.take().unwrap_or_else(|| self.admission.reservation(&revision.gate));
                (store::new_store(self.code.engine(), revision, &id, timeout, &self.policy, memory), None)
            }
        };
        store.data_mut().egress.serving(req.headers());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let prepared = (|| -> wasmtime::Result<_> {
            let req = store.data_mut().http().new_incoming_request(Scheme::Http, req)?;
            let out = store.data_mut().http().new_response_outparam(sender)?;
            Ok((req, out))
        })();
        let (wasi_req, out) = match prepared {
            Ok(x) => x,
            Err(e) => {
                return json_error(StatusCode::BAD_REQUEST, &format!("invalid request: {e:#}"), serde_json::json!({}));
            }
        };

        let failure: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let task = tokio::task::spawn({
            let failure = failure.clone();
            let revision = revision.clone();
            let idle = self.idle.clone();
            async move {
                let run = async {
                    let (proxy, served) = match warm {
                        Some(w) => w,
                        None => {
                            let t = Instant::now();
                            let proxy = loaded.pre.instantiate_async(&mut store).await?;
                            revision.stats.instantiation.observe(t.elapsed().as_secs_f64());
                            (proxy, 0)
                        }
                    };
                    let reps = (wasi_req.rep(), out.rep());
                    proxy.wasi_http_incoming_handler().call_handle(&mut store, wasi_req, out).await?;
                    Ok((proxy, served, reps))
                };
                // Epoch interruption stops guest code; this also bounds time spent blocked in host calls.
                let result = match tokio::time::timeout_at(deadline, run).await {
                    Ok(result) => result,
                    Err(_) => Err(Trap::Interrupt.into()),
                };
                // The store is dropped (or parked, holding its own idle slot) before the slots are released, so
                // a woken waiter finds a free pooled instance.
                let result = match result {
                    Ok((proxy, served, (req_rep, out_rep))) => {
                        let memory = &mut store.data_mut().memory;
                        revision.gate.note_memory(memory.used as u64);
                        // An idle instance keeps only the budget its memory takes, not the request's body.
                        memory.reservation.shrink_to(memory.used as u64);
                        // An outparam the guest never set would keep the client waiting in a reused store:
                        // removing it drops its sender, which answers 500, and the instance is not kept. A
                        // request the guest still holds (StarlingMonkey, Python's GC) stays, since the guest may
                        // drop its handle later, but its unread body goes: it would hold the client's connection.
                        let table = &mut store.data_mut().table;
                        let unanswered = remove_if_present::<HostResponseOutparam>(table, out_rep);
                        if let Ok(request) = table.get_mut(&Resource::<HostIncomingRequest>::new_own(req_rep)) {
                            drop(request.body.take());
                        }
                        match &revision.instances {
                            Some(pool) if unanswered => {
                                drop(store);
                                revision.stats.discarded("no-response");
                                if served > 0 && pool.disable() {
                                    // The client's 500 and the function's last error say why.
                                    let message = "the guest returned without setting a response on a reused \
                                        instance; instance reuse is off for this revision (StarlingMonkey, the \
                                        engine of componentize-js, cannot serve two requests with one instance)";
                                    tracing::warn!(revision = %revision.name, "{message}");
                                    Err(wasmtime::format_err!("{message}"))
                                } else {
                                    Ok(())
                                }
                            }
                            Some(pool) if pool.enabled() => {
                                if let Err((warm, reason)) = pool.put(Warm { store, proxy, served }, &idle) {
                                    drop(warm);
                                    revision.stats.discarded(reason);
                                }
                                Ok(())
                            }
                            _ => {
                                drop(store);
                                Ok(())
                            }
                        }
                    }
                    Err(e) => {
                        // Read by the response body if it was cut short, so the client sees an error, not a
                        // short 200. Whoever sets it first (this task or the timeout below) counts a discard.
                        if failure.set(classify(&e, timeout).1).is_ok() && revision.instances.is_some() {
                            revision.stats.discarded(discard_reason(&e));
                        }
                        drop(store);
                        Err(e)
                    }
                };
                drop(admitted);
                result
            }
        });

        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(Ok(resp))) => resp.map(|body| {
                GuestBody { inner: body, failure, revision: revision.clone(), request_id: id.clone() }.boxed_unsync()
            }),
            Ok(Ok(Err(code))) => {
                let message = format!("the guest answered with an error: {code:?}");
                revision.stats.set_error(message.clone());
                json_error(StatusCode::INTERNAL_SERVER_ERROR, &message, serde_json::json!({}))
            }
            Ok(Err(_)) => {
                // The guest ended without setting a response: find out why.
                let error = match task.await {
                    Ok(Ok(())) => wasmtime::format_err!("the guest returned without setting a response"),
                    Ok(Err(e)) => e,
                    Err(e) => wasmtime::format_err!("the guest task failed: {e}"),
                };
                guest_failure(revision, &id, timeout, error)
            }
            Err(_) => {
                task.abort();
                let error: wasmtime::Error = Trap::Interrupt.into();
                if failure.set(classify(&error, timeout).1).is_ok() && revision.instances.is_some() {
                    revision.stats.discarded("timeout");
                }
                guest_failure(revision, &id, timeout, error)
            }
        }
    }
}

impl Executor {
    /// A reusable revision's idle instance, if one waits; instances found past their idle timeout are dropped.
    fn take_idle(&self, revision: &Revision) -> Option<Warm> {
        let (warm, expired) = revision.instances.as_ref()?.take();
        for _ in &expired {
            revision.stats.discarded("idle");
        }
        drop(expired);
        warm
    }
}

/// Removes the host resource `rep` if it is still a `T`: the guest may have freed it and the slot may hold
/// another resource now (`ResourceTable::delete` frees the slot before it checks the type).
fn remove_if_present<T: 'static>(table: &mut wasmtime::component::ResourceTable, rep: u32) -> bool {
    let resource = Resource::<T>::new_own(rep);
    table.get(&resource).is_ok() && table.delete(resource).is_ok()
}

fn request_id<B>(req: &Request<B>) -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    match req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty() && v.len() <= 128) {
        Some(id) => id.into(),
        None => format!("{:x}-{:x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)).into(),
    }
}

/// Removes the first `strip` bytes of the path (a route prefix), keeping the query.
fn strip_prefix(uri: &http::Uri, strip: usize) -> http::Uri {
    let path = uri.path();
    let rest = path.get(strip..).unwrap_or("");
    let rest = if rest.is_empty() { "/" } else { rest };
    let pq = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    let mut b = http::Uri::builder();
    if let Some(s) = uri.scheme() {
        b = b.scheme(s.clone());
    }
    if let Some(a) = uri.authority() {
        b = b.authority(a.clone());
    }
    b.path_and_query(pq).build().unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_prefix_and_keeps_query() {
        let u: http::Uri = "/default/hello/a/b?x=1".parse().unwrap();
        assert_eq!(strip_prefix(&u, "/default/hello".len()).to_string(), "/a/b?x=1");
        let u: http::Uri = "/default/hello".parse().unwrap();
        assert_eq!(strip_prefix(&u, "/default/hello".len()).to_string(), "/");
    }
}
