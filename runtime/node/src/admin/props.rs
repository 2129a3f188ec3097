//! Property tests of the admin API's bodies as its handlers read them: a deploy's manifest bytes, `PUT …/traffic`
//! applied as `Node::set_traffic` applies it, `POST …/rollback` on any state, and the digests uploads answer
//! with. Arbitrary and mutated bodies never panic; what is accepted routes only to retained revisions.
//! Cases: `PROPTEST_CASES` (256 by default).

#![cfg(test)]

use super::{RollbackBody, TrafficBody, manifest};
use crate::blobs::Digest;
use crate::revision::{Common, Revision};
use crate::service::Service;
use crate::state::{Progress, State};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;
use wasmfn_api::Function;

/// `default/hello` with revisions 1..=n, `ready` ready, `failed` out of service, maybe rolling out to n.
fn state(n: u64, ready: u64, failed: &[u64], rolling: Option<u32>) -> State {
    let mut f = Function::new("default", "hello", &format!("sha256:{}", "a".repeat(64)));
    f.spec.rollout = rolling.map(|_| wasmfn_api::Rollout::over(std::time::Duration::from_secs(60)));
    let common = Common::new(&f.key(), &crate::metrics::Metrics::new(), &Default::default());
    let revisions = (1..=n)
        .map(|g| Arc::new(Revision::new(f.clone(), Digest::of(&g.to_le_bytes()), g, SystemTime::now(), &common)))
        .collect();
    let ready = ready.clamp(1, n);
    let rollout =
        rolling.filter(|_| ready < n).map(|step| Progress { from: ready, to: n, step, started: SystemTime::now() });
    // Never the ready revision, nor the one rolling out: a failed revision is out of service.
    let out = |g: u64| g == ready || rollout.as_ref().is_some_and(|r| r.to == g);
    let failed = failed.iter().filter(|g| !out(**g)).map(|g| (*g, "failed".to_string())).collect();
    State { function: f, revisions, latest: n, ready, rollout, outcome: None, failed }
}

/// A resolved service routes only to its retained revisions, with shares adding up to 100.
fn check_service(s: &Service) -> Result<(), TestCaseError> {
    let total: u32 = s.state.revisions.iter().map(|r| s.percent_of(r.generation)).sum();
    prop_assert_eq!(total, 100);
    for _ in 0..8 {
        prop_assert!(s.state.revision(s.pick().generation).is_some());
    }
    for t in s.tags() {
        prop_assert!(s.state.revision(s.tagged(t).unwrap().generation).is_some());
    }
    Ok(())
}

/// A traffic target as a client might write it.
fn target() -> impl Strategy<Value = Value> {
    let name = prop_oneof![(0u64..6).prop_map(|g| format!("hello-{g}")), Just("hello-01".to_string()), ".{0,6}"];
    let tag = prop_oneof![prop::sample::select(vec!["a", "b", "latest", "-x", "A"]).prop_map(String::from), ".{0,4}"];
    (
        prop::option::of(name),
        prop::option::of(any::<bool>()),
        prop::option::of(prop_oneof![0..=100u32, any::<u32>()]),
        prop::option::of(tag),
    )
        .prop_map(|(name, latest, percent, tag)| {
            let mut t = serde_json::Map::new();
            name.map(|v| t.insert("revisionName".into(), v.into()));
            latest.map(|v| t.insert("latestRevision".into(), v.into()));
            percent.map(|v| t.insert("percent".into(), v.into()));
            tag.map(|v| t.insert("tag".into(), v.into()));
            Value::Object(t)
        })
}

/// With `balance`, sets the last target's percent so that the percents can add up to 100 (most bodies are then
/// accepted or refused for a reason other than the sum).
fn balance_percents(targets: &mut [Value], balance: bool) {
    let others: u64 = targets.iter().rev().skip(1).filter_map(|t| t["percent"].as_u64()).fold(0, u64::saturating_add);
    if let Some(last) = targets.last_mut().filter(|_| balance && others <= 100) {
        last["percent"] = json!(100 - others);
    }
}

