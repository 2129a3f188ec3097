//! Delivering one event to one trigger of a function: in-process attempts (each stopping the guest at the
//! per-attempt timeout, backoff in between) until a 2xx; then the dead-letter sink, with extensions saying why.
//! A CloudEvent in a 2xx reply is published to the broker. A dropped event is logged and counted, never silent.

use super::{EventBus, to_request};
use crate::executor::ResponseBody;
use crate::metrics::EventLabels;
use crate::revision::Revision;
use base64::Engine;
use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use wasmfn_api::{Delivery, FunctionKey, Trigger};

/// Largest reply event read back from a function.
const MAX_REPLY: usize = 10 << 20;
/// Longest error body carried into a dead letter (Knative's limit).
const MAX_ERROR_DATA: usize = 1024;
/// Time a dead-letter sink gets to take the event.
const SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an event goes: one trigger of one function.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) namespace: String,
    pub(crate) function: String,
    pub(crate) trigger: String,
    pub(crate) delivery: Delivery,
}

impl Target {
    pub(crate) fn new(key: &FunctionKey, trigger: &Trigger) -> Target {
        Target {
            namespace: key.namespace.clone(),
            function: key.name.clone(),
            trigger: trigger.name.clone(),
            delivery: trigger.delivery.clone(),
        }
    }

    pub(crate) fn key(&self) -> FunctionKey {
        FunctionKey::new(&self.namespace, &self.function)
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
    /// Every attempt failed and the trigger has no sink: given up, logged and counted.
    Dropped,
    /// Every attempt failed and the sink failed too: logged and counted; a source that can redeliver should.
    SinkFailed,
    /// The function or its trigger went away mid-delivery: not this node's event any more.
    Abandoned,
}

/// Why an attempt failed: the status (504 for no answer in time) and the start of the answer.
struct Failure {
    code: u16,
    data: Bytes,
}

impl Failure {
    fn new(code: u16, data: impl Into<Bytes>) -> Failure {
        Failure { code, data: data.into() }
    }

    /// Knative retries these; another answer (a 400, a 413) would fail again the same way.
    fn retryable(&self) -> bool {
        self.code >= 500 || matches!(self.code, 404 | 408 | 409 | 429)
    }

    fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.data)
    }
}

impl EventBus {
    /// A revision of `ns/name` for one delivery, by the function's traffic split.
    fn pick(&self, key: &FunctionKey) -> Result<Arc<Revision>, String> {
        let table = self.table.load();
        let service = table.get(key).ok_or_else(|| format!("function {key} does not exist"))?;
        Ok(service.pick().clone())
    }

    /// Whether the function still has the trigger (a delivery in progress stops when it is removed).
    fn has_trigger(&self, target: &Target) -> bool {
        let table = self.table.load();
        table
            .get(&target.key())
            .is_some_and(|s| s.state.function.spec.triggers.iter().any(|t| t.name == target.trigger))
    }

