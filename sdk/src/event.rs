//! CloudEvents 1.0 over HTTP, as Knative eventing delivers them.
//!
//! A request is a CloudEvent in one of two modes:
//! - **binary**: the attributes are `ce-*` headers (`ce-specversion`, `ce-id`, `ce-source`, `ce-type`, optional
//!   `ce-subject`, `ce-time`, `ce-dataschema`, extensions), the body is the data and `content-type` is
//!   `datacontenttype`. Header values are percent-decoded as the HTTP binding requires.
//! - **structured**: `content-type: application/cloudevents+json` and the whole event as JSON in the body.
//!
//! Replies are always sent in binary mode. Events are [`cloudevents::Event`](CloudEvent)s from the `cloudevents-sdk`
//! crate; build new ones with [`EventBuilderV10`].
//!
//! ```
//! use wasmfn_sdk::{AttributesReader, CloudEvent, EventBuilder, EventBuilderV10, Result, event};
//!
//! #[derive(serde::Deserialize)]
//! struct Order { id: u64 }
//!
//! #[wasmfn_sdk::event]
//! fn on_order(event: CloudEvent) -> Result<Option<CloudEvent>> {
//!     let order: Order = event::data_json(&event)?;
//!     let reply = EventBuilderV10::new()
//!         .id(format!("{}-ack", event.id()))
//!         .source("/orders")
//!         .ty("com.example.order.accepted")
//!         .data("application/json", serde_json::json!({ "order": order.id }))
//!         .build()?;
//!     Ok(Some(reply))
//! }
//! ```

use crate::{Error, IntoResponse, Request, Response, Result, StatusCode, header};
use cloudevents::event::{EventBuilderError, SpecVersion};
use cloudevents::message::{
    self, BinaryDeserializer, BinarySerializer, Encoding, MessageAttributeValue, MessageDeserializer,
    StructuredDeserializer, StructuredSerializer,
};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;

/// A CloudEvent (any spec version; `1.0` is what Knative sends). Read attributes with [`AttributesReader`].
pub use cloudevents::Event as CloudEvent;
pub use cloudevents::{AttributesReader, AttributesWriter, Data, EventBuilder, EventBuilderV10};

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// What [`#[event]`](macro@crate::event) does with each request: parses it with [`from_request`], calls `handler`
/// and answers with its result.
///
/// `Ok(Some(reply))` → `200` with `reply` in binary mode ([`into_response`]); `Ok(None)` → `202 Accepted`, empty;
/// `Err(e)` → `e`'s status; not a CloudEvent → `400`. Use it to test a handler end to end on the host, or to accept
/// events on some paths of an [`#[http]`](macro@crate::http) function.
///
/// ```
/// use wasmfn_sdk::{CloudEvent, Request, Result, event, http};
///
/// fn ignore(_event: CloudEvent) -> Result<Option<CloudEvent>> {
///     Ok(None)
/// }
///
/// let req = http::Request::builder()
///     .header("ce-specversion", "1.0")
///     .header("ce-id", "1")
///     .header("ce-source", "/test")
///     .header("ce-type", "ping")
///     .body("".into())?;
/// assert_eq!(event::handle(req, ignore).status(), 202);
/// assert_eq!(event::handle(Request::new("hi".into()), ignore).status(), 400);
/// # Ok::<(), wasmfn_sdk::Error>(())
/// ```
pub fn handle<E: Into<Error>>(
    req: Request,
    handler: impl FnOnce(CloudEvent) -> Result<Option<CloudEvent>, E>,
) -> Response {
    let event = match from_request(req) {
        Ok(event) => event,
        Err(e) => return e.into_response(),
    };
    match handler(event) {
        Ok(Some(reply)) => into_response(reply),
        Ok(None) => StatusCode::ACCEPTED.into_response(),
        Err(e) => e.into().into_response(),
    }
}

