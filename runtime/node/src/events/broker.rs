//! The broker: `POST /_events/<namespace>` takes binary, structured and batched CloudEvents, matches them
//! against the namespace's broker triggers and hands each match to a delivery task; replies come back here.

use super::delivery::Target;
use super::{EventBus, HOPS, attribute, entering, hops};
use crate::budget::{ReadError, Reservation, read_reserved};
use crate::executor::{ResponseBody, full, json_error};
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http::{Request, StatusCode};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest request the broker accepts.
const MAX_EVENT_BODY: u64 = 10 << 20;
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

/// What an accepted delivery holds until it ends: its slots and its event's bytes.
pub(super) struct Slot {
    _node: OwnedSemaphorePermit,
    _namespace: OwnedSemaphorePermit,
    _memory: Reservation,
}

/// About what an event takes in memory: its data and its attributes.
fn event_size(event: &Event) -> u64 {
    let data = match event.data() {
        Some(cloudevents::Data::Binary(b)) => b.len(),
        Some(cloudevents::Data::String(s)) => s.len(),
        Some(cloudevents::Data::Json(j)) => j.to_string().len(),
        None => 0,
    };
    (data + 512) as u64
}

/// A 503 asking the sender to retry.
fn busy(msg: &str) -> http::Response<ResponseBody> {
    let mut resp = json_error(StatusCode::SERVICE_UNAVAILABLE, msg, serde_json::json!({}));
    resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    resp
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
        // The body's bytes are held in the node's memory budget while it is read and parsed.
        let mut intake = self.budget.reservation(None);
        let read = read_reserved(body, MAX_EVENT_BODY, &mut intake);
        let body = match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(Ok(b)) => b,
            Ok(Err(ReadError::TooLarge)) => {
                let msg = format!("the events are larger than the broker's limit of {MAX_EVENT_BODY} bytes");
                return json_error(StatusCode::PAYLOAD_TOO_LARGE, &msg, serde_json::json!({}));
            }
            Ok(Err(ReadError::Budget(e))) => return busy(&format!("{e}; retry later")),
            Ok(Err(ReadError::Read(e))) => {
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
        let sizes = events.iter().zip(&plans).flat_map(|(e, t)| std::iter::repeat_n(event_size(e), t.len()));
        let permits = match self.delivery_slots(namespace, sizes.collect()) {
            Ok(p) => p,
            Err(why) => return busy(&why),
        };
        drop(intake);
        let accepted = events.len();
        let mut permits = permits.into_iter();
        let mut matched = 0;
        for (event, targets) in events.into_iter().zip(plans) {
            self.count_broker_event(namespace);
            self.types.record(namespace, &event);
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

    /// A delivery slot per size: each a slot of the node and of the namespace's share, holding the event's bytes
    /// in the memory budget; all or none, else why not.
    fn delivery_slots(&self, namespace: &str, sizes: Vec<u64>) -> Result<Vec<Slot>, String> {
        let share = {
            let mut shares = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
            if shares.len() > 1024 {
                // Forget namespaces with nothing in flight, so the map stays as small as the busy set.
                shares.retain(|_, s| s.available_permits() < self.namespace_slots);
            }
            shares
                .entry(namespace.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.namespace_slots)))
                .clone()
        };
        let mut slots = Vec::with_capacity(sizes.len());
        for size in sizes {
            let Ok(ns) = share.clone().try_acquire_owned() else {
                return Err(format!(
                    "namespace `{namespace}` holds its share of the node's event deliveries ({}); retry later",
                    self.namespace_slots
                ));
            };
            let Ok(node) = self.slots.clone().try_acquire_owned() else {
                return Err("too many event deliveries in progress on this node; retry later".into());
            };
            let mut memory = self.budget.reservation(None);
            memory.try_grow(size).map_err(|e| format!("{e}; retry later"))?;
            slots.push(Slot { _node: node, _namespace: ns, _memory: memory });
        }
        Ok(slots)
    }

    fn count_broker_event(&self, namespace: &str) {
        let labels = crate::metrics::NamespaceLabels { namespace: namespace.into() };
        self.metrics.broker_events.get_or_create(&labels).inc();
    }

    fn spawn_delivery(self: &Arc<Self>, target: Target, event: Event, permit: Option<Slot>) {
        let bus = self.clone();
        tokio::spawn(async move {
            let _slot = permit;
            bus.deliver(&target, event).await
        });
    }

    /// Delivers an event to every matching broker trigger of `namespace`, all or none; how many, or why not.
    fn dispatch(self: &Arc<Self>, namespace: &str, event: Event) -> Result<usize, String> {
        self.types.record(namespace, &event);
        let targets = self.matching(namespace, &event);
        let slots = self.delivery_slots(namespace, vec![event_size(&event); targets.len()])?;
        self.count_broker_event(namespace);
        let n = targets.len();
        for (target, slot) in targets.into_iter().zip(slots) {
            self.spawn_delivery(target, event.clone(), Some(slot));
        }
        Ok(n)
    }

    /// Delivers an event to every matching broker trigger of `namespace` (a reply); returns how many.
    pub(crate) fn publish(self: &Arc<Self>, namespace: &str, event: Event) -> usize {
        let id = event.id().to_string();
        self.dispatch(namespace, event).unwrap_or_else(|why| {
            let labels = crate::metrics::NamespaceLabels { namespace: namespace.into() };
            self.metrics.replies_dropped.get_or_create(&labels).inc();
            tracing::error!(namespace, id, "reply event dropped: {why}");
            0
        })
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

impl crate::egress::Publish for EventBus {
    fn publish_emitted(
        self: Arc<Self>,
        namespace: &str,
        headers: &http::HeaderMap,
        body: Bytes,
        hops: u32,
    ) -> Result<usize, (u16, String)> {
        let event = cloudevents::binding::http::to_event(headers, body.to_vec())
            .map_err(|e| (400, format!("not a CloudEvent: {e} (send ce-specversion, ce-id, ce-source, ce-type)")))?;
        // One hop after the event (or request) the function was serving: a function emitting what triggers it
        // stops like a reply loop.
        let mut event = entering(event);
        let hops = hops.saturating_add(1);
        if hops > MAX_HOPS {
            return Err((508, format!("not published: {MAX_HOPS} events in a row led to it (a loop?)")));
        }
        event.set_extension(HOPS, i64::from(hops));
        self.dispatch(namespace, event).map_err(|e| (503, e))
    }
}

mod props;
