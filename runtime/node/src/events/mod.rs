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
        // As sent: `Z`, not `+00:00`, so `suffix`/`exact` filters on time behave as users expect.
        "time" => Cow::Owned(e.time()?.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
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
    let prefix = format!("{namespace}/");
    if !node.shared.table.load().functions.range(prefix.clone()..).next().is_some_and(|(k, _)| k.starts_with(&prefix)) {
        let msg = format!("no function in namespace `{namespace}`, so no trigger for these events");
        return json_error(StatusCode::NOT_FOUND, &msg, serde_json::json!({}));
    }
    // All or nothing: a batch is refused whole (503) rather than half delivered when the node is saturated.
    let plans: Vec<Vec<Target>> = events.iter().map(|e| node.matching(namespace, e)).collect();
    let wanted: usize = plans.iter().map(Vec::len).sum();
    let Some(permits) = node.delivery_permits(wanted) else {
        let msg = "too many event deliveries in progress on this node; retry later";
        let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, msg, serde_json::json!({}));
        resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        return resp;
    };
    let accepted = events.len();
    let mut permits = permits.into_iter();
    let mut matched = 0;
    for (event, targets) in events.into_iter().zip(plans) {
        node.count_broker_event(namespace);
        for target in targets {
            matched += 1;
            node.spawn_delivery(target, event.clone(), permits.next());
        }
    }
    let body = serde_json::json!({ "accepted": accepted, "deliveries": matched }).to_string();
    let mut resp =
        http::Response::new(http_body_util::Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed_unsync());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}

impl Node {
    /// The broker triggers of `namespace` whose filter matches `event`.
    fn matching(&self, namespace: &str, event: &Event) -> Vec<Target> {
        let table = self.shared.table.load();
        let prefix = format!("{namespace}/");
        let mut targets = Vec::new();
        for (key, service) in table.functions.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            for trigger in &service.state.function.spec.triggers {
                let Some(events) = &trigger.events else { continue };
                if events.filter.as_ref().is_none_or(|f| f.matches(&|name| attribute(event, name))) {
                    targets.push(Target::new(key, trigger));
                }
            }
        }
        targets
    }

    /// `n` delivery slots, or none when the node's cap on deliveries in progress would be passed.
    fn delivery_permits(&self, n: usize) -> Option<Vec<tokio::sync::OwnedSemaphorePermit>> {
        let slots = &self.shared.event_slots;
        let permits: Vec<_> = (0..n).map_while(|_| slots.clone().try_acquire_owned().ok()).collect();
        (permits.len() == n).then_some(permits)
    }

    fn count_broker_event(&self, namespace: &str) {
        let labels = crate::metrics::NamespaceLabels { namespace: namespace.into() };
        self.shared.metrics.broker_events.get_or_create(&labels).inc();
    }

    fn spawn_delivery(&self, target: Target, event: Event, permit: Option<tokio::sync::OwnedSemaphorePermit>) {
        let node = self.clone();
        tokio::spawn(async move {
            let _slot = permit;
            node.deliver(&target, event).await
        });
    }

    /// Delivers an event to every matching broker trigger of `namespace` (a reply); returns how many.
    pub(crate) fn publish(&self, namespace: &str, event: Event) -> usize {
        let targets = self.matching(namespace, &event);
        let Some(permits) = self.delivery_permits(targets.len()) else {
            let labels = crate::metrics::NamespaceLabels { namespace: namespace.into() };
            self.shared.metrics.replies_dropped.get_or_create(&labels).inc();
            tracing::error!(
                namespace,
                id = event.id(),
                "reply event dropped: too many deliveries in progress on this node"
            );
            return 0;
        };
        self.count_broker_event(namespace);
        let n = targets.len();
        for (target, permit) in targets.into_iter().zip(permits) {
            self.spawn_delivery(target, event.clone(), Some(permit));
        }
        n
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
