//! Events (`spec.triggers`): CloudEvents delivered over HTTP into the function's `wasi:http` handler, from the
//! namespace's broker (filtered, like a Knative Trigger), on a cron schedule (like a PingSource) or from a NATS
//! JetStream subject, with retries and a dead-letter sink.

use crate::DURATION_PATTERN;
use crate::ManifestError;
use crate::traffic::is_dns_label;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One source of events for the function. Exactly one of `events`, `cron` and `nats` is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    /// Unique among the function's triggers (a DNS label); names the trigger in metrics and dead letters.
    pub name: String,
    /// Events posted to the namespace's broker that pass the filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<BrokerTrigger>,
    /// An event on a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronSource>,
    /// Messages of a NATS JetStream subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSource>,
    /// Retries, backoff, per-attempt timeout and the dead-letter sink.
    #[serde(default)]
    pub delivery: Delivery,
}

/// Events from the broker: all of them, or those that pass `filter`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerTrigger {
    /// Which events; none means every event of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// A filter on CloudEvents attributes and extensions, as in Knative's trigger `filters`. In YAML, a map with one
/// key: `{exact: {type: x}}`, `{all: [...]}`, `{not: {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "FilterMap", into = "FilterMap")]
pub enum Filter {
    /// Every attribute equals its value.
    Exact(BTreeMap<String, String>),
    /// Every attribute starts with its value.
    Prefix(BTreeMap<String, String>),
    /// Every attribute ends with its value.
    Suffix(BTreeMap<String, String>),
    /// Every filter passes.
    All(Vec<Filter>),
    /// At least one filter passes.
    Any(Vec<Filter>),
    /// The filter does not pass.
    Not(Box<Filter>),
}

/// Levels of `all`/`any`/`not` the CRD schema spells out; deeper filters are checked by the operator and node.
const FILTER_SCHEMA_DEPTH: usize = 3;
/// Deepest nesting of `all`/`any`/`not` accepted: JSON readers (the node's table files, the cluster's API) stop
/// at 128 levels, so a deeper filter could be applied but not read back.
const MAX_FILTER_DEPTH: usize = 32;

impl JsonSchema for Filter {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Filter".into()
    }

    /// Expanded a few levels deep: a CRD schema may not refer to itself.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        fn level(depth: usize) -> serde_json::Value {
            if depth == 0 {
                return serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
            }
            let attrs = serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}});
            let list = serde_json::json!({"type": "array", "maxItems": 32, "items": level(depth - 1)});
            serde_json::json!({
                "type": "object",
                "description": "one of exact, prefix, suffix (attribute: value), all, any (lists of filters), not",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    "exact": attrs, "prefix": attrs, "suffix": attrs,
                    "all": list, "any": list, "not": level(depth - 1),
                }
            })
        }
        schemars::Schema::try_from(level(FILTER_SCHEMA_DEPTH)).expect("an object schema")
    }
}

/// The YAML/JSON shape of a [`Filter`].
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FilterMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suffix: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<Vec<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    any: Option<Vec<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not: Option<Box<Filter>>,
}

impl TryFrom<FilterMap> for Filter {
    type Error = String;
    fn try_from(m: FilterMap) -> Result<Filter, String> {
        let mut set = [
            m.exact.map(Filter::Exact),
            m.prefix.map(Filter::Prefix),
            m.suffix.map(Filter::Suffix),
            m.all.map(Filter::All),
            m.any.map(Filter::Any),
            m.not.map(Filter::Not),
        ]
        .into_iter()
        .flatten();
        match (set.next(), set.next()) {
            (Some(f), None) => Ok(f),
            _ => Err("a filter has exactly one of `exact`, `prefix`, `suffix`, `all`, `any`, `not`".into()),
        }
    }
}

impl From<Filter> for FilterMap {
    fn from(f: Filter) -> FilterMap {
        match f {
            Filter::Exact(m) => FilterMap { exact: Some(m), ..Default::default() },
            Filter::Prefix(m) => FilterMap { prefix: Some(m), ..Default::default() },
            Filter::Suffix(m) => FilterMap { suffix: Some(m), ..Default::default() },
            Filter::All(v) => FilterMap { all: Some(v), ..Default::default() },
            Filter::Any(v) => FilterMap { any: Some(v), ..Default::default() },
            Filter::Not(f) => FilterMap { not: Some(f), ..Default::default() },
        }
    }
}

