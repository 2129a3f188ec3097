//! Property tests of the broker's intake, `parse(headers, body)`: binary, structured and batched CloudEvents,
//! arbitrary and mutated, never panic; what is accepted is the event sent (less a forged hop count) and can be
//! delivered as it came; what is refused says how to send events. Cases per property: `PROPTEST_CASES`
//! (256 by default); longer: `PROPTEST_CASES=100000 cargo test -p wasmfn-runtime --lib props`.

#![cfg(test)]

use super::parse;
use crate::events::{HOPS, attribute, hops, to_request};
use bytes::Bytes;
use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::BodyExt;
use proptest::prelude::*;

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";
const NAMES: [&str; 10] =
    ["id", "source", "type", "specversion", "subject", "time", "datacontenttype", "dataschema", HOPS, "xext"];

/// Attribute text: printable ASCII, or any Unicode (which binary mode must percent-encode).
fn text(unicode: bool) -> BoxedStrategy<String> {
    if unicode { ".{1,12}".boxed() } else { "[ -~]{1,12}".boxed() }
}

/// A valid event with optional attributes, extensions (a forged hop count among them) and data.
fn event(unicode: bool) -> impl Strategy<Value = Event> {
    let data = prop_oneof![
        Just(None),
        prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| Some(("application/octet-stream", Data::Binary(b)))),
        ".{0,16}".prop_map(|s| Some(("text/plain", Data::String(s)))),
        (any::<i64>(), ".{0,6}")
            .prop_map(|(n, s)| Some(("application/json", Data::Json(serde_json::json!({"n": n, "s": s}))))),
    ];
    let extension = prop_oneof![
        text(unicode).prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
    ];
    (
        (text(unicode), "(/|https://x\\.test/|urn:)[a-z0-9/]{0,8}", "[a-z.]{1,12}"),
        (prop::option::of(text(unicode)), prop::option::of(0i64..4_000_000_000)),
        prop::collection::btree_map("x[a-z0-9]{1,8}", extension, 0..3),
        (prop::option::of(any::<i64>()), data),
    )
        .prop_filter_map("a buildable event", |((id, source, ty), (subject, time), extensions, (hops, data))| {
            let mut b = EventBuilderV10::new().id(id).source(source).ty(ty);
            if let Some(s) = subject {
                b = b.subject(s);
            }
            if let Some(t) = time {
                b = b.time(chrono::DateTime::from_timestamp(t, 0)?);
            }
            for (k, v) in extensions {
                b = match v {
                    serde_json::Value::String(s) => b.extension(&k, s),
                    serde_json::Value::Bool(x) => b.extension(&k, x),
                    v => b.extension(&k, v.as_i64()?),
                };
            }
            if let Some(h) = hops {
                b = b.extension(HOPS, h);
            }
            if let Some((ct, d)) = data {
                b = b.data(ct, d);
            }
            b.build().ok()
        })
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap()))
        .collect()
}

/// An event as it enters the node: without the hop count only the node sets.
fn entered(mut e: Event) -> Event {
    e.remove_extension(HOPS);
    e
}

/// The data's bytes, however it is held.
fn data_bytes(e: &Event) -> Vec<u8> {
    e.data().cloned().map(|d| Vec::<u8>::try_from(d).unwrap()).unwrap_or_default()
}

/// Accepted events carry no forged hop count; a refusal says how events are sent.
fn check(result: &Result<Vec<Event>, String>) -> Result<(), TestCaseError> {
    match result {
        Ok(events) => {
            prop_assert!(!events.is_empty());
            for e in events {
                prop_assert_eq!(hops(e), 0);
                prop_assert!(e.extension(HOPS).is_none());
                for name in NAMES {
                    let _ = attribute(e, name);
                }
            }
        }
        Err(msg) => prop_assert!(
            msg.contains("not a CloudEvent") || msg.contains("batch"),
            "a refusal that does not say what is wrong: {msg}"
        ),
    }
    Ok(())
}

/// The request delivery sends a function, read back by the same intake.
fn delivered(event: &Event) -> Result<Vec<Event>, String> {
    let req = to_request(event.clone())?;
    let (parts, body) = req.into_parts();
    let body = futures_util::FutureExt::now_or_never(body.collect()).unwrap().unwrap().to_bytes();
    parse(&parts.headers, body)
}