proptest! {
    #[test]
    fn deploy_bodies_of_any_bytes_are_read_or_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        text in "(apiVersion|kind|metadata|spec|name|component|: |\\{|\\}|\n|  |wasmfn.dev/v1alpha1|Function|a|sha256:|-)*",
    ) {
        for body in [bytes.as_slice(), text.as_bytes()] {
            // As `deploy` reads its body: UTF-8, then one manifest.
            if let Ok(t) = std::str::from_utf8(body)
                && let Err(e) = manifest(t)
            {
                prop_assert!(!crate::error::Error::from(e).kind().is_empty());
            }
        }
    }

    #[test]
    fn json_manifests_are_read_whatever_their_strings_hold(value in ".{0,8}", odd in prop::sample::select(vec!['\u{7f}', '\u{85}', '\u{9f}', '\u{fffe}', '\u{ffff}', '\u{0}', 'é'])) {
        // JSON allows these raw in strings (JSON.stringify writes them so); YAML refuses DEL, C1 and U+FFFE/F.
        let mut f = Function::new("default", "hello", "a.wasm");
        f.spec.env = vec![wasmfn_api::EnvVar { name: "A".into(), value: format!("{value}{odd}") }];
        for body in [serde_json::to_string(&f).unwrap(), serde_json::to_string_pretty(&f).unwrap()] {
            prop_assert_eq!(manifest(&body).map_err(|e| e.to_string()), Ok(f.clone()));
        }
        // YAML carries them escaped.
        let escaped: String = f.spec.env[0].value.chars().map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c.to_string(),
            c if (c as u32) < 0x10000 => format!("\\u{:04x}", c as u32),
            c => format!("\\U{:08x}", c as u32),
        }).collect();
        let yaml = format!("apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: {{name: hello}}\nspec:\n  component: a.wasm\n  env: [{{name: A, value: \"{escaped}\"}}]\n");
        prop_assert_eq!(manifest(&yaml).map_err(|e| e.to_string()), Ok(f));
    }

    #[test]
    fn traffic_bodies_route_only_to_retained_revisions(
        n in 1u64..5,
        ready in 1u64..5,
        rolling in prop::option::of(0u32..6),
        targets in prop::collection::vec(target(), 0..4),
        extra in prop::option::of(Just(("weight", json!(1)))),
        balance in any::<bool>(),
    ) {
        let mut targets = targets;
        balance_percents(&mut targets, balance);
        let mut body = json!({ "traffic": targets });
        if let Some((k, v)) = extra {
            body[k] = v;
        }
        // As `traffic` and `Node::set_traffic` apply it: the body, the manifest's rules, then the revisions.
        let Ok(TrafficBody { traffic }) = serde_json::from_slice::<TrafficBody>(body.to_string().as_bytes()) else {
            return Ok(());
        };
        let mut st = state(n, ready, &[], rolling);
        st.function.spec.traffic = traffic;
        if let Err(e) = st.function.validate() {
            prop_assert!(e.to_string().contains("spec.traffic"), "{e}");
            return Ok(());
        }
        let _ = st.traffic_changed(SystemTime::now());
        match Service::new(st) {
            Ok(s) => check_service(&s)?,
            Err(e) => prop_assert!(e.to_string().contains("spec.traffic") && e.is_client_error(), "{e}"),
        }
    }

    #[test]
    fn rollbacks_of_any_state_keep_a_routable_service(
        n in 1u64..6,
        ready in 1u64..6,
        failed in prop::collection::vec(1u64..6, 0..3),
        rolling in prop::option::of(0u32..6),
        body in prop_oneof![
            Just(String::new()),
            (1u64..8).prop_map(|g| json!({"revision": format!("hello-{g}")}).to_string()),
            ".{0,12}".prop_map(|r| json!({"revision": r}).to_string()),
            "[{}\":a-z0-9 -]{0,20}",
        ],
    ) {
        // As `rollback` reads its body: blank, or `{"revision": …}`.
        let parsed = if body.bytes().all(|b| b.is_ascii_whitespace()) {
            Ok(RollbackBody::default())
        } else {
            serde_json::from_str::<RollbackBody>(&body)
        };
        let Ok(RollbackBody { revision }) = parsed else { return Ok(()) };
        let mut st = state(n, ready, &failed, rolling);
        match st.roll_back(revision.as_deref(), SystemTime::now()) {
            Ok(_) => {
                prop_assert!(st.revision(st.ready).is_some(), "ready {} is not retained", st.ready);
                prop_assert!(!st.failed.contains_key(&st.ready));
                check_service(&Service::new(st).unwrap())?;
            }
            Err(e) => prop_assert!(!e.to_string().is_empty() && e.is_client_error(), "{e}"),
        }
    }

    #[test]
    fn the_three_digest_parsers_agree(text in prop_oneof!["sha256:[0-9a-fA-F]{62,66}", "sha256:.{0,66}", ".{0,72}"]) {
        // An upload's digest, the registry client's check and the manifest's `sha256:` component are one format.
        let node = Digest::parse(&text);
        let oci = wasmfn_oci::check_digest(&text, "x").is_ok();
        let manifest = Function::new("default", "a", &text).validate().is_ok();
        prop_assert_eq!(node.is_some(), oci, "{:?}", text);
        if text.starts_with("sha256:") {
            prop_assert_eq!(manifest, oci, "{:?}", text);
        }
        if let Some(d) = node {
            prop_assert_eq!(d.to_string(), text);
        }
    }
}
