//! The `wasi:http` glue: serving the incoming request for `#[http]`/`#[event]` (through [`crate::__private`]) and
//! the conversions [`crate::client`] shares.

use crate::{Body, CloudEvent, Error, IntoResponse, Request, Response, StatusCode};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse,
    ResponseOutparam, Scheme, http_error_code,
};
use wasi::io::streams::StreamError;

/// Largest write per `blocking-write-and-flush` call: the WASI streams contract allows 4096 bytes.
const WRITE_CHUNK: usize = 4096;

/// Serves one request with an `#[http]` handler.
pub fn serve_http<R: IntoResponse>(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(Request) -> R,
) {
    let response = match to_request(request) {
        Ok(request) => handler(request).into_response(),
        Err(e) => e.into_response(),
    };
    respond(out, response);
}

/// Serves one request with an `#[event]` handler.
pub fn serve_event<E: Into<Error>>(
    request: IncomingRequest,
    out: ResponseOutparam,
    handler: impl FnOnce(CloudEvent) -> Result<Option<CloudEvent>, E>,
) {
    serve_http(request, out, |request| crate::event::handle(request, handler));
}

fn to_request(request: IncomingRequest) -> crate::Result<Request> {
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    let mut uri = http::Uri::builder();
    // An absolute URI when the host passes scheme and authority (`req.uri().host()` works then), else the path.
    if let (Some(scheme), Some(authority)) = (request.scheme(), request.authority()) {
        let scheme = match scheme {
            Scheme::Http => "http".to_string(),
            Scheme::Https => "https".to_string(),
            Scheme::Other(other) => other,
        };
        uri = uri.scheme(scheme.as_str()).authority(authority);
    }
    let uri = uri
        .path_and_query(path.as_str())
        .build()
        .or_else(|_| path.parse())
        .map_err(|e| Error::with_status(StatusCode::BAD_REQUEST, format!("invalid request target {path}: {e}")))?;
    let body = request.consume().map_err(|()| Error::new("the request body was already consumed"))?;
    let body = read_body(body).map_err(|e| match e {
        Some(ErrorCode::HttpRequestBodySize(_)) => {
            Error::with_status(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        e => Error::with_status(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {}", e.as_ref().map_or("stream error".into(), describe)),
        ),
    })?;
    let mut out = http::Request::new(Body::from(body));
    *out.method_mut() = to_method(request.method())?;
    *out.uri_mut() = uri;
    *out.headers_mut() = to_header_map(&request.headers());
    Ok(out)
}

/// Writes `response`; a header the host refuses (`connection`, `transfer-encoding`, ...) turns it into a 500.
fn respond(out: ResponseOutparam, response: Response) {
    let (fields, response) = match to_fields(response.headers(), body_length(&response)) {
        Ok(fields) => (fields, response),
        Err(e) => {
            let response = e.into_response();
            (
                to_fields(response.headers(), body_length(&response)).expect("error responses have plain headers"),
                response,
            )
        }
    };
    let outgoing = OutgoingResponse::new(fields);
    outgoing.set_status_code(response.status().as_u16()).expect("http::StatusCode is in 100..=999");
    let body = outgoing.body().expect("the body of a new response");
    ResponseOutparam::set(out, Ok(outgoing));
    // The caller may be gone: a failed write ends the request, there is no one left to answer.
    if write_body(body, response.body().as_bytes()).is_err() {
        crate::log::warn("the response body could not be written: the caller went away");
    }
}

/// The `content-length` to add to a response, so it is not sent chunked; none for the statuses that must not have one.
fn body_length(response: &Response) -> Option<usize> {
    let status = response.status();
    let bodiless = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    (!bodiless).then(|| response.body().len())
}

/// `wasi:http` fields from `headers`, plus `content-length: {length}` when given and missing, so the body is not
/// sent chunked.
pub(crate) fn to_fields(headers: &HeaderMap, length: Option<usize>) -> crate::Result<Fields> {
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name.as_str(), value.as_bytes())
            .map_err(|e| Error::new(format!("header {name} refused: {e:?}")))?;
    }
    if let Some(length) = length.filter(|_| !headers.contains_key(http::header::CONTENT_LENGTH)) {
        // `content-length` is always allowed and the value is digits: this cannot fail.
        let _ = fields.append("content-length", length.to_string().as_bytes());
    }
    Ok(fields)
}

pub(crate) fn to_header_map(fields: &Fields) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in fields.entries() {
        // The host only hands over valid header names and values.
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    headers
}

fn to_method(method: WasiMethod) -> crate::Result<http::Method> {
    Ok(match method {
        WasiMethod::Get => http::Method::GET,
        WasiMethod::Head => http::Method::HEAD,
        WasiMethod::Post => http::Method::POST,
        WasiMethod::Put => http::Method::PUT,
        WasiMethod::Delete => http::Method::DELETE,
        WasiMethod::Connect => http::Method::CONNECT,
        WasiMethod::Options => http::Method::OPTIONS,
        WasiMethod::Trace => http::Method::TRACE,
        WasiMethod::Patch => http::Method::PATCH,
        WasiMethod::Other(other) => http::Method::from_bytes(other.as_bytes())
            .map_err(|e| Error::with_status(StatusCode::BAD_REQUEST, format!("method {other}: {e}")))?,
    })
}

pub(crate) fn from_method(method: &http::Method) -> WasiMethod {
    match *method {
        http::Method::GET => WasiMethod::Get,
        http::Method::HEAD => WasiMethod::Head,
        http::Method::POST => WasiMethod::Post,
        http::Method::PUT => WasiMethod::Put,
        http::Method::DELETE => WasiMethod::Delete,
        http::Method::CONNECT => WasiMethod::Connect,
        http::Method::OPTIONS => WasiMethod::Options,
        http::Method::TRACE => WasiMethod::Trace,
        http::Method::PATCH => WasiMethod::Patch,
        ref other => WasiMethod::Other(other.to_string()),
    }
}

/// Reads a whole incoming body; on failure, the `wasi:http` error code when the host gives one.
pub(crate) fn read_body(body: IncomingBody) -> Result<Vec<u8>, Option<ErrorCode>> {
    let mut bytes = Vec::new();
    {
        let stream = body.stream().map_err(|()| None)?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => return Err(http_error_code(&e)),
            }
        }
        // The stream is a child of the body: it must be dropped before `finish`.
    }
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

/// Writes `bytes` to an outgoing body in 4096-byte chunks and finishes it.
pub(crate) fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), ErrorCode> {
    {
        let stream = body.write().map_err(|()| ErrorCode::InternalError(Some("body stream taken".into())))?;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk).map_err(|e| match e {
                StreamError::LastOperationFailed(e) => {
                    http_error_code(&e).unwrap_or(ErrorCode::InternalError(Some(e.to_debug_string())))
                }
                StreamError::Closed => ErrorCode::ConnectionTerminated,
            })?;
        }
    }
    OutgoingBody::finish(body, None)
}

/// Words for the error codes a function meets in practice; the rest keep their WIT name.
pub(crate) fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::DestinationIpProhibited => {
            "destination prohibited by the node's egress policy (loopback and link-local addresses)".into()
        }
        ErrorCode::HttpRequestDenied => "request denied by the host".into(),
        ErrorCode::DnsError(e) => format!("DNS lookup failed ({})", e.rcode.as_deref().unwrap_or("no answer")),
        ErrorCode::DnsTimeout => "DNS lookup timed out".into(),
        ErrorCode::ConnectionTimeout => "connection timed out".into(),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => "response timed out".into(),
        ErrorCode::TlsCertificateError => "invalid TLS certificate".into(),
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}"),
    }
}
