//! The function ingress: routes a request to a revision, applies the limits, and runs the guest in a fresh
//! instance.

use crate::function::{Admitted, Rejected, Revision};
use crate::host::{Egress, Host, MemoryCap, MemoryLimitExceeded};
use crate::node::Node;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

/// Boxed error of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every ingress response.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;
/// The body of a request run on a revision: streamed from the ingress, or an event's buffered body. A concrete
/// type (not a boxed body): the request futures must be provably `Send`.
pub(crate) enum RequestBody {
    Incoming(Incoming),
    Buffered(Full<Bytes>),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Incoming(b) => std::pin::Pin::new(b).poll_frame(cx),
            RequestBody::Buffered(b) => {
                std::pin::Pin::new(b).poll_frame(cx).map(|f| f.map(|r| r.map_err(|n| match n {})))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Incoming(b) => b.is_end_stream(),
            RequestBody::Buffered(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            RequestBody::Incoming(b) => b.size_hint(),
            RequestBody::Buffered(b) => b.size_hint(),
        }
    }
}

const REVISION_HEADER: &str = "x-wasmfn-revision";

fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A JSON error response: `{"error": "...", ...}`.
pub(crate) fn json_error(status: StatusCode, message: &str, extra: serde_json::Value) -> Response<ResponseBody> {
    let mut body = serde_json::json!({ "error": message, "status": status.as_u16() });
    if let (Some(obj), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn request_id<B>(req: &Request<B>) -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    match req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty() && v.len() <= 128) {
        Some(id) => id.into(),
        None => format!("{:x}-{:x}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)).into(),
    }
}

/// Handles one ingress request. Never fails: every problem becomes a status code.
pub(crate) async fn handle(node: Node, req: Request<Incoming>) -> Response<ResponseBody> {
    if let Some(namespace) = req.uri().path().strip_prefix(crate::events::BROKER_PREFIX) {
        let namespace = namespace.trim_end_matches('/').to_string();
        return crate::events::ingress(&node, &namespace, req).await;
    }
    let table = node.shared.table.load();
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| req.uri().host());
    let domain = &node.shared.config.domain;
    // A pod-style node hands every path to its function unchanged, as a container would get it.
    let routed = match node.shared.config.default_function.as_deref() {
        Some(key) => table.route_host(host, domain).or_else(|| table.whole(key)),
        None => table.route(host, req.uri().path(), domain),
    };
    let Some(routed) = routed else {
        let path = req.uri().path().to_string();
        return json_error(
            StatusCode::NOT_FOUND,
            "no function serves this host or path",
            serde_json::json!({ "path": path, "host": host }),
        );
    };
    drop(table);
    run(&node, &routed.revision, req.map(RequestBody::Incoming), routed.strip, None).await
}

