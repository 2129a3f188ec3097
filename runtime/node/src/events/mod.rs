//! Eventing: CloudEvents over HTTP into functions' `wasi:http` handlers.
//!
//! - The broker (`broker.rs`): `POST /_events/<namespace>` on the ingress takes binary, structured and batched
//!   events and delivers each to the functions whose broker triggers' filters match it (filtered before
//!   dispatch); replies are published back through it.
//! - Sources (`sources.rs`): cron schedules and NATS JetStream subjects, one task per trigger.
//! - Delivery (`delivery.rs`): in-process calls with retries, backoff, a per-attempt timeout and a dead-letter
//!   sink; a reply that is a CloudEvent goes back to the broker (Knative's reply semantics).

mod broker;
mod delivery;
mod sources;
pub(crate) mod types;

use crate::budget::MemoryBudget;
use crate::egress::EgressPolicy;
use crate::executor::{Executor, RequestBody};
use crate::metrics::Metrics;
use crate::table::FunctionTable;
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http::Request;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The broker's path on the ingress: `/_events/<namespace>` (no function or namespace starts with `_`).
pub(crate) const BROKER_PREFIX: &str = "/_events/";
/// The event bus: the broker's deliveries in progress (capped, so a flood is refused rather than buffered;
/// each namespace holding at most its fair share of the slots; each event's bytes held in the node's memory
/// budget), the event source tasks and the NATS connections they share. Delivers through the executor, like
/// the HTTP ingress.
pub(crate) struct EventBus {
    table: Arc<FunctionTable>,
    executor: Arc<Executor>,
    metrics: Metrics,
    slots: Arc<Semaphore>,
    /// Delivery slots one namespace may hold, and each namespace's semaphore of them.
    namespace_slots: usize,
    namespaces: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
    budget: MemoryBudget,
    /// NATS connections by server URL.
    nats: tokio::sync::Mutex<HashMap<String, async_nats::Client>>,
    /// Where dead-letter sinks and NATS servers may be: the guests' egress policy.
    egress: EgressPolicy,
    /// The event types each namespace's broker has seen.
    pub(crate) types: types::EventTypes,
}

impl EventBus {
    /// A bus taking `limits.deliveries` deliveries at once, a namespace at most `limits.share` percent of them.
    pub(crate) fn new(
        table: Arc<FunctionTable>,
        executor: Arc<Executor>,
        metrics: Metrics,
        egress: EgressPolicy,
        limits: BusLimits,
    ) -> Self {
        let namespace_slots = (limits.deliveries * usize::from(limits.share.clamp(1, 100)) / 100).max(1);
        EventBus {
            table,
            executor,
            metrics,
            slots: Arc::new(Semaphore::new(limits.deliveries)),
            namespace_slots,
            namespaces: std::sync::Mutex::default(),
            budget: limits.budget,
            nats: tokio::sync::Mutex::default(),
            egress,
            types: types::EventTypes::new(limits.sensitive_types),
        }
    }
}

/// What the event bus may hold.
pub(crate) struct BusLimits {
    /// Deliveries in progress at once over all namespaces.
    pub(crate) deliveries: usize,
    /// Percent of them one namespace may hold.
    pub(crate) share: u8,
    /// The node's memory budget, which holds every accepted event's bytes until its deliveries end.
    pub(crate) budget: MemoryBudget,
    /// Event types the type registry never samples.
    pub(crate) sensitive_types: Vec<String>,
}

/// The extension counting how many function replies led to an event. Only the node sets it.
pub(crate) const HOPS: &str = "wasmfnhops";

/// An event entering from outside the node (the broker's HTTP intake, a NATS message) starts with no hops,
/// whatever it claims: a forged count must neither lengthen nor shorten a reply chain.
pub(crate) fn entering(mut event: Event) -> Event {
    event.remove_extension(HOPS);
    event
}

/// The hop count the node set on `event` (0 when absent; never negative).
pub(crate) fn hops(event: &Event) -> u32 {
    attribute(event, HOPS).and_then(|h| h.parse::<u32>().ok()).unwrap_or(0)
}

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

/// The event as a request to a function: binary mode, or structured mode (`application/cloudevents+json`) when an
/// attribute or extension is not printable ASCII, which binary mode's headers cannot carry as text.
fn to_request(event: Event) -> Result<Request<RequestBody>, String> {
    let encode = |e: &dyn std::fmt::Display| format!("cannot encode the event: {e}");
    let printable = |v: &cloudevents::event::AttributeValue| v.to_string().bytes().all(|b| (b' '..=b'~').contains(&b));
    let req: Request<Option<Vec<u8>>> = if event.iter().all(|(_, v)| printable(&v)) {
        Request::try_from(event).map_err(|e| encode(&e))?
    } else {
        let json = serde_json::to_vec(&event).map_err(|e| encode(&e))?;
        let ct = http::HeaderValue::from_static("application/cloudevents+json");
        Request::builder().header(http::header::CONTENT_TYPE, ct).body(Some(json)).map_err(|e| encode(&e))?
    };
    let (mut parts, body) = req.into_parts();
    parts.method = http::Method::POST;
    parts.uri = http::Uri::from_static("/");
    let body = RequestBody::Buffered(http_body_util::Full::new(Bytes::from(body.unwrap_or_default())));
    Ok(Request::from_parts(parts, body))
}
