//! Write wasmfn functions in Rust.
//!
//! A function is one Rust fn marked [`#[http]`](macro@http) or [`#[event]`](macro@event), compiled to a
//! `wasm32-wasip2` component that exports `wasi:http/incoming-handler`. The SDK turns the incoming request into an
//! [`http::Request`] with a fully read [`Body`], calls the fn, and writes whatever it returns through
//! [`IntoResponse`]. Everything is blocking: one instance serves one request, so there is no async runtime.
//!
//! # Quick start
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! wasmfn-sdk = "0.1"
//! serde_json = "1"
//!
//! [profile.release]
//! opt-level = "s"
//! lto = true
//! strip = true
//! codegen-units = 1
//! panic = "abort"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use wasmfn_sdk::{IntoResponse, Json, Request};
//!
//! #[wasmfn_sdk::http]
//! fn handle(req: Request) -> impl IntoResponse {
//!     Json(serde_json::json!({ "path": req.uri().path() }))
//! }
//! # let response = handle(Request::new("".into())).into_response();
//! # assert_eq!(response.body().text().unwrap(), r#"{"path":"/"}"#);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and deploy `target/wasm32-wasip2/release/*.wasm`.
//! The macro keeps `handle` an ordinary fn, so unit tests call it directly on the host; the component export is
//! only generated for `wasm32`.
//!
//! # Errors
//!
//! Return [`Result`]: any `std::error::Error` converts into [`Error`] with `?` and becomes a `500` with a JSON body
//! `{"error": "..."}`; [`Error::with_status`] picks another status. A panic traps the instance and the runtime
//! answers `500` with the request id.
//!
//! # CloudEvents
//!
//! [`#[event]`](macro@event) functions take and return [`CloudEvent`]s (binary and structured HTTP modes), see the
//! [`event`](mod@event) module.

mod body;
pub mod client;
pub mod env;
mod error;
pub mod event;
pub mod log;
mod response;

#[cfg(target_arch = "wasm32")]
mod component;

#[cfg(test)]
mod tests;
// The macros' expansion names `::wasmfn_sdk`, also in this crate's own tests.
#[cfg(test)]
extern crate self as wasmfn_sdk;

pub use body::Body;
pub use env::{FunctionInfo, function};
pub use error::{Error, Result};
pub use event::{AttributesReader, AttributesWriter, CloudEvent, Data, EventBuilder, EventBuilderV10};
pub use response::{IntoResponse, Json};

pub use ::http;
pub use http::{HeaderMap, Method, StatusCode, header};

/// Marks the fn that handles every HTTP request of the function.
///
/// The fn takes one [`Request`] and returns any [`IntoResponse`]; it is left untouched, so it can be called
/// directly in tests. Only one handler (`#[http]` or `#[event]`) may exist per component. `async fn`, generics and
/// other argument counts are rejected at compile time.
///
/// ```
/// use wasmfn_sdk::{Request, Result, StatusCode};
///
/// #[wasmfn_sdk::http]
/// fn greet(req: Request) -> Result<(StatusCode, String)> {
///     let name = req.body().text()?;
///     Ok((StatusCode::CREATED, format!("hello {name}")))
/// }
/// ```
pub use wasmfn_sdk_macros::http;

/// Marks the fn that handles every CloudEvent delivered to the function.
///
/// The fn takes one [`CloudEvent`] and returns [`Result`]`<Option<CloudEvent>, E>` with `E: Into<Error>`:
/// `Ok(Some(reply))` answers `200` with the reply in binary mode (a Knative broker forwards it), `Ok(None)` answers
/// `202 Accepted`, `Err(e)` answers `e`'s status (`500` by default). A request that is not a CloudEvent gets a
/// `400` naming the problem. See [`event::from_request`] and [`event::into_response`].
///
/// ```
/// use wasmfn_sdk::{AttributesReader, CloudEvent, Result};
///
/// #[wasmfn_sdk::event]
/// fn on_event(event: CloudEvent) -> Result<Option<CloudEvent>> {
///     wasmfn_sdk::log::info(format!("got {} from {}", event.ty(), event.source()));
///     Ok(None)
/// }
/// ```
pub use wasmfn_sdk_macros::event;

/// An incoming HTTP request with its whole body.
///
/// ```
/// use wasmfn_sdk::{Method, Request, http};
///
/// let req: Request = http::Request::builder().method(Method::POST).uri("/items?id=1").body("hi".into()).unwrap();
/// assert_eq!(req.uri().query(), Some("id=1"));
/// ```
pub type Request = http::Request<Body>;

/// An HTTP response with its whole body; every [`IntoResponse`] becomes one.
///
/// ```
/// use wasmfn_sdk::{Response, StatusCode, http};
///
/// let res: Response = http::Response::builder().status(StatusCode::CREATED).body("done".into()).unwrap();
/// assert_eq!(res.body().as_bytes(), b"done");
/// ```
pub type Response = http::Response<Body>;

/// What `#[http]` and `#[event]` expand to; not a public API.
#[doc(hidden)]
pub mod __private {
    use crate::{CloudEvent, Error, IntoResponse, Request, Result};

    #[cfg(target_arch = "wasm32")]
    pub use crate::component::{serve_event, serve_http};
    #[cfg(target_arch = "wasm32")]
    pub use wasi::{
        self,
        exports::http::incoming_handler::Guest,
        http::types::{IncomingRequest, ResponseOutparam},
    };

    /// Type-checks an `#[http]` handler on every target (the export itself only exists on wasm32).
    pub fn check_http<R: IntoResponse>(_handler: impl FnOnce(Request) -> R) {}

    /// Type-checks an `#[event]` handler on every target.
    pub fn check_event<E: Into<Error>>(_handler: impl FnOnce(CloudEvent) -> Result<Option<CloudEvent>, E>) {}
}