/// Parses a binary- or structured-mode CloudEvent; an [`Error`] with status `400` saying what is missing or invalid
/// (e.g. `invalid CloudEvent: missing ce-id`) otherwise.
///
/// ```
/// use wasmfn_sdk::{AttributesReader, event, http};
///
/// let req = http::Request::builder()
///     .header("content-type", "application/cloudevents+json")
///     .body(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"n":1}}"#.into())?;
/// let ev = event::from_request(req)?;
/// assert_eq!(ev.ty(), "t");
///
/// let req = http::Request::builder().header("ce-specversion", "1.0").body("".into())?;
/// assert_eq!(event::from_request(req).unwrap_err().to_string(), "invalid CloudEvent: missing ce-id");
/// # Ok::<(), wasmfn_sdk::Error>(())
/// ```
pub fn from_request(req: Request) -> Result<CloudEvent> {
    let (parts, body) = req.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let media_type = content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let message = if media_type.as_deref() == Some(STRUCTURED) {
        HttpMessage::Structured(body.into_bytes().into())
    } else if media_type.as_deref() == Some(BATCH) {
        return Err(bad_request("batched CloudEvents (application/cloudevents-batch+json) are not supported"));
    } else if let Some(spec) = parts.headers.get("ce-specversion") {
        let mut attributes = Vec::new();
        for (name, value) in &parts.headers {
            if let Some(attribute) = name.as_str().strip_prefix("ce-") {
                attributes.push((attribute.to_string(), percent_decode(name, value)?));
            }
        }
        HttpMessage::Binary {
            spec: percent_decode(&HeaderName::from_static("ce-specversion"), spec)?,
            attributes,
            content_type: content_type.map(str::to_string),
            data: body.into_bytes().into(),
        }
    } else {
        return Err(bad_request(
            "not a CloudEvent: expected ce-specversion, ce-id, ce-source and ce-type headers (binary mode) or \
             content-type: application/cloudevents+json (structured mode)",
        ));
    };
    let binary = matches!(message, HttpMessage::Binary { .. });
    MessageDeserializer::into_event(message).map_err(|e| {
        let detail = match e {
            message::Error::EventBuilderError {
                source: EventBuilderError::MissingRequiredAttribute { attribute_name },
            } => format!("missing {}{attribute_name}", if binary { "ce-" } else { "" }),
            // `time` and `dataschema` are the only attributes parsed as timestamp and URL.
            message::Error::ParseTimeError { source } => format!("time is not an RFC 3339 timestamp: {source}"),
            message::Error::ParseUrlError { source } => format!("dataschema is not a URL: {source}"),
            message::Error::SerdeJsonError { source } => source.to_string(),
            e => e.to_string(),
        };
        bad_request(format!("invalid CloudEvent: {detail}"))
    })
}

/// Encodes `event` as a `200` response in binary mode: `ce-*` headers, `content-type` = `datacontenttype`
/// (`application/json` for JSON data without one), body = data. An event that cannot be encoded (an extension name
/// that is not a valid header name) becomes a `500`.
///
/// ```
/// use wasmfn_sdk::{EventBuilder, EventBuilderV10, event};
///
/// let ev = EventBuilderV10::new().id("1").source("/s").ty("t").data("text/plain", "hi").build()?;
/// let res = event::into_response(ev);
/// assert_eq!(res.headers()["ce-id"], "1");
/// assert_eq!(res.headers()["content-type"], "text/plain");
/// assert_eq!(res.body().as_bytes(), b"hi");
/// # Ok::<(), wasmfn_sdk::Error>(())
/// ```
pub fn into_response(event: CloudEvent) -> Response {
    let mut headers = HeaderMap::new();
    if matches!(event.data(), Some(Data::Json(_))) && event.datacontenttype().is_none() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    match event.deserialize_binary(BinaryReply(headers)) {
        Ok(response) => response,
        Err(e) => Error::new(format!("cannot encode the reply CloudEvent: {e}")).into_response(),
    }
}

/// Parses the event's data as JSON into `T`, whatever the mode it came in; an [`Error`] with status `400` if there
/// is no data or it does not parse.
///
/// ```
/// use wasmfn_sdk::{EventBuilder, EventBuilderV10, event};
///
/// let ev = EventBuilderV10::new().id("1").source("/s").ty("t").data("application/json", br#"[1,2]"#.to_vec())
///     .build()?;
/// let numbers: Vec<u32> = event::data_json(&ev)?;
/// assert_eq!(numbers, [1, 2]);
/// # Ok::<(), wasmfn_sdk::Error>(())
/// ```
pub fn data_json<T: DeserializeOwned>(event: &CloudEvent) -> Result<T> {
    let parsed = match event.data() {
        Some(Data::Json(value)) => T::deserialize(value),
        Some(Data::String(text)) => serde_json::from_str(text),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes),
        None => return Err(bad_request("the CloudEvent has no data")),
    };
    parsed.map_err(|e| bad_request(format!("invalid CloudEvent data: {e}")))
}