impl Filter {
    /// Whether an event passes; `attr` returns an attribute or extension by name (`None` when absent, which
    /// no `exact`, `prefix` or `suffix` matches).
    pub fn matches<'a>(&self, attr: &impl Fn(&str) -> Option<std::borrow::Cow<'a, str>>) -> bool {
        let each = |m: &BTreeMap<String, String>, test: fn(&str, &str) -> bool| {
            m.iter().all(|(k, v)| attr(k).is_some_and(|a| test(&a, v)))
        };
        match self {
            Filter::Exact(m) => each(m, |a, v| a == v),
            Filter::Prefix(m) => each(m, |a, v| a.starts_with(v)),
            Filter::Suffix(m) => each(m, |a, v| a.ends_with(v)),
            Filter::All(fs) => fs.iter().all(|f| f.matches(attr)),
            Filter::Any(fs) => fs.iter().any(|f| f.matches(attr)),
            Filter::Not(f) => !f.matches(attr),
        }
    }

    fn validate(&self, at: &str, depth: usize) -> Result<(), ManifestError> {
        if depth > MAX_FILTER_DEPTH {
            return Err(ManifestError::invalid(at, format!("nests deeper than {MAX_FILTER_DEPTH} levels")));
        }
        match self {
            Filter::Exact(m) | Filter::Prefix(m) | Filter::Suffix(m) => {
                if m.is_empty() {
                    return Err(ManifestError::invalid(at, "names no attribute"));
                }
                if let Some(k) =
                    m.keys().find(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
                {
                    return Err(ManifestError::invalid(
                        at,
                        format!("`{k}` is not a CloudEvents attribute name (lowercase letters and digits)"),
                    ));
                }
                Ok(())
            }
            Filter::All(fs) | Filter::Any(fs) => {
                if fs.is_empty() {
                    return Err(ManifestError::invalid(at, "lists no filter"));
                }
                let kind = if matches!(self, Filter::All(_)) { "all" } else { "any" };
                fs.iter().enumerate().try_for_each(|(i, f)| f.validate(&format!("{at}.{kind}[{i}]"), depth + 1))
            }
            Filter::Not(f) => f.validate(&format!("{at}.not"), depth + 1),
        }
    }
}

/// A `dev.wasmfn.cron` event on a schedule, like Knative's PingSource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CronSource {
    /// A 5-field cron expression (`*/5 * * * *`), or 6 fields with seconds first; `@hourly` and the like.
    pub schedule: String,
    /// IANA time zone of the schedule (`Europe/Berlin`); UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The event's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The data's media type; `application/json` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Start a run while the previous one is still being delivered (skipped otherwise).
    #[serde(default)]
    pub allow_overlap: bool,
}

/// Messages of a NATS JetStream subject, read through a durable consumer and acknowledged only after the
/// function answered 2xx (at least once).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSource {
    /// The NATS server, `nats://host:port`.
    pub url: String,
    /// The subject (wildcards allowed).
    pub subject: String,
    /// The JetStream stream that holds the subject; created (capturing `subject`) when missing.
    pub stream: String,
    /// Nodes and functions with the same queue group share one durable consumer: each message goes to one of
    /// them. Without it, the consumer is this function's trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_group: Option<String>,
}

/// How retries wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BackoffPolicy {
    /// `backoffDelay × retry`.
    Linear,
    /// `backoffDelay × 2^retry`.
    #[default]
    Exponential,
}

/// How an event is delivered: Knative's delivery spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delivery {
    /// Attempts after the first one fails (a status other than 2xx, or no answer in time).
    #[serde(default = "Delivery::default_retry")]
    pub retry: u32,
    /// How the wait between attempts grows.
    #[serde(default)]
    pub backoff_policy: BackoffPolicy,
    /// The first wait.
    #[schemars(with = "String", regex(pattern = DURATION_PATTERN))]
    #[serde(default = "Delivery::default_backoff_delay", with = "humantime_serde")]
    pub backoff_delay: Duration,
    /// Time one attempt may take; the function's `limits.timeout` when absent.
    #[schemars(with = "Option<String>", regex(pattern = DURATION_PATTERN))]
    #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Where an event goes after the last failed attempt, with extensions saying why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Sink>,
}

impl Delivery {
    fn default_retry() -> u32 {
        10
    }
    fn default_backoff_delay() -> Duration {
        Duration::from_millis(200)
    }

    /// The wait before attempt `n` (2 for the first retry).
    /// Knative's formulas for retry `k = n - 1`: linear `backoffDelay × k`, exponential `backoffDelay × 2^k`.
    pub fn backoff(&self, n: u32) -> Duration {
        let k = n.saturating_sub(1).max(1);
        match self.backoff_policy {
            BackoffPolicy::Linear => self.backoff_delay.saturating_mul(k),
            BackoffPolicy::Exponential => self.backoff_delay.saturating_mul(1u32 << k.min(20)),
        }
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            retry: Self::default_retry(),
            backoff_policy: BackoffPolicy::default(),
            backoff_delay: Self::default_backoff_delay(),
            timeout: None,
            dead_letter_sink: None,
        }
    }
}

/// A dead-letter sink: exactly one of a function, a URL and a NATS subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sink {
    /// A function of the same namespace, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// An HTTP endpoint; the event is POSTed in binary mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A NATS subject; the event is published in structured mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSink>,
}