/// Runs one request on a revision (routed, or an event delivered in-process) and counts it. `timeout`
/// shortens the function's own (an event delivery's per-attempt timeout): the guest is stopped at it.
pub(crate) async fn run(
    node: &Node,
    revision: &Arc<Revision>,
    req: Request<RequestBody>,
    strip: usize,
    timeout: Option<Duration>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let id = request_id(&req);
    let timeout =
        timeout.map_or(revision.function.spec.limits.timeout, |t| t.min(revision.function.spec.limits.timeout));
    let mut resp = serve(node, revision, req, strip, id.clone(), timeout).await;
    let stats = &revision.stats;
    stats.count(resp.status().as_u16());
    let elapsed = started.elapsed();
    stats.latency.observe(elapsed.as_secs_f64());
    revision.counters.record(resp.status().as_u16(), elapsed);
    if resp.status().is_server_error() && node.shared.rolling_out.load(Ordering::Relaxed) {
        node.shared.errors_seen.notify_one();
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
    node: &Node,
    revision: &Arc<Revision>,
    req: Request<RequestBody>,
    strip: usize,
    id: Arc<str>,
    timeout: Duration,
) -> Response<ResponseBody> {
    let limits = &revision.function.spec.limits;
    let max_body = limits.max_request_body.bytes();
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return too_large(max_body);
    }

    let deadline = tokio::time::Instant::now() + timeout;
    let (mut parts, body) = req.into_parts();
    let body = if declared.is_some() {
        // Hyper enforces the declared length; `Limited` is a second guard.
        Limited::new(body, max_body as usize).map_err(wasi_body_error).boxed_unsync()
    } else {
        // No length: buffer up to the limit, before taking a slot, so an oversized body never reaches the guest
        // and a client that stalls mid-body holds no slot; the read is bounded by the request timeout.
        match tokio::time::timeout_at(deadline, Limited::new(body, max_body as usize).collect()).await {
            Ok(Ok(collected)) => Full::new(collected.to_bytes()).map_err(|never| match never {}).boxed_unsync(),
            Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return too_large(max_body),
            Ok(Err(e)) => {
                let msg = format!("cannot read request body: {e}");
                return unread_body(json_error(StatusCode::BAD_REQUEST, &msg, serde_json::json!({})));
            }
            Err(_) => {
                let msg = "the request body did not arrive in time";
                return unread_body(json_error(StatusCode::REQUEST_TIMEOUT, msg, serde_json::json!({})));
            }
        }
    };
    let admitted = match revision.admit(&node.shared.capacity).await {
        Ok(a) => a,
        Err(reason) => {
            let message = match reason {
                Rejected::QueueFull => "the function is at its concurrency limit and its queue is full",
                Rejected::QueueTimeout => "the function is at its concurrency limit; timed out waiting in the queue",
            };
            let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, message, serde_json::json!({}));
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
    if !parts.headers.contains_key(header::HOST) {
        let authority = parts.uri.authority().map(|a| a.to_string()).unwrap_or_else(|| "localhost".into());
        if let Ok(v) = HeaderValue::from_str(&authority) {
            parts.headers.insert(header::HOST, v);
        }
    }
    let req = Request::from_parts(parts, body);

    let (loaded, cold) = match revision.code(|| node.load(revision.digest)).await {
        Ok(x) => x,
        Err(e) => {
            let message = format!("cannot load the function's code: {e}");
            tracing::error!(revision = %revision.name, error = %e, "cold start failed");
            revision.stats.set_error(message.clone());
            return json_error(StatusCode::INTERNAL_SERVER_ERROR, &message, serde_json::json!({}));
        }
    };
    if cold {
        revision.stats.cold.inc();
    } else {
        revision.stats.warm.fetch_add(1, Ordering::Relaxed);
    }

    let mut wasi = WasiCtxBuilder::new();
    wasi.envs(&revision.env)
        .stdout(revision.stats.log.stream(id.clone(), "stdout"))
        .stderr(revision.stats.log.stream(id.clone(), "stderr"));
    let host = Host {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        table: wasmtime::component::ResourceTable::new(),
        memory: MemoryCap { limit: limits.memory.bytes() as usize },
        egress: Egress { allow_loopback: node.shared.config.allow_loopback_egress },
    };
    let mut store = Store::new(&node.shared.engine, host);
    store.limiter(|h| &mut h.memory);
    store.set_epoch_deadline(crate::engine::deadline_ticks(timeout));
    store.epoch_deadline_trap();

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

    let stats = revision.stats.clone();
    let failure: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let task = tokio::task::spawn({
        let failure = failure.clone();
        async move {
            let run = async {
                let t = Instant::now();
                let proxy = loaded.pre.instantiate_async(&mut store).await?;
                stats.instantiation.observe(t.elapsed().as_secs_f64());
                proxy.wasi_http_incoming_handler().call_handle(&mut store, wasi_req, out).await
            };
            // Epoch interruption stops guest code; this also bounds time spent blocked in host calls.
            let result = match tokio::time::timeout_at(deadline, run).await {
                Ok(result) => result,
                Err(_) => Err(Trap::Interrupt.into()),
            };
            if let Err(e) = &result {
                // Read by the response body if it was cut short, so the client sees an error, not a short 200.
                let _ = failure.set(classify(e, timeout).1);
            }
            // The pooled instance goes back before the slots do, so a woken waiter finds a free one.
            drop(store);
            drop::<Admitted>(admitted);
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
            guest_failure(revision, &id, timeout, Trap::Interrupt.into())
        }
    }
}

/// The status and message for a guest that failed: 504 past its timeout, 500 otherwise.
fn classify(error: &wasmtime::Error, timeout: std::time::Duration) -> (StatusCode, String) {
    if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        let t = humantime::format_duration(timeout);
        (StatusCode::GATEWAY_TIMEOUT, format!("the function exceeded its timeout of {t}"))
    } else if let Some(m) = error.downcast_ref::<MemoryLimitExceeded>() {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("the function exceeded its memory limit of {} bytes", m.limit))
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("the function failed: {error:#}"))
    }
}

/// A guest's response body. If the guest fails after sending the head (a timeout or trap while streaming),
/// the body ends with an error, so hyper aborts the stream instead of ending a truncated 200 cleanly.
struct GuestBody {
    inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    failure: Arc<OnceLock<String>>,
    revision: Arc<Revision>,
    request_id: Arc<str>,
}

impl http_body::Body for GuestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => match self.failure.get() {
                Some(message) => {
                    let r = &self.revision;
                    tracing::warn!(function = %r.key(), revision = %r.name, request_id = %self.request_id,
                        "response cut short: {message}");
                    r.stats.set_error(message.clone());
                    Poll::Ready(Some(Err(message.clone().into())))
                }
                None => Poll::Ready(None),
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            other => other.map_err(|e: wasmtime_wasi_http::Error| Box::new(e) as BoxError),
        }
    }

    fn is_end_stream(&self) -> bool {
        // The end can only be confirmed by polling, after the guest task reported how it ended.
        false
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn guest_failure(revision: &Revision, id: &str, timeout: Duration, error: wasmtime::Error) -> Response<ResponseBody> {
    let (status, message) = classify(&error, timeout);
    tracing::warn!(function = %revision.key(), revision = %revision.name, request_id = id, status = status.as_u16(), "{message}");
    revision.stats.set_error(message.clone());
    json_error(status, &message, serde_json::json!({ "requestId": id }))
}

fn too_large(max: u64) -> Response<ResponseBody> {
    unread_body(json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than the function's limit of {max} bytes"),
        serde_json::json!({ "limit": max }),
    ))
}

/// Marks a response sent without reading the whole request body: the HTTP/1 connection cannot carry another
/// request, and saying so keeps clients from reusing it and failing their next request. (HTTP/2 drops the
/// header and resets just the stream.)
fn unread_body(mut resp: Response<ResponseBody>) -> Response<ResponseBody> {
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn wasi_body_error(e: BoxError) -> wasmtime_wasi_http::Error {
    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(None);
    }
    match e.downcast::<hyper::Error>() {
        Ok(h) => wasmtime_wasi_http::Error::Hyper(*h),
        Err(other) => wasmtime_wasi_http::Error::InternalError(Some(other.to_string())),
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
