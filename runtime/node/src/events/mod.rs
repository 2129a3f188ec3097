//! Eventing: CloudEvents over HTTP into functions' `wasi:http` handlers.
//!
//! - The broker: `POST /_events/<namespace>` on the ingress takes binary, structured and batched events and
//!   delivers each to the functions whose broker triggers' filters match it (filtered before dispatch).
//! - Sources (`sources.rs`): cron schedules and NATS JetStream subjects, one task per trigger.
//! - Delivery (`delivery.rs`): in-process calls with retries, backoff, a per-attempt timeout and a dead-letter
//!   sink; a reply that is a CloudEvent goes back to the broker (Knative's reply semantics).

mod delivery;
pub(crate) mod sources;

use crate::ingress::{ResponseBody, json_error};
use crate::node::Node;
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use std::borrow::Cow;

pub(crate) use delivery::Target;

/// The broker's path on the ingress: `/_events/<namespace>` (no function or namespace starts with `_`).
pub(crate) const BROKER_PREFIX: &str = "/_events/";
/// Largest request the broker accepts.
const MAX_EVENT_BODY: usize = 10 << 20;
/// Replies feeding replies: an event that has gone through this many functions is not published again.
const MAX_HOPS: i64 = 16;
/// The extension counting how many replies led to an event.
const HOPS: &str = "wasmfnhops";

/// An attribute or extension of an event by its CloudEvents name.
pub(crate) fn attribute<'a>(e: &'a Event, name: &str) -> Option<Cow<'a, str>> {
    Some(match name {
        "id" => Cow::Borrowed(e.id()),
        "source" => Cow::Owned(e.source().to_string()),
        "type" => Cow::Borrowed(e.ty()),
        "specversion" => Cow::Owned(e.specversion().to_string()),
        "subject" => Cow::Borrowed(e.subject()?),
        "time" => Cow::Owned(e.time()?.to_rfc3339()),
        "datacontenttype" => Cow::Borrowed(e.datacontenttype()?),
        "dataschema" => Cow::Owned(e.dataschema()?.to_string()),
        ext => Cow::Owned(e.extension(ext)?.to_string()),
    })
}

/// Parses a broker request: one event (binary or structured mode) or a batch.
fn parse(headers: &http::HeaderMap, body: Bytes) -> Result<Vec<Event>, String> {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/cloudevents-batch+json") {
        let events: Vec<Event> =
            serde_json::from_slice(&body).map_err(|e| format!("invalid batch of CloudEvents: {e}"))?;
        if events.is_empty() {
            return Err("the batch holds no event".into());
        }
        return Ok(events);
    }
    cloudevents::binding::http::to_event(headers, body.to_vec()).map(|e| vec![e]).map_err(|e| {
        format!(
            "not a CloudEvent: {e} (send binary mode with ce-specversion, ce-id, ce-source and ce-type headers, \
             structured mode as application/cloudevents+json, or a batch as application/cloudevents-batch+json)"
        )
    })
}

/// `POST /_events/<namespace>`: accepts events and delivers them in the background; `202` once accepted.
pub(crate) async fn ingress(
    node: &Node,
    namespace: &str,
    req: Request<hyper::body::Incoming>,
) -> http::Response<ResponseBody> {
    if req.method() != http::Method::POST {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "the broker takes events by POST", serde_json::json!({}));
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_EVENT_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let msg = format!("cannot read the events: {e}");
            return json_error(StatusCode::BAD_REQUEST, &msg, serde_json::json!({}));
        }
    };
    let events = match parse(&parts.headers, body) {
        Ok(e) => e,
        Err(msg) => return json_error(StatusCode::BAD_REQUEST, &msg, serde_json::json!({})),
    };
    let mut matched = 0;
    for event in &events {
        matched += node.publish(namespace, event.clone());
    }
    let body = serde_json::json!({ "accepted": events.len(), "deliveries": matched }).to_string();
    let mut resp =
        http::Response::new(http_body_util::Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed_unsync());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}

impl Node {
    /// Delivers an event to every broker trigger of `namespace` whose filter matches; returns how many.
    pub(crate) fn publish(&self, namespace: &str, event: Event) -> usize {
        let m = &self.shared.metrics;
        m.broker_events.get_or_create(&crate::metrics::NamespaceLabels { namespace: namespace.into() }).inc();
        let table = self.shared.table.load();
        let prefix = format!("{namespace}/");
        let mut matched = 0;
        for (key, service) in table.functions.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            for trigger in &service.state.function.spec.triggers {
                let Some(events) = &trigger.events else { continue };
                if events.filter.as_ref().is_none_or(|f| f.matches(&|name| attribute(&event, name))) {
                    matched += 1;
                    let target = Target::new(key, trigger);
                    let (node, event) = (self.clone(), event.clone());
                    tokio::spawn(async move { node.deliver(&target, event).await });
                }
            }
        }
        if matched == 0 {
            tracing::debug!(namespace, id = event.id(), ty = event.ty(), "no trigger matches the event");
        }
        matched
    }

    /// Publishes a function's reply to its namespace's broker, unless it has gone round too often.
    fn publish_reply(&self, namespace: &str, mut reply: Event, cause: &Event) {
        let hops = attribute(cause, HOPS).and_then(|h| h.parse::<i64>().ok()).unwrap_or(0) + 1;
        if hops > MAX_HOPS {
            tracing::warn!(namespace, id = reply.id(), "reply not published: {MAX_HOPS} replies in a row (a loop?)");
            return;
        }
        reply.set_extension(HOPS, hops);
        self.publish(namespace, reply);
    }
}

/// The event as a binary-mode request to a function.
pub(crate) fn to_request(event: Event) -> Result<Request<crate::ingress::RequestBody>, String> {
    let req: Request<Option<Vec<u8>>> =
        Request::try_from(event).map_err(|e| format!("cannot encode the event: {e}"))?;
    let (mut parts, body) = req.into_parts();
    parts.method = http::Method::POST;
    parts.uri = http::Uri::from_static("/");
    let body = crate::ingress::RequestBody::Buffered(http_body_util::Full::new(Bytes::from(body.unwrap_or_default())));
    Ok(Request::from_parts(parts, body))
}
