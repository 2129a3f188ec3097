//! [`Body`]: the whole body of a request or response, in memory.

use crate::{Error, Result, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// The whole body of a request or response.
///
/// Functions see the complete request body (the runtime caps its size), so there is no streaming API.
///
/// ```
/// use wasmfn_sdk::Body;
///
/// let body = Body::from(r#"{"n": 1}"#);
/// assert_eq!(body.len(), 8);
/// let value: serde_json::Value = body.json()?;
/// assert_eq!(value["n"], 1);
/// # Ok::<(), wasmfn_sdk::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body(Bytes);

impl Body {
    /// An empty body.
    ///
    /// ```
    /// assert!(wasmfn_sdk::Body::empty().is_empty());
    /// ```
    pub fn empty() -> Self {
        Self::default()
    }

    /// The bytes of the body.
    ///
    /// ```
    /// assert_eq!(wasmfn_sdk::Body::from("hi").as_bytes(), b"hi");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Takes the bytes out of the body (no copy).
    ///
    /// ```
    /// let bytes = wasmfn_sdk::Body::from(vec![1, 2]).into_bytes();
    /// assert_eq!(&bytes[..], &[1, 2]);
    /// ```
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The body as UTF-8 text; an [`Error`] with status `400 Bad Request` if it is not UTF-8.
    ///
    /// ```
    /// assert_eq!(wasmfn_sdk::Body::from("hi").text()?, "hi");
    /// assert_eq!(wasmfn_sdk::Body::from(vec![0xff]).text().unwrap_err().status(), 400);
    /// # Ok::<(), wasmfn_sdk::Error>(())
    /// ```
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.0)
            .map_err(|e| Error::with_status(StatusCode::BAD_REQUEST, format!("body is not UTF-8: {e}")))
    }

    /// Parses the body as JSON; an [`Error`] with status `400 Bad Request` naming the problem if it does not parse.
    ///
    /// The `400` fits a request body sent by the caller; for an upstream response parsed with it, pick another
    /// status with [`Error::with_status`].
    ///
    /// ```
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Order { qty: u32 }
    ///
    /// let order: Order = wasmfn_sdk::Body::from(r#"{"qty": 3}"#).json()?;
    /// assert_eq!(order.qty, 3);
    /// let err = wasmfn_sdk::Body::from("{").json::<Order>().unwrap_err();
    /// assert_eq!(err.status(), 400);
    /// # Ok::<(), wasmfn_sdk::Error>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.0)
            .map_err(|e| Error::with_status(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
    }

    /// The length of the body in bytes.
    ///
    /// ```
    /// assert_eq!(wasmfn_sdk::Body::from("abc").len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the body has no bytes.
    ///
    /// ```
    /// assert!(wasmfn_sdk::Body::from(()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self(bytes)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes.into())
    }
}

/// Copies the bytes.
impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Self {
        Self(Bytes::copy_from_slice(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self(text.into())
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Self::empty()
    }
}