proptest! {
    #[test]
    fn structured_events_are_read_as_sent(e in event(true)) {
        let body = Bytes::from(serde_json::to_vec(&e).unwrap());
        let parsed = parse(&headers(&[("content-type", STRUCTURED)]), body);
        check(&parsed)?;
        prop_assert_eq!(parsed.unwrap(), vec![entered(e)]);
    }

    #[test]
    fn batches_are_read_whole_or_refused(events in prop::collection::vec(event(true), 0..4)) {
        let body = Bytes::from(serde_json::to_vec(&events).unwrap());
        let parsed = parse(&headers(&[("content-type", BATCH)]), body);
        check(&parsed)?;
        match parsed {
            Ok(got) => prop_assert_eq!(got, events.into_iter().map(entered).collect::<Vec<_>>()),
            Err(msg) => prop_assert!(events.is_empty() && msg.contains("holds no event"), "{msg}"),
        }
    }

    #[test]
    fn accepted_events_are_delivered_as_they_came(e in event(true)) {
        // What the broker accepts (structured, any Unicode), delivery sends on (binary mode, or structured when an
        // attribute is not printable ASCII): the function gets the same attributes, extensions and data.
        let e = entered(e);
        let back = delivered(&e);
        prop_assert!(back.is_ok(), "an accepted event cannot be delivered: {:?}", back);
        let back = back.unwrap();
        prop_assert_eq!(back.len(), 1);
        let b = &back[0];
        prop_assert_eq!((b.id(), b.source(), b.ty(), b.subject(), b.time()), (e.id(), e.source(), e.ty(), e.subject(), e.time()));
        prop_assert_eq!(data_bytes(b), data_bytes(&e));
        for (name, _) in e.iter_extensions() {
            prop_assert_eq!(attribute(b, name), attribute(&e, name), "extension {}", name);
        }
    }

    #[test]
    fn binary_mode_headers_parse_or_say_why(
        attrs in prop::collection::vec((prop::sample::select(NAMES.to_vec()), prop::collection::vec(any::<u8>(), 0..12)), 0..8),
        version in prop::option::of(prop::sample::select(vec!["1.0", "0.3", "2.0", ""])),
        content_type in prop::option::of(prop::sample::select(vec!["application/json", "text/plain", STRUCTURED, BATCH, "application/cloudevents"])),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut h = HeaderMap::new();
        if let Some(v) = version {
            h.insert("ce-specversion", HeaderValue::from_static(v));
        }
        for (name, value) in attrs {
            // Header values may hold any byte but controls; the intake must not trust them to be text.
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                h.append(HeaderName::from_bytes(format!("ce-{name}").as_bytes()).unwrap(), v);
            }
        }
        if let Some(ct) = content_type {
            h.insert("content-type", HeaderValue::from_static(ct));
        }
        let parsed = parse(&h, Bytes::from(body));
        check(&parsed)?;
        if let Ok(events) = &parsed {
            prop_assert_eq!(events.len(), 1);
        }
    }

    #[test]
    fn mutated_structured_and_batch_bodies_never_panic(
        events in prop::collection::vec(event(false), 1..3),
        batch in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![Just(String::new()), "[{}\\[\\]\":,0-9a-z ]{1,3}", ".{1,2}"]), 1..6),
    ) {
        let doc = if batch { serde_json::to_string(&events) } else { serde_json::to_string(&events[0]) }.unwrap();
        let mut doc: Vec<char> = doc.chars().collect();
        for (at, s) in edits {
            let i = at.index(doc.len() + 1);
            let end = (i + 1).min(doc.len());
            doc.splice(i..end, s.chars());
        }
        let body = Bytes::from(doc.into_iter().collect::<String>());
        let parsed = parse(&headers(&[("content-type", if batch { BATCH } else { STRUCTURED })]), body);
        check(&parsed)?;
    }

    #[test]
    fn arbitrary_requests_never_panic(
        ct in prop::option::of(prop_oneof![Just(STRUCTURED.to_string()), Just(BATCH.to_string()), "[ -~]{0,40}"]),
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let h = ct.map(|ct| headers(&[("content-type", ct.as_str())])).unwrap_or_default();
        check(&parse(&h, Bytes::from(body)))?;
    }
}
