//! The broker: `POST /_events/<namespace>` takes binary, structured and batched CloudEvents, matches them
//! against the namespace's broker triggers and hands each match to a delivery task; replies come back here.

use super::delivery::Target;
use super::{EventBus, HOPS, attribute, entering, hops};
use crate::executor::{ResponseBody, full, json_error};
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;

/// Largest request the broker accepts.
const MAX_EVENT_BODY: usize = 10 << 20;
/// Longest the broker waits for a request's body (a trickling client holds a connection, not the broker).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Replies feeding replies: an event that has gone through this many functions is not published again.
const MAX_HOPS: u32 = 16;

/// Parses a broker request: one event (binary or structured mode) or a batch.
fn parse(headers: &http::HeaderMap, body: Bytes) -> Result<Vec<Event>, String> {
    let ct = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/cloudevents-batch+json") {
        let events: Vec<Event> =
            serde_json::from_slice(&body).map_err(|e| format!("invalid batch of CloudEvents: {e}"))?;
        if events.is_empty() {
            return Err("the batch holds no event".into());
        }
        return Ok(events.into_iter().map(entering).collect());
    }
    cloudevents::binding::http::to_event(headers, body.to_vec()).map(|e| vec![entering(e)]).map_err(|e| {
        format!(
            "not a CloudEvent: {e} (send binary mode with ce-specversion, ce-id, ce-source and ce-type headers, \
             structured mode as application/cloudevents+json, or a batch as application/cloudevents-batch+json)"
        )
    })
}

impl EventBus {
    /// `POST /_events/<namespace>`: accepts events and delivers them in the background; `202` once accepted.
    pub(crate) async fn broker(
        self: &Arc<Self>,
        namespace: &str,
        req: Request<hyper::body::Incoming>,
    ) -> http::Response<ResponseBody> {
        if req.method() != http::Method::POST {
            return json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "the broker takes events by POST",
                serde_json::json!({}),
            );
        }
        let (parts, body) = req.into_parts();
        let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_EVENT_BODY).collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                let msg = format!("cannot read the events: {e}");
                return json_error(StatusCode::BAD_REQUEST, &msg, serde_json::json!({}));
            }
            Err(_) => {
                let msg = format!("the events did not arrive within {BODY_TIMEOUT:?}");
                return json_error(StatusCode::REQUEST_TIMEOUT, &msg, serde_json::json!({}));
            }
        };
        let events = match parse(&parts.headers, body) {
            Ok(e) => e,
            Err(msg) => return json_error(StatusCode::BAD_REQUEST, &msg, serde_json::json!({})),
        };
        if self.table.load().namespace(namespace).next().is_none() {
            let msg = format!("no function in namespace `{namespace}`, so no trigger for these events");
            return json_error(StatusCode::NOT_FOUND, &msg, serde_json::json!({}));
        }
        // All or nothing: a batch is refused whole (503) rather than half delivered when the node is saturated.
        let plans: Vec<Vec<Target>> = events.iter().map(|e| self.matching(namespace, e)).collect();
        let wanted: usize = plans.iter().map(Vec::len).sum();
        let Some(permits) = self.delivery_permits(wanted) else {
            let msg = "too many event deliveries in progress on this node; retry later";
            let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, msg, serde_json::json!({}));
            resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
            return resp;
        };
        let accepted = events.len();
        let mut permits = permits.into_iter();
        let mut matched = 0;
        for (event, targets) in events.into_iter().zip(plans) {
            self.count_broker_event(namespace);
            for target in targets {
                matched += 1;
                self.spawn_delivery(target, event.clone(), permits.next());
            }
        }
        let body = serde_json::json!({ "accepted": accepted, "deliveries": matched }).to_string();
        let mut resp = http::Response::new(full(body));
        *resp.status_mut() = StatusCode::ACCEPTED;
        resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        resp
    }

    /// The broker triggers of `namespace` whose filter matches `event`.
    fn matching(&self, namespace: &str, event: &Event) -> Vec<Target> {
        let table = self.table.load();
        let mut targets = Vec::new();
        for (key, service) in table.namespace(namespace) {
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
        let slots = &self.slots;
        let permits: Vec<_> = (0..n).map_while(|_| slots.clone().try_acquire_owned().ok()).collect();
        (permits.len() == n).then_some(permits)
    }

    fn count_broker_event(&self, namespace: &str) {
        let labels = crate::metrics::NamespaceLabels { namespace: namespace.into() };
        self.metrics.broker_events.get_or_create(&labels).inc();
    }

    fn spawn_delivery(
        self: &Arc<Self>,
        target: Target,
        event: Event,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let bus = self.clone();
        tokio::spawn(async move {
            let _slot = permit;
            bus.deliver(&target, event).await
        });
    }

    /// Delivers an event to every matching broker trigger of `namespace` (a reply); returns how many.
    pub(crate) fn publish(self: &Arc<Self>, namespace: &str, event: Event) -> usize {
        let targets = self.matching(namespace, &event);
        let Some(permits) = self.delivery_permits(targets.len()) else {
            let labels = crate::metrics::NamespaceLabels { namespace: namespace.into() };
            self.metrics.replies_dropped.get_or_create(&labels).inc();
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
    pub(super) fn publish_reply(self: &Arc<Self>, namespace: &str, mut reply: Event, cause: &Event) {
        let hops = hops(cause).saturating_add(1);
        if hops > MAX_HOPS {
            tracing::warn!(namespace, id = reply.id(), "reply not published: {MAX_HOPS} replies in a row (a loop?)");
            return;
        }
        reply.set_extension(HOPS, i64::from(hops));
        self.publish(namespace, reply);
    }
}
