//! [`IntoResponse`]: everything a handler may return, and the [`Json`] wrapper.

use crate::{Body, Error, Response, StatusCode, header};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use serde::Serialize;
use std::fmt::Display;

const TEXT: &str = "text/plain; charset=utf-8";
const OCTETS: &str = "application/octet-stream";
const JSON: &str = "application/json";

/// Turns a handler's return value into a [`Response`].
///
/// | value | status | `content-type` |
/// |---|---|---|
/// | `&'static str`, `String` | 200 | `text/plain; charset=utf-8` |
/// | `Vec<u8>`, `Bytes` | 200 | `application/octet-stream` |
/// | [`Json`]`(T)` | 200 | `application/json` |
/// | [`Body`] | 200 | none |
/// | `()` | 200, empty body (like axum; return `StatusCode::NO_CONTENT` for a 204) | none |
/// | [`StatusCode`] | that status, empty body | none |
/// | `http::Response<B: Into<Body>>` | as built | as built |
/// | `(StatusCode, T)` | the given status | `T`'s |
/// | `([(K, V); N], T)`, `(StatusCode, [(K, V); N], T)` | the given status | `T`'s unless a header replaces it |
/// | `Result<T, E>` | `T`'s or `E`'s | |
/// | [`Error`] | its status (500 by default) | `application/json` |
///
/// Header names and values are anything `HeaderName`/`HeaderValue` can be made from (`&str`, `header::*`
/// constants); an invalid one turns the response into a `500`.
///
/// ```
/// use wasmfn_sdk::{IntoResponse, StatusCode, header};
///
/// let res = (StatusCode::CREATED, [(header::LOCATION, "/items/7")], "created").into_response();
/// assert_eq!(res.status(), 201);
/// assert_eq!(res.headers()["location"], "/items/7");
/// assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
/// ```
pub trait IntoResponse {
    /// Makes the response.
    fn into_response(self) -> Response;
}

/// A JSON body: serializes `T` as the response body with `content-type: application/json`.
///
/// Serialization failures (a map with non-string keys, a failing `Serialize` impl) become a `500`. To parse a JSON
/// request body, use [`Body::json`].
///
/// ```
/// use wasmfn_sdk::{IntoResponse, Json};
///
/// #[derive(serde::Serialize)]
/// struct Out { ok: bool }
///
/// let res = Json(Out { ok: true }).into_response();
/// assert_eq!(res.headers()["content-type"], "application/json");
/// assert_eq!(res.body().as_bytes(), br#"{"ok":true}"#);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

/// A `200` response with `body` and, if given, a `content-type`.
fn with_type(content_type: Option<&'static str>, body: Body) -> Response {
    let mut response = Response::new(body);
    if let Some(value) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
    }
    response
}

impl<B: Into<Body>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        self.map(Into::into)
    }
}

impl IntoResponse for Body {
    fn into_response(self) -> Response {
        with_type(None, self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        with_type(Some(TEXT), self.into())
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        with_type(Some(TEXT), self.into())
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        with_type(Some(OCTETS), self.into())
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        with_type(Some(OCTETS), self.into())
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        with_type(None, Body::empty())
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        (self, ()).into_response()
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => with_type(Some(JSON), bytes.into()),
            Err(e) => Error::new(format!("cannot serialize the JSON response: {e}")).into_response(),
        }
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        *response.status_mut() = self.0;
        response
    }
}

/// Inserts (replaces) the headers; an invalid name or value turns the response into a `500`.
fn insert_headers<K, V, const N: usize>(mut response: Response, headers: [(K, V); N]) -> Response
where
    K: TryInto<HeaderName, Error: Display>,
    V: TryInto<HeaderValue, Error: Display>,
{
    for (name, value) in headers {
        let name = match name.try_into() {
            Ok(name) => name,
            Err(e) => return Error::new(format!("invalid response header name: {e}")).into_response(),
        };
        match value.try_into() {
            Ok(value) => response.headers_mut().insert(name, value),
            Err(e) => return Error::new(format!("invalid value of response header {name}: {e}")).into_response(),
        };
    }
    response
}

impl<K, V, const N: usize, T> IntoResponse for ([(K, V); N], T)
where
    K: TryInto<HeaderName, Error: Display>,
    V: TryInto<HeaderValue, Error: Display>,
    T: IntoResponse,
{
    fn into_response(self) -> Response {
        insert_headers(self.1.into_response(), self.0)
    }
}

impl<K, V, const N: usize, T> IntoResponse for (StatusCode, [(K, V); N], T)
where
    K: TryInto<HeaderName, Error: Display>,
    V: TryInto<HeaderValue, Error: Display>,
    T: IntoResponse,
{
    fn into_response(self) -> Response {
        let (status, headers, body) = self;
        insert_headers((status, body).into_response(), headers)
    }
}
