//! The bodies the executor deals in: a request's body (streamed from the ingress, or an event's buffered
//! one), the boxed body of every response, the guest's response body that fails when the guest does, and the
//! JSON error responses.

use crate::budget::{ReadError, Reservation, read_reserved};
use crate::revision::Revision;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use std::sync::{Arc, OnceLock};

/// Boxed error of response bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every ingress response.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;
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

/// A response body of these bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
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

/// A guest's response body. If the guest fails after sending the head (a timeout or trap while streaming),
/// the body ends with an error, so hyper aborts the stream instead of ending a truncated 200 cleanly.
pub(super) struct GuestBody {
    pub(super) inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    pub(super) failure: Arc<OnceLock<String>>,
    pub(super) revision: Arc<Revision>,
    pub(super) request_id: Arc<str>,
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

pub(super) fn too_large(max: u64) -> Response<ResponseBody> {
    unread_body(json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than the function's limit of {max} bytes"),
        serde_json::json!({ "limit": max }),
    ))
}

/// Marks a response sent without reading the whole request body: the HTTP/1 connection cannot carry another
/// request, and saying so keeps clients from reusing it and failing their next request. (HTTP/2 drops the
/// header and resets just the stream.)
pub(super) fn unread_body(mut resp: Response<ResponseBody>) -> Response<ResponseBody> {
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

pub(super) fn wasi_body_error(e: BoxError) -> wasmtime_wasi_http::Error {
    if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
        return wasmtime_wasi_http::Error::HttpRequestBodySize(None);
    }
    match e.downcast::<hyper::Error>() {
        Ok(h) => wasmtime_wasi_http::Error::Hyper(*h),
        Err(other) => wasmtime_wasi_http::Error::InternalError(Some(other.to_string())),
    }
}

/// The body the guest reads: streamed under `maxRequestBody`, or read whole before admission.
pub(super) type GuestRequestBody = http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// The body under the revision's `maxRequestBody`, or the response that refuses it. A body with a length is
/// streamed (hyper enforces the length; `Limited` is a second guard). One without is read whole first, before
/// a slot is taken, so an oversized body never reaches the guest and a client that stalls mid-body holds no
/// slot; the read is bounded by the request's deadline, and its bytes are reserved in `memory` (the node's
/// budget and the function's share) as they arrive: past either, 503.
pub(super) async fn bounded_body(
    headers: &http::HeaderMap,
    body: RequestBody,
    revision: &Revision,
    node_max: u64,
    deadline: tokio::time::Instant,
    memory: &mut Reservation,
) -> Result<GuestRequestBody, Response<ResponseBody>> {
    let max_body = revision.function.spec.limits.max_request_body.bytes().min(node_max);
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(too_large(max_body));
    }
    if declared.is_some() {
        return Ok(Limited::new(body, max_body as usize).map_err(wasi_body_error).boxed_unsync());
    }
    match tokio::time::timeout_at(deadline, read_reserved(body, max_body, memory)).await {
        Ok(Ok(bytes)) => Ok(Full::new(bytes).map_err(|never| match never {}).boxed_unsync()),
        Ok(Err(ReadError::TooLarge)) => Err(too_large(max_body)),
        Ok(Err(ReadError::Budget(e))) => {
            let msg = format!("{e}: the request body cannot be held; retry later");
            let mut resp = unread_body(json_error(StatusCode::SERVICE_UNAVAILABLE, &msg, serde_json::json!({})));
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(resp)
        }
        Ok(Err(ReadError::Read(e))) => {
            let msg = format!("cannot read request body: {e}");
            Err(unread_body(json_error(StatusCode::BAD_REQUEST, &msg, serde_json::json!({}))))
        }
        Err(_) => {
            let msg = "the request body did not arrive in time";
            Err(unread_body(json_error(StatusCode::REQUEST_TIMEOUT, msg, serde_json::json!({}))))
        }
    }
}
