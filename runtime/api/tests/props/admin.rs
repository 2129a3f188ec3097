//! The admin API's traffic body (`PUT …/traffic`: `{"traffic": [...]}`), whose rules are `Function::validate`'s:
//! whatever a client sends is refused by field or keeps the traffic rules.

use crate::{assert_invariants, assert_names_the_problem, label, traffic};
use proptest::prelude::*;
use serde_json::{Value, json};
use wasmfn_api::{Function, TrafficTarget};

/// One target as a client might write it: right, nearly right, or wrong.
fn target() -> impl Strategy<Value = Value> {
    let revision = prop_oneof![
        (1u64..50).prop_map(|g| format!("hello-{g}")),
        prop::sample::select(vec!["hello-0", "hello-01", "hello-+1", "hello-", "hello", "other-1", "hello-1-1"])
            .prop_map(String::from),
        Just(format!("hello-{}", u128::from(u64::MAX) + 1)),
        ".{0,8}",
    ];
    let tag = prop_oneof![label(), Just("a".repeat(58)), ".{0,6}"];
    let percent =
        prop_oneof![8 => 0..=100u64, 1 => Just(u32::MAX as u64), 1 => Just(u32::MAX as u64 + 1), 1 => any::<u64>()];
    (
        prop::option::of(revision),
        prop::option::of(any::<bool>()),
        prop::option::of(percent),
        prop::option::of(tag),
        prop::option::weighted(0.1, Just(json!("unexpected"))),
    )
        .prop_map(|(revision, latest, percent, tag, extra)| {
            let mut t = serde_json::Map::new();
            revision.map(|r| t.insert("revisionName".into(), r.into()));
            latest.map(|l| t.insert("latestRevision".into(), l.into()));
            percent.map(|p| t.insert("percent".into(), p.into()));
            tag.map(|g| t.insert("tag".into(), g.into()));
            extra.map(|e| t.insert("weight".into(), e));
            Value::Object(t)
        })
}

/// Applies a traffic body to the function `default/hello`, as the node's admin API does.
fn apply(body: &[u8]) -> Result<Function, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TrafficBody {
        traffic: Vec<TrafficTarget>,
    }
    let body: TrafficBody = serde_json::from_slice(body).map_err(|e| format!("invalid traffic: {e}"))?;
    let mut f = Function::new("default", "hello", "a.wasm");
    f.spec.traffic = body.traffic;
    match f.validate() {
        Ok(()) => Ok(f),
        Err(e) => {
            assert_names_the_problem(&e);
            let text = e.to_string();
            assert!(text.contains("spec.traffic"), "{text}");
            Err(text)
        }
    }
}

proptest! {
    #[test]
    fn traffic_bodies_keep_the_rules_or_name_the_target(targets in prop::collection::vec(target(), 0..5), balance in any::<bool>()) {
        let mut targets = targets;
        // Mostly percents that can add up to 100, so that the other rules are reached.
        let others: u64 = targets.iter().rev().skip(1).filter_map(|t| t["percent"].as_u64()).fold(0, u64::saturating_add);
        if let Some(last) = targets.last_mut().filter(|_| balance && others <= 100) {
            last["percent"] = json!(100 - others);
        }
        let body = json!({ "traffic": targets }).to_string();
        if let Ok(f) = apply(body.as_bytes()) {
            assert_invariants(&f);
            let percents: u64 = f.spec.traffic.iter().map(|t| u64::from(t.percent)).sum();
            prop_assert!(f.spec.traffic.is_empty() || percents == 100);
            for t in &f.spec.traffic {
                prop_assert!(t.revision_name.is_some() != t.is_latest(), "{:?}", t);
            }
        }
    }

    #[test]
    fn valid_traffic_bodies_are_accepted(targets in traffic("hello".into())) {
        let body = serde_json::to_vec(&json!({ "traffic": targets })).unwrap();
        prop_assert_eq!(apply(&body).map(|f| f.spec.traffic), Ok(targets));
    }

    #[test]
    fn arbitrary_traffic_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..64), text in "\\{\"traffic\":\\[[\\]\\[{}:,\"a-z0-9 ]{0,40}") {
        let _ = apply(&body);
        let _ = apply(text.as_bytes());
    }
}