    /// Delivers `event` to `target`, retrying as its delivery spec says.
    pub(crate) async fn deliver(self: &Arc<Self>, target: &Target, event: Event) -> Outcome {
        let m = &self.metrics;
        let labels = target.labels();
        m.events_received.get_or_create(&labels).inc();
        let attempts = target.delivery.retry.saturating_add(1);
        let mut failure = Failure::new(500, "");
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(target.delivery.backoff(attempt)).await;
                if !self.has_trigger(target) {
                    tracing::info!(function = %target.key(), trigger = %target.trigger, id = event.id(), "delivery abandoned: the trigger was removed");
                    return Outcome::Abandoned;
                }
                m.events_retried.get_or_create(&labels).inc();
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
                    let retry = f.retryable();
                    failure = f;
                    if !retry {
                        break;
                    }
                }
            }
        }
        self.dead_letter(target, event, failure, attempts).await
    }

    /// One attempt: the function's answer, and the CloudEvent it replied with, if any.
    async fn attempt(&self, target: &Target, event: &Event, attempt: u32) -> Result<Option<Event>, Failure> {
        let revision = self.pick(&target.key()).map_err(|e| Failure::new(404, e))?;
        let mut req = to_request(event.clone()).map_err(|e| Failure::new(400, e))?;
        req.headers_mut().insert("x-wasmfn-delivery-attempt", attempt.into());
        // The guest is stopped at the attempt's timeout (504), so a retry never runs next to a late attempt.
        let resp = self.executor.run(&revision, req, 0, target.delivery.timeout).await;
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            let data = read_body(body, MAX_ERROR_DATA, true).await.unwrap_or_default();
            return Err(Failure { code: parts.status.as_u16(), data });
        }
        let ct = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !parts.headers.contains_key("ce-specversion") && !ct.starts_with("application/cloudevents+json") {
            // Delivered; the body is not needed (dropping it ends the response).
            return Ok(None);
        }
        let parsed = match read_body(body, MAX_REPLY, false).await {
            Ok(body) => cloudevents::binding::http::to_event(&parts.headers, body.to_vec()).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match parsed {
            Ok(reply) => Ok(Some(reply)),
            Err(e) => {
                // The function took the event; only its reply is lost.
                tracing::warn!(function = %target.key(), "the reply looks like a CloudEvent but cannot be read: {e}");
                Ok(None)
            }
        }
    }

    async fn dead_letter(&self, target: &Target, mut event: Event, failure: Failure, attempts: u32) -> Outcome {
        let m = &self.metrics;
        let labels = target.labels();
        let (key, id) = (target.key(), event.id().to_string());
        let Some(sink) = &target.delivery.dead_letter_sink else {
            m.events_dropped.get_or_create(&labels).inc();
            tracing::error!(function = %key, trigger = %target.trigger, %id, code = failure.code, attempts,
                "event dropped: every attempt failed and the trigger has no deadLetterSink: {}", failure.text());
            return Outcome::Dropped;
        };
        // Knative's extensions, so tools that read Knative dead letters read these.
        let data = base64::engine::general_purpose::STANDARD.encode(&failure.data);
        event.set_extension("knativeerrordest", format!("function:{key}"));
        event.set_extension("knativeerrorcode", failure.code as i64);
        event.set_extension("knativeerrordata", data);
        event.set_extension("wasmfntrigger", target.trigger.clone());
        event.set_extension("wasmfnattempts", attempts as i64);
        let send = async {
            if let Some(f) = &sink.function {
                self.dead_letter_to_function(&target.namespace, f, event).await
            } else if let Some(url) = &sink.url {
                self.dead_letter_to_url(url, event).await
            } else if let Some(n) = &sink.nats {
                self.publish_nats(&n.url, &n.subject, &event).await
            } else {
                Err("the deadLetterSink names no destination".into())
            }
        };
        let sent = tokio::time::timeout(SINK_TIMEOUT, send)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {SINK_TIMEOUT:?}")));
        match sent {
            Ok(()) => {
                m.events_dead_lettered.get_or_create(&labels).inc();
                tracing::warn!(function = %key, trigger = %target.trigger, %id, code = failure.code, attempts,
                    "event dead-lettered: {}", failure.text());
                Outcome::DeadLettered
            }
            Err(e) => {
                m.events_dropped.get_or_create(&labels).inc();
                tracing::error!(function = %key, trigger = %target.trigger, %id, "event not dead-lettered: the deadLetterSink failed: {e}");
                Outcome::SinkFailed
            }
        }
    }

    async fn dead_letter_to_function(&self, namespace: &str, function: &str, event: Event) -> Result<(), String> {
        let revision = self.pick(&FunctionKey::new(namespace, function))?;
        let resp = self.executor.run(&revision, to_request(event)?, 0, None).await;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("{namespace}/{function} answered {}", resp.status()))
        }
    }

    /// POSTs the event in binary mode; the destination must pass the node's egress policy, like guests'. The
    /// name is resolved once and the connection pinned to the checked address; redirects are not followed (a
    /// 3xx is a failed delivery), so no hop escapes the check.
    async fn dead_letter_to_url(&self, url: &str, event: Event) -> Result<(), String> {
        let parsed: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let host = parsed.host().ok_or_else(|| format!("{url} has no host"))?;
        let port = parsed.port_u16().unwrap_or(if parsed.scheme_str() == Some("https") { 443 } else { 80 });
        let addrs = self.egress.resolve(host, port).await.map_err(|e| format!("{url}: {e}"))?;
        let (parts, body) = to_request(event)?.into_parts();
        let body: Bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(host.trim_matches(['[', ']']), addrs[0])
            .build()
            .map_err(|e| e.to_string())?;
        let resp =
            client.post(url).headers(parts.headers).body(body).send().await.map_err(|e| format!("{url}: {e}"))?;
        if resp.status().is_success() { Ok(()) } else { Err(format!("{url} answered {}", resp.status())) }
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

/// Reads a response body up to `max` bytes; with `truncate`, the first `max` bytes of a longer one.
async fn read_body(mut body: ResponseBody, max: usize, truncate: bool) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                if truncate {
                    out.extend_from_slice(&data[..max - out.len()]);
                    break;
                }
                return Err(format!("the response is larger than {max} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}