fn bad_request(message: impl std::fmt::Display) -> Error {
    Error::with_status(StatusCode::BAD_REQUEST, message)
}

/// The value of a `ce-*` header: `%XX` sequences decoded, then UTF-8.
fn percent_decode(name: &HeaderName, value: &HeaderValue) -> Result<String> {
    let raw = value.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if raw[i] == b'%' => {
                bytes.push(byte);
                i += 3;
            }
            _ => {
                bytes.push(raw[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| bad_request(format!("invalid CloudEvent: {name} is not UTF-8")))
}

/// Percent-encodes what the HTTP binding requires: space, `"`, `%` and anything outside printable ASCII.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A request as the `cloudevents` message traits see it; they build the event and validate the attributes.
enum HttpMessage {
    Structured(Vec<u8>),
    Binary { spec: String, attributes: Vec<(String, String)>, content_type: Option<String>, data: Vec<u8> },
}

impl MessageDeserializer for HttpMessage {
    fn encoding(&self) -> Encoding {
        match self {
            Self::Structured(_) => Encoding::STRUCTURED,
            Self::Binary { .. } => Encoding::BINARY,
        }
    }
}

impl StructuredDeserializer for HttpMessage {
    fn deserialize_structured<R, V: StructuredSerializer<R>>(self, visitor: V) -> message::Result<R> {
        match self {
            Self::Structured(body) => visitor.set_structured_event(body),
            Self::Binary { .. } => Err(message::Error::WrongEncoding {}),
        }
    }
}

impl BinaryDeserializer for HttpMessage {
    fn deserialize_binary<R, V: BinarySerializer<R>>(self, mut visitor: V) -> message::Result<R> {
        let Self::Binary { spec, attributes, content_type, data } = self else {
            return Err(message::Error::WrongEncoding {});
        };
        let spec = SpecVersion::try_from(spec.as_str())?;
        visitor = visitor.set_spec_version(spec.clone())?;
        for (name, value) in attributes {
            let value = MessageAttributeValue::String(value);
            visitor = match name.as_str() {
                "specversion" => visitor,
                known if spec.attribute_names().contains(&known) => visitor.set_attribute(known, value)?,
                extension => visitor.set_extension(extension, value)?,
            };
        }
        if let Some(content_type) = content_type {
            visitor = visitor.set_attribute("datacontenttype", MessageAttributeValue::String(content_type))?;
        }
        if data.is_empty() { visitor.end() } else { visitor.end_with_data(data) }
    }
}

/// Collects an event's binary-mode headers and body into a `200` response.
struct BinaryReply(HeaderMap);

impl BinaryReply {
    fn ce(mut self, name: &str, value: &MessageAttributeValue) -> message::Result<Self> {
        let name = HeaderName::try_from(format!("ce-{name}")).map_err(other)?;
        let value = HeaderValue::try_from(percent_encode(&value.to_string())).map_err(other)?;
        self.0.insert(name, value);
        Ok(self)
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> message::Error {
    message::Error::Other { source: Box::new(e) }
}

impl BinarySerializer<Response> for BinaryReply {
    fn set_spec_version(self, spec: SpecVersion) -> message::Result<Self> {
        self.ce("specversion", &MessageAttributeValue::String(spec.to_string()))
    }

    fn set_attribute(mut self, name: &str, value: MessageAttributeValue) -> message::Result<Self> {
        if name != "datacontenttype" {
            return self.ce(name, &value);
        }
        self.0.insert(header::CONTENT_TYPE, HeaderValue::try_from(value.to_string()).map_err(other)?);
        Ok(self)
    }

    fn set_extension(self, name: &str, value: MessageAttributeValue) -> message::Result<Self> {
        self.ce(name, &value)
    }

    fn end_with_data(self, data: Vec<u8>) -> message::Result<Response> {
        let mut response = Response::new(data.into());
        *response.headers_mut() = self.0;
        Ok(response)
    }

    fn end(self) -> message::Result<Response> {
        self.end_with_data(Vec::new())
    }
}
