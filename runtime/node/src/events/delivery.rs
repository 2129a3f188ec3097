//! Delivering one event to one trigger of a function: in-process attempts (each with a timeout, backoff in
//! between) until a 2xx; then the dead-letter sink, with extensions saying why. A CloudEvent in a 2xx reply is
//! published to the broker. A dropped event is logged and counted, never silent.

use super::to_request;
use crate::metrics::EventLabels;
use crate::node::Node;
use base64::Engine;
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http_body_util::BodyExt;
use std::time::Duration;
use wasmfn_api::{Delivery, Trigger};

/// Largest reply body read back from a function.
const MAX_REPLY: usize = 10 << 20;
/// Longest error body carried into a dead letter (Knative's limit).
const MAX_ERROR_DATA: usize = 1024;

/// Where an event goes: one trigger of one function.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) namespace: String,
    pub(crate) function: String,
    pub(crate) trigger: String,
    pub(crate) delivery: Delivery,
}

impl Target {
    pub(crate) fn new(key: &str, trigger: &Trigger) -> Target {
        let (namespace, function) = key.split_once('/').unwrap_or(("default", key));
        Target {
            namespace: namespace.into(),
            function: function.into(),
            trigger: trigger.name.clone(),
            delivery: trigger.delivery.clone(),
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.function)
    }

    pub(crate) fn labels(&self) -> EventLabels {
        EventLabels {
            namespace: self.namespace.clone(),
            function: self.function.clone(),
            trigger: self.trigger.clone(),
        }
    }
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The function answered 2xx.
    Delivered,
    /// Every attempt failed; the dead-letter sink took the event.
    DeadLettered,
    /// Every attempt failed and there was no sink (or it failed too).
    Dropped,
}

/// Why an attempt failed: the status (500 for no answer) and what the function said.
struct Failure {
    code: u16,
    data: String,
}

impl Node {
    /// Delivers `event` to `target`, retrying as its delivery spec says.
    pub(crate) async fn deliver(&self, target: &Target, event: Event) -> Outcome {
        let m = &self.shared.metrics;
        let labels = target.labels();
        m.events_received.get_or_create(&labels).inc();
        let attempts = 1 + target.delivery.retry;
        let mut failure = Failure { code: 500, data: String::new() };
        for attempt in 1..=attempts {
            if attempt > 1 {
                m.events_retried.get_or_create(&labels).inc();
                tokio::time::sleep(target.delivery.backoff(attempt)).await;
            }
            match self.attempt(target, &event, attempt).await {
                Ok(reply) => {
                    m.events_delivered.get_or_create(&labels).inc();
                    if let Some(reply) = reply {
                        self.publish_reply(&target.namespace, reply, &event);
                    }
                    return Outcome::Delivered;
                }
                Err(f) => {
                    tracing::debug!(function = %target.key(), trigger = %target.trigger, id = event.id(), attempt, code = f.code, "delivery attempt failed");
                    failure = f;
                }
            }
        }
        self.dead_letter(target, event, failure, attempts).await
    }

