//! Event sources: one task per cron or NATS trigger, started, replaced and stopped as the table changes.

use super::EventBus;
use super::delivery::{Outcome, Target};
use chrono::Utc;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmfn_api::{FunctionKey, NatsSource, Trigger};

/// A NATS message may stay unacknowledged this long before JetStream redelivers it; a delivery in progress
/// extends it, so a message is redelivered this long after a crash.
const ACK_WAIT: Duration = Duration::from_secs(5);
/// Messages of one NATS trigger delivered at once.
const NATS_CONCURRENCY: usize = 32;

/// A source task, stopped when dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl EventBus {
    /// Keeps one task per cron and NATS trigger in the table until the node stops.
    pub(crate) async fn run_sources(self: Arc<Self>) {
        let mut changed = self.table.subscribe();
        let mut running: HashMap<String, (Trigger, Task)> = HashMap::new();
        loop {
            let table = self.table.snapshot();
            let mut want: HashMap<String, (FunctionKey, Trigger)> = HashMap::new();
            for (key, service) in &table.functions {
                for t in service.state.function.spec.triggers.iter().filter(|t| t.cron.is_some() || t.nats.is_some()) {
                    want.insert(format!("{key}#{}", t.name), (key.clone(), t.clone()));
                }
            }
            // A changed or removed trigger stops its task (dropping it aborts it).
            running.retain(|id, (t, _)| want.get(id).is_some_and(|(_, w)| w == t));
            for (id, (key, trigger)) in want {
                if running.contains_key(&id) {
                    continue;
                }
                let bus = self.clone();
                let t = trigger.clone();
                let task = if trigger.cron.is_some() {
                    tokio::spawn(async move { bus.run_cron(key, t).await })
                } else {
                    tokio::spawn(async move { bus.run_nats(key, t).await })
                };
                tracing::info!(source = %id, "event source started");
                running.insert(id, (trigger, Task(task)));
            }
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    async fn run_cron(self: Arc<Self>, key: FunctionKey, trigger: Trigger) {
        let Some(c) = &trigger.cron else { return };
        let (cron, tz) = match wasmfn_api::parse_schedule(&c.schedule, c.timezone.as_deref()) {
            Ok(x) => x,
            Err(e) => return tracing::error!(function = %key, trigger = %trigger.name, "{e}"),
        };
        let target = Target::new(&key, &trigger);
        let source = format!(
            "/apis/wasmfn.dev/v1alpha1/namespaces/{}/functions/{}/triggers/{}",
            target.namespace, target.function, trigger.name
        );
        let busy = Arc::new(AtomicBool::new(false));
        let mut last = Utc::now().with_timezone(&tz);
        loop {
            // Strictly after the last run: a timer that wakes a little early does not fire the same run twice.
            let from = Utc::now().with_timezone(&tz).max(last);
            let next = match cron.find_next_occurrence(&from, false) {
                Ok(n) => n,
                Err(e) => return tracing::error!(function = %key, trigger = %trigger.name, "no next run: {e}"),
            };
            let wait = (next.with_timezone(&Utc) - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            last = next;
            if !c.allow_overlap && busy.load(Ordering::Acquire) {
                self.metrics.events_skipped.get_or_create(&target.labels()).inc();
                tracing::warn!(function = %key, trigger = %trigger.name, "cron run skipped: the previous one is still being delivered (allowOverlap: false)");
                continue;
            }
            let mut event = EventBuilderV10::new()
                .id(uuid::Uuid::new_v4().to_string())
                .source(source.clone())
                .ty("dev.wasmfn.cron")
                .time(next.with_timezone(&Utc));
            if let Some(data) = &c.data {
                let ct = c.content_type.clone().unwrap_or_else(|| "application/json".into());
                event = event.data(ct, data.clone());
            }
            let event = match event.build() {
                Ok(e) => e,
                Err(e) => {
                    return tracing::error!(function = %key, trigger = %trigger.name, "cannot build the cron event: {e}");
                }
            };
            busy.store(true, Ordering::Release);
            let (bus, target, busy) = (self.clone(), target.clone(), busy.clone());
            tokio::spawn(async move {
                bus.deliver(&target, event).await;
                busy.store(false, Ordering::Release);
            });
        }
    }

    async fn run_nats(self: Arc<Self>, key: FunctionKey, trigger: Trigger) {
        let Some(n) = &trigger.nats else { return };
        let target = Target::new(&key, &trigger);
        // A queue group is shared within the namespace only.
        let durable = match &n.queue_group {
            Some(group) => format!("wasmfn-{}-{group}", target.namespace),
            None => format!("wasmfn-{}-{}-{}", target.namespace, target.function, trigger.name),
        };
        // Across reconnects: deliveries of an earlier connection still count.
        let limit = Arc::new(tokio::sync::Semaphore::new(NATS_CONCURRENCY));
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.consume(n, &durable, &target, &limit).await {
                Ok(()) => {
                    backoff = Duration::from_millis(200);
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => {
                    tracing::warn!(function = %key, trigger = %trigger.name, "NATS source: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Reads the durable consumer until the connection ends; acknowledges each message once delivered (or
    /// dead-lettered), so a node that dies mid-delivery leaves it to be redelivered.
    async fn consume(
        self: &Arc<Self>,
        n: &NatsSource,
        durable: &str,
        target: &Target,
        limit: &Arc<tokio::sync::Semaphore>,
    ) -> Result<(), String> {
        use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
        let client = self.nats(&n.url).await?;
        let js = jetstream::new(client);
        let config = stream::Config { name: n.stream.clone(), subjects: vec![n.subject.clone()], ..Default::default() };
        let s = js.get_or_create_stream(config).await.map_err(|e| format!("stream {}: {e}", n.stream))?;
        let consumer = s
            .get_or_create_consumer(
                durable,
                pull::Config {
                    durable_name: Some(durable.to_string()),
                    filter_subject: n.subject.clone(),
                    ack_wait: ACK_WAIT,
                    // JetStream hands out no more than the node works on, so none waits unacknowledged.
                    max_ack_pending: NATS_CONCURRENCY as i64,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("consumer {durable}: {e}"))?;
        // A durable consumer keeps the filter it was created with (nats-server 2.9 cannot update it here).
        let filter = &consumer.cached_info().config.filter_subject;
        if *filter != n.subject {
            return Err(format!(
                "the durable consumer {durable} of stream {} reads `{filter}`, not `{}`; delete it (`nats consumer rm {} {durable}`) or rename the trigger",
                n.stream, n.subject, n.stream
            ));
        }
        tracing::info!(function = %target.key(), stream = %n.stream, consumer = durable, "reading NATS JetStream");
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(NATS_CONCURRENCY)
            .messages()
            .await
            .map_err(|e| format!("consumer {durable}: {e}"))?;
        while let Some(msg) = messages.next().await {
            let msg = Arc::new(msg.map_err(|e| format!("reading {durable}: {e}"))?);
            let Ok(permit) = limit.clone().acquire_owned().await else { break };
            let event = nats_event(&msg, &n.stream);
            let (bus, target) = (self.clone(), target.clone());
            tokio::spawn(async move {
                let _permit = permit;
                // Tells JetStream the message is still being worked on, so it is not redelivered meanwhile.
                // Stopped when dropped, whatever ends the delivery.
                let progress = {
                    let msg = msg.clone();
                    Task(tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(ACK_WAIT / 2).await;
                            let _ = msg.ack_with(AckKind::Progress).await;
                        }
                    }))
                };
                let outcome = bus.deliver(&target, event).await;
                drop(progress);
                let ack = match outcome {
                    Outcome::Delivered | Outcome::DeadLettered => msg.double_ack().await,
                    // Given up on, logged and counted: JetStream must not redeliver it forever.
                    Outcome::Dropped => msg.ack_with(AckKind::Term).await,
                    // The sink failed, or the trigger left this node: another try (or consumer) may do better.
                    Outcome::SinkFailed | Outcome::Abandoned => {
                        msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await
                    }
                };
                if let Err(e) = ack {
                    tracing::warn!(function = %target.key(), "NATS ack failed (the message will be redelivered): {e}");
                }
            });
        }
        Ok(())
    }

    /// A NATS client per server URL, connected on first use (it reconnects by itself afterwards).
    pub(crate) async fn nats(&self, url: &str) -> Result<async_nats::Client, String> {
        if let Some(c) = self.nats.lock().await.get(url) {
            return Ok(c.clone());
        }
        // Servers are named by tenants (triggers, sinks): they pass the egress policy like guests' requests,
        // and a plain `nats://` server is dialled at the address that passed.
        let mut dial = Vec::new();
        for server in url.split(',') {
            let parsed: http::Uri = server.trim().parse().map_err(|e| format!("{server}: {e}"))?;
            let host = parsed.host().ok_or_else(|| format!("{server} has no host"))?;
            let addrs = self
                .egress
                .resolve(host, parsed.port_u16().unwrap_or(4222))
                .await
                .map_err(|e| format!("{server}: {e}"))?;
            dial.push(match parsed.scheme_str() {
                None | Some("nats") => format!("nats://{}", addrs[0]),
                Some(_) => server.trim().to_string(),
            });
        }
        // Connected without the lock, so a server that is down does not hold up the others.
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(dial.join(","))
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        Ok(self.nats.lock().await.entry(url.to_string()).or_insert(client).clone())
    }
}

/// A JetStream message as a CloudEvent: as sent when it is one (binary headers or structured JSON), else
/// wrapped as `dev.wasmfn.nats.message` with the payload as data.
fn nats_event(msg: &async_nats::jetstream::Message, stream: &str) -> Event {
    let headers: http::HeaderMap = msg
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .filter_map(|(k, vs)| {
            let name = http::HeaderName::from_bytes(AsRef::<str>::as_ref(k).as_bytes()).ok()?;
            let value = http::HeaderValue::from_str(vs.first()?.as_str()).ok()?;
            Some((name, value))
        })
        .collect();
    if headers.contains_key("ce-specversion")
        || headers.get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/cloudevents+json"))
    {
        match cloudevents::binding::http::to_event(&headers, msg.payload.to_vec()) {
            Ok(e) => return super::entering(e),
            Err(e) => {
                tracing::warn!(subject = %msg.subject, "a NATS message looks like a CloudEvent but is not one ({e}); wrapping it")
            }
        }
    }
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
    let ct =
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream").to_string();
    let built = EventBuilderV10::new()
        .id(format!("{stream}-{seq}"))
        .source(format!("/nats/streams/{stream}"))
        .ty("dev.wasmfn.nats.message")
        .subject(msg.subject.to_string())
        .time(Utc::now())
        .data(ct, msg.payload.to_vec())
        .build();
    built.unwrap_or_else(|_| Event::default())
}
