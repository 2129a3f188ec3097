//! [`Error`]: what a handler returns when it fails, with the HTTP status to answer.

use crate::{IntoResponse, Json, Response, StatusCode};
use std::fmt;

/// `Result` with the SDK [`Error`] as the default error type.
///
/// ```
/// fn parse(text: &str) -> wasmfn_sdk::Result<u32> {
///     Ok(text.parse()?)
/// }
/// assert_eq!(parse("7")?, 7);
/// # Ok::<(), wasmfn_sdk::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed request: a message and the HTTP status to answer with.
///
/// Any `std::error::Error + Send + Sync + 'static` converts into it (so `?` works) with status
/// `500 Internal Server Error`. As a response it is `{"error": "<message>"}` with its status; a `5xx` is also logged
/// to stderr, which reaches the node's log with the request id. Like `anyhow::Error`, it does not implement
/// `std::error::Error` itself: that would conflict with the blanket conversion.
///
/// ```
/// use wasmfn_sdk::{Error, IntoResponse, StatusCode};
///
/// let err = Error::with_status(StatusCode::BAD_REQUEST, "qty must be positive");
/// let response = err.into_response();
/// assert_eq!(response.status(), 400);
/// assert_eq!(response.body().text()?, r#"{"error":"qty must be positive"}"#);
/// # Ok::<(), wasmfn_sdk::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    message: String,
}

impl Error {
    /// An error answered with `500 Internal Server Error`.
    ///
    /// ```
    /// let err = wasmfn_sdk::Error::new("database unavailable");
    /// assert_eq!(err.status(), 500);
    /// assert_eq!(err.to_string(), "database unavailable");
    /// ```
    pub fn new(message: impl fmt::Display) -> Self {
        Self::with_status(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// An error answered with `status`, e.g. `400 Bad Request` for invalid input.
    ///
    /// Also re-labels another error: `Error::with_status(StatusCode::BAD_GATEWAY, err)`.
    ///
    /// ```
    /// use wasmfn_sdk::{Error, StatusCode};
    ///
    /// let err = Error::with_status(StatusCode::NOT_FOUND, format!("no order {}", 42));
    /// assert_eq!(err.status(), StatusCode::NOT_FOUND);
    /// ```
    pub fn with_status(status: StatusCode, message: impl fmt::Display) -> Self {
        Self { status, message: message.to_string() }
    }

    /// The status the error is answered with.
    ///
    /// ```
    /// let err: wasmfn_sdk::Error = "x".parse::<u8>().unwrap_err().into();
    /// assert_eq!(err.status(), 500);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The message is the error's `Display` followed by its `source()` chain, `: `-separated.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::new(message)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            crate::log::error(format_args!("{} {}", self.status.as_u16(), self.message));
        }
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}