    /// One attempt: the function's answer, and the CloudEvent it replied with, if any.
    async fn attempt(&self, target: &Target, event: &Event, attempt: u32) -> Result<Option<Event>, Failure> {
        let revision = {
            let table = self.shared.table.load();
            let Some(service) = table.functions.get(&target.key()) else {
                return Err(Failure { code: 404, data: format!("function {} does not exist", target.key()) });
            };
            service.pick().clone()
        };
        let timeout = target.delivery.timeout.unwrap_or(revision.function.spec.limits.timeout);
        let mut req = to_request(event.clone()).map_err(|data| Failure { code: 400, data })?;
        req.headers_mut().insert("x-wasmfn-delivery-attempt", attempt.into());
        let call = async {
            let resp = crate::ingress::run(self, &revision, req, 0).await;
            let (parts, body) = resp.into_parts();
            (parts, read_body(body, MAX_REPLY).await)
        };
        let (parts, body) = match tokio::time::timeout(timeout, call).await {
            Ok(x) => x,
            Err(_) => {
                let t = humantime::format_duration(timeout);
                return Err(Failure { code: 504, data: format!("no answer within the delivery timeout of {t}") });
            }
        };
        let body = body.map_err(|e| Failure { code: 502, data: format!("the response failed: {e}") })?;
        if !parts.status.is_success() {
            let data = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_DATA)]).into_owned();
            return Err(Failure { code: parts.status.as_u16(), data });
        }
        let ct = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !parts.headers.contains_key("ce-specversion") && !ct.starts_with("application/cloudevents+json") {
            return Ok(None);
        }
        match cloudevents::binding::http::to_event(&parts.headers, body.to_vec()) {
            Ok(reply) => Ok(Some(reply)),
            Err(e) => {
                tracing::warn!(function = %target.key(), "the reply looks like a CloudEvent but is not one: {e}");
                Ok(None)
            }
        }
    }

    async fn dead_letter(&self, target: &Target, mut event: Event, failure: Failure, attempts: u32) -> Outcome {
        let m = &self.shared.metrics;
        let labels = target.labels();
        let (key, id) = (target.key(), event.id().to_string());
        let Some(sink) = &target.delivery.dead_letter_sink else {
            m.events_dropped.get_or_create(&labels).inc();
            tracing::error!(function = %key, trigger = %target.trigger, %id, code = failure.code, attempts,
                "event dropped: every attempt failed and the trigger has no deadLetterSink: {}", failure.data);
            return Outcome::Dropped;
        };
        // Knative's extensions, so tools that read Knative dead letters read these.
        let data = base64::engine::general_purpose::STANDARD.encode(failure.data.as_bytes());
        event.set_extension("knativeerrordest", format!("function:{key}"));
        event.set_extension("knativeerrorcode", failure.code as i64);
        event.set_extension("knativeerrordata", data);
        event.set_extension("wasmfntrigger", target.trigger.clone());
        event.set_extension("wasmfnattempts", attempts as i64);
        let sent = if let Some(f) = &sink.function {
            self.dead_letter_to_function(&target.namespace, f, event).await
        } else if let Some(url) = &sink.url {
            dead_letter_to_url(url, event).await
        } else if let Some(n) = &sink.nats {
            self.publish_nats(&n.url, &n.subject, &event).await
        } else {
            Err("the deadLetterSink names no destination".into())
        };
        match sent {
            Ok(()) => {
                m.events_dead_lettered.get_or_create(&labels).inc();
                tracing::warn!(function = %key, trigger = %target.trigger, %id, code = failure.code, attempts,
                    "event dead-lettered: {}", failure.data);
                Outcome::DeadLettered
            }
            Err(e) => {
                m.events_dropped.get_or_create(&labels).inc();
                tracing::error!(function = %key, trigger = %target.trigger, %id, "event dropped: the deadLetterSink failed: {e}");
                Outcome::Dropped
            }
        }
    }

    async fn dead_letter_to_function(&self, namespace: &str, function: &str, event: Event) -> Result<(), String> {
        let revision = {
            let table = self.shared.table.load();
            let s = table
                .functions
                .get(&format!("{namespace}/{function}"))
                .ok_or_else(|| format!("function {namespace}/{function} does not exist"))?;
            s.pick().clone()
        };
        let resp = crate::ingress::run(self, &revision, to_request(event)?, 0).await;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("{namespace}/{function} answered {}", resp.status()))
        }
    }

    /// Publishes an event in structured mode on a NATS subject, connecting on first use.
    pub(crate) async fn publish_nats(&self, url: &str, subject: &str, event: &Event) -> Result<(), String> {
        let client = self.nats(url).await?;
        let json = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("content-type", "application/cloudevents+json");
        client.publish_with_headers(subject.to_string(), headers, json.into()).await.map_err(|e| e.to_string())?;
        client.flush().await.map_err(|e| e.to_string())
    }
}

/// Reads a response body up to `max` bytes.
async fn read_body(mut body: crate::ingress::ResponseBody, max: usize) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(format!("the response is larger than {max} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

async fn dead_letter_to_url(url: &str, event: Event) -> Result<(), String> {
    let (parts, body) = to_request(event)?.into_parts();
    let body: Bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let resp = client.post(url).headers(parts.headers).body(body).send().await.map_err(|e| format!("{url}: {e}"))?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("{url} answered {}", resp.status())) }
}
