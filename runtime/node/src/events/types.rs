//! The event types a namespace's broker has seen (issue 20, item 4): per type and source, how many, first and
//! last seen, the content type and `dataschema`, a schema hint (the JSON data's top-level fields and their kinds)
//! and a recent sample payload, so a user (and the console) can pick one to subscribe to or test with.
//!
//! Bounded: at most [`MAX_TYPES`] type/source pairs per namespace (more are counted, not kept), samples cut to
//! [`MAX_SAMPLE`] bytes, hints to [`MAX_FIELDS`] fields. A type marked sensitive (`sensitive-event-types` in
//! node.toml: a type, or a prefix ending in `*`) never keeps a sample or a hint.

use cloudevents::{AttributesReader, Data, Event};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Type/source pairs kept per namespace.
pub(crate) const MAX_TYPES: usize = 1000;
/// Bytes of a sample payload kept.
pub(crate) const MAX_SAMPLE: usize = 2048;
/// Top-level fields of a schema hint.
pub(crate) const MAX_FIELDS: usize = 32;

/// One type and source as seen.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventType {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `source`.
    pub source: String,
    /// Events seen.
    pub count: u64,
    /// First and last seen (RFC 3339).
    pub first_seen: String,
    /// Last seen.
    pub last_seen: String,
    /// `datacontenttype` of the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// `dataschema` of the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// The last JSON data's top-level fields and their kinds (`string`, `number`, `object`, ...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, &'static str>,
    /// The last data, cut to `MAX_SAMPLE` bytes (never for a sensitive type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
    /// Whether the type is marked sensitive.
    pub sensitive: bool,
}

/// The registry of every namespace.
#[derive(Default)]
pub(crate) struct EventTypes {
    sensitive: Vec<String>,
    namespaces: Mutex<HashMap<String, Seen>>,
}

#[derive(Default)]
struct Seen {
    types: BTreeMap<(String, String), EventType>,
    /// Events of pairs not kept (the namespace has `MAX_TYPES` already).
    untracked: u64,
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_SAMPLE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl EventTypes {
    /// A registry whose `sensitive` types (exact, or prefixes ending in `*`) keep no sample.
    pub(crate) fn new(sensitive: Vec<String>) -> EventTypes {
        EventTypes { sensitive, namespaces: Mutex::default() }
    }

    fn is_sensitive(&self, kind: &str) -> bool {
        self.sensitive.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => kind.starts_with(prefix),
            None => p == kind,
        })
    }

    /// Records one event the broker of `namespace` took.
    pub(crate) fn record(&self, namespace: &str, event: &Event) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (kind, source) = (event.ty().to_string(), event.source().to_string());
        let sensitive = self.is_sensitive(&kind);
        let (sample, fields) = if sensitive {
            (None, BTreeMap::new())
        } else {
            let json = match event.data() {
                Some(Data::Json(v)) => Some(v.clone()),
                Some(Data::String(s)) => serde_json::from_str(s).ok(),
                Some(Data::Binary(b)) => serde_json::from_slice(b).ok(),
                None => None,
            };
            let fields = match &json {
                Some(serde_json::Value::Object(m)) => {
                    m.iter().take(MAX_FIELDS).map(|(k, v)| (k.clone(), kind_of(v))).collect()
                }
                _ => BTreeMap::new(),
            };
            let sample = match (event.data(), &json) {
                (_, Some(v)) => Some(cut(&v.to_string())),
                (Some(Data::String(s)), None) => Some(cut(s)),
                (Some(Data::Binary(b)), None) => Some(format!("({} bytes of binary data)", b.len())),
                _ => None,
            };
            (sample, fields)
        };
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        let seen = namespaces.entry(namespace.to_string()).or_default();
        let key = (kind.clone(), source.clone());
        if !seen.types.contains_key(&key) && seen.types.len() >= MAX_TYPES {
            seen.untracked += 1;
            return;
        }
        let entry = seen.types.entry(key).or_insert_with(|| EventType {
            kind,
            source,
            count: 0,
            first_seen: now.clone(),
            last_seen: now.clone(),
            content_type: None,
            dataschema: None,
            fields: BTreeMap::new(),
            sample: None,
            sensitive,
        });
        entry.count += 1;
        entry.last_seen = now;
        entry.content_type = event.datacontenttype().map(str::to_string);
        entry.dataschema = event.dataschema().map(|u| u.to_string());
        entry.fields = fields;
        entry.sample = sample;
    }

    /// The types of `namespace` (every namespace when `None`), by namespace; with the count of events not kept.
    pub(crate) fn list(&self, namespace: Option<&str>) -> BTreeMap<String, (Vec<EventType>, u64)> {
        let namespaces = self.namespaces.lock().unwrap_or_else(|e| e.into_inner());
        namespaces
            .iter()
            .filter(|(ns, _)| namespace.is_none_or(|n| n == ns.as_str()))
            .map(|(ns, seen)| (ns.clone(), (seen.types.values().cloned().collect(), seen.untracked)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn event(kind: &str, data: serde_json::Value) -> Event {
        EventBuilderV10::new().id("1").ty(kind).source("/shop").data("application/json", data).build().unwrap()
    }

    #[test]
    fn types_are_counted_hinted_and_bounded() {
        let t = EventTypes::new(vec!["com.bank.*".into()]);
        t.record("default", &event("order.created", serde_json::json!({"id": 7, "items": [1], "note": "x"})));
        t.record("default", &event("order.created", serde_json::json!({"id": 8, "items": [], "note": "y"})));
        t.record("default", &event("com.bank.transfer", serde_json::json!({"iban": "DE00"})));
        let list = t.list(Some("default"));
        let (types, untracked) = &list["default"];
        assert_eq!(*untracked, 0);
        let order = types.iter().find(|e| e.kind == "order.created").unwrap();
        assert_eq!(order.count, 2);
        assert_eq!(order.fields.get("items"), Some(&"array"));
        assert!(order.sample.as_deref().unwrap().contains("\"id\":8"), "the latest sample");
        let bank = types.iter().find(|e| e.kind == "com.bank.transfer").unwrap();
        assert!(bank.sensitive && bank.sample.is_none() && bank.fields.is_empty(), "{bank:?}");

        let big = "x".repeat(10_000);
        t.record("other", &event("big", serde_json::json!({ "s": big })));
        assert!(t.list(Some("other"))["other"].0[0].sample.as_ref().unwrap().len() <= MAX_SAMPLE);
        for i in 0..MAX_TYPES + 5 {
            t.record("many", &event(&format!("t{i}"), serde_json::json!({})));
        }
        let (types, untracked) = &t.list(Some("many"))["many"];
        assert_eq!((types.len(), *untracked), (MAX_TYPES, 5));
    }
}
