//! Outbound HTTP over `wasi:http/outgoing-handler`.
//!
//! Calls block until the whole response body has arrived (an instance serves one request, so there is nothing else
//! to do meanwhile). Any response status is `Ok`: check [`Response::status`](http::Response::status). Transport
//! failures are [`Error`]s with status `502 Bad Gateway`, naming the host's error code (refused connection,
//! destination prohibited by the node's egress policy, DNS failure, timeout, ...); so `?` in a handler answers 502.
//!
//! Outbound HTTP only works inside a wasmfn function: on other targets (host unit tests, docs) every call returns an
//! [`Error`] saying so.
//!
//! ```no_run
//! use wasmfn_sdk::{Request, Result, client};
//!
//! #[wasmfn_sdk::http]
//! fn proxy(_req: Request) -> Result<String> {
//!     let upstream = client::get("http://inventory.default.svc/items")?;
//!     Ok(format!("inventory answered {}", upstream.status()))
//! }
//! ```

use crate::{Body, Error, Response, Result};

/// Sends `request` and returns the complete response.
///
/// The URI must be absolute (`http://` or `https://` with a host); the body may be anything that converts into
/// [`Body`]. `content-length` is added when missing and the request has a body.
///
/// ```no_run
/// use wasmfn_sdk::{client, header, http, Method};
///
/// let request = http::Request::builder()
///     .method(Method::POST)
///     .uri("https://api.example.com/orders")
///     .header(header::CONTENT_TYPE, "application/json")
///     .body(r#"{"qty": 1}"#)?;
/// let response = client::send(request)?;
/// let created: serde_json::Value = response.body().json()?;
/// # Ok::<(), wasmfn_sdk::Error>(())
/// ```
pub fn send(request: http::Request<impl Into<Body>>) -> Result<Response> {
    imp::send(request.map(Into::into))
}

/// `GET url`, see [`send`]; an [`Error`] for a URL that is not absolute.
///
/// ```
/// // Outside a wasmfn function the client only reports that it cannot work there.
/// let err = wasmfn_sdk::client::get("http://example.com/").unwrap_err();
/// assert!(err.to_string().contains("only works inside a wasmfn function"));
/// ```
pub fn get(url: &str) -> Result<Response> {
    let request =
        http::Request::get(url).body(Body::empty()).map_err(|e| Error::new(format!("invalid URL {url}: {e}")))?;
    send(request)
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use crate::{Error, Request, Response, Result};

    pub(super) fn send(request: Request) -> Result<Response> {
        Err(Error::new(format!(
            "cannot send {} {}: outbound HTTP only works inside a wasmfn function (wasm32-wasip2)",
            request.method(),
            request.uri()
        )))
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::component::{describe, from_method, read_body, to_fields, to_header_map, write_body};
    use crate::{Error, Request, Response, Result, StatusCode};
    use wasi::http::outgoing_handler;
    use wasi::http::types::{OutgoingRequest, Scheme};

    pub(super) fn send(request: Request) -> Result<Response> {
        let (parts, body) = request.into_parts();
        let uri = &parts.uri;
        let fail =
            |what: String| Error::with_status(StatusCode::BAD_GATEWAY, format!("{} {uri}: {what}", parts.method));
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(Error::new(format!("invalid URL {uri}: it must start with http:// or https://"))),
        };
        let authority = uri.authority().ok_or_else(|| Error::new(format!("invalid URL {uri}: no host")))?;
        let has_body = !body.is_empty() || matches!(parts.method.as_str(), "POST" | "PUT" | "PATCH");
        let fields = to_fields(&parts.headers, has_body.then_some(body.len()))?;

        let outgoing = OutgoingRequest::new(fields);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        // The setters only reject syntactically invalid values, which `http::Uri` has already ruled out.
        outgoing.set_method(&from_method(&parts.method)).map_err(|()| fail("method refused".into()))?;
        outgoing.set_scheme(Some(&scheme)).map_err(|()| fail("scheme refused".into()))?;
        outgoing.set_authority(Some(authority.as_str())).map_err(|()| fail("authority refused".into()))?;
        outgoing.set_path_with_query(Some(path)).map_err(|()| fail("path refused".into()))?;
        let outgoing_body = outgoing.body().expect("the body of a new request");

        // Start the request before writing the body: the body pipe is bounded, so writing first could block.
        let pending = outgoing_handler::handle(outgoing, None).map_err(|e| fail(describe(&e)))?;
        // A failed write is reported only without a response: the request's own error (refused, ...) says more, and
        // a server may answer early (e.g. 413) without reading the whole body.
        let written = write_body(outgoing_body, body.as_bytes());
        pending.subscribe().block();
        let incoming = match (pending.get(), written) {
            (Some(Ok(Ok(incoming))), _) => incoming,
            (Some(Ok(Err(e))), _) | (_, Err(e)) => return Err(fail(describe(&e))),
            (Some(Err(())) | None, Ok(())) => return Err(fail("the response was lost".into())),
        };
        let status = StatusCode::from_u16(incoming.status()).map_err(|e| fail(e.to_string()))?;
        let headers = to_header_map(&incoming.headers());
        let body = incoming.consume().map_err(|()| fail("the response body was already consumed".into()))?;
        let body = read_body(body).map_err(|e| {
            fail(format!("reading the response body failed: {}", e.as_ref().map_or("stream error".into(), describe)))
        })?;
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