/// A NATS subject to publish to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSink {
    /// The NATS server, `nats://host:port`.
    pub url: String,
    /// The subject.
    pub subject: String,
}

/// Most retries accepted.
const MAX_RETRY: u32 = 100;
/// Longest accepted backoff delay and attempt timeout.
const MAX_DELAY: Duration = Duration::from_secs(3600);

fn nats_url(url: &str, at: &str) -> Result<(), ManifestError> {
    if url.starts_with("nats://") || url.starts_with("tls://") {
        Ok(())
    } else {
        Err(ManifestError::invalid(at, format!("`{url}` is not a NATS URL (nats://host:port)")))
    }
}

/// Checks a cron schedule and time zone; the message says what is wrong.
pub fn parse_schedule(schedule: &str, timezone: Option<&str>) -> Result<(croner::Cron, chrono_tz::Tz), String> {
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Optional)
        .build()
        .parse(schedule)
        .map_err(|e| format!("`{schedule}` is not a cron schedule: {e}"))?;
    let tz = match timezone {
        None => chrono_tz::UTC,
        Some(t) => t.parse().map_err(|_| format!("`{t}` is not an IANA time zone (e.g. Europe/Berlin)"))?,
    };
    Ok((cron, tz))
}

pub(crate) fn validate_triggers(triggers: &[Trigger]) -> Result<(), ManifestError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, t) in triggers.iter().enumerate() {
        let at = |f: &str| format!("spec.triggers[{i}].{f}");
        if !is_dns_label(&t.name) {
            return Err(ManifestError::invalid(at("name"), format!("`{}` is not a DNS label", t.name)));
        }
        if !names.insert(&t.name) {
            return Err(ManifestError::invalid(at("name"), format!("trigger `{}` is listed twice", t.name)));
        }
        let sources = [t.events.is_some(), t.cron.is_some(), t.nats.is_some()].iter().filter(|s| **s).count();
        if sources != 1 {
            return Err(ManifestError::invalid(
                format!("spec.triggers[{i}]"),
                "set exactly one of `events` (broker), `cron` and `nats`",
            ));
        }
        if let Some(f) = t.events.as_ref().and_then(|e| e.filter.as_ref()) {
            f.validate(&at("events.filter"), 0)?;
        }
        if let Some(c) = &t.cron {
            let (cron, tz) = parse_schedule(&c.schedule, c.timezone.as_deref())
                .map_err(|e| ManifestError::invalid(at("cron"), e))?;
            // `0 0 30 2 *` parses but never fires.
            let now = chrono::Utc::now().with_timezone(&tz);
            if cron.find_next_occurrence(&now, false).is_err() {
                let msg = format!("`{}` never fires", c.schedule);
                return Err(ManifestError::invalid(at("cron.schedule"), msg));
            }
        }
        if let Some(n) = &t.nats {
            nats_url(&n.url, &at("nats.url"))?;
            if n.subject.is_empty() || n.subject.contains(char::is_whitespace) {
                return Err(ManifestError::invalid(at("nats.subject"), format!("`{}` is not a subject", n.subject)));
            }
            let name_ok =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok(&n.stream) {
                return Err(ManifestError::invalid(at("nats.stream"), format!("`{}` is not a stream name", n.stream)));
            }
            if n.queue_group.as_deref().is_some_and(|q| !name_ok(q)) {
                return Err(ManifestError::invalid(at("nats.queueGroup"), "letters, digits, `-` and `_` only"));
            }
        }
        let d = &t.delivery;
        if d.retry > MAX_RETRY {
            return Err(ManifestError::invalid(at("delivery.retry"), format!("must be at most {MAX_RETRY}")));
        }
        if d.backoff_delay > MAX_DELAY || d.timeout.is_some_and(|t| t.is_zero() || t > MAX_DELAY) {
            return Err(ManifestError::invalid(
                at("delivery"),
                "backoffDelay and timeout must be at most 1h, timeout above zero",
            ));
        }
        if let Some(sink) = &d.dead_letter_sink {
            let set = [sink.function.is_some(), sink.url.is_some(), sink.nats.is_some()];
            if set.iter().filter(|s| **s).count() != 1 {
                return Err(ManifestError::invalid(
                    at("delivery.deadLetterSink"),
                    "set exactly one of `function`, `url` and `nats`",
                ));
            }
            if let Some(f) = sink.function.as_deref().filter(|f| !is_dns_label(f)) {
                return Err(ManifestError::invalid(
                    at("delivery.deadLetterSink.function"),
                    format!("`{f}` is not a function name"),
                ));
            }
            if let Some(u) = sink.url.as_deref().filter(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
                return Err(ManifestError::invalid(
                    at("delivery.deadLetterSink.url"),
                    format!("`{u}` is not an http(s) URL"),
                ));
            }
            if let Some(n) = &sink.nats {
                nats_url(&n.url, &at("delivery.deadLetterSink.nats.url"))?;
            }
        }
    }
    Ok(())
}
