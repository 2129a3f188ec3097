//! The field parsers: quantities, function keys, revision names, filters, durations and cron schedules.

use crate::{duration, filter, label};
use proptest::prelude::*;
use std::borrow::Cow;
use std::collections::BTreeMap;
use wasmfn_api::{Filter, Function, FunctionKey, Quantity, crd, parse_schedule, revision_name};

const SUFFIXES: [(&str, u64); 9] = [
    ("", 1),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
];

/// The pattern the CRD puts on `spec.limits.timeout`, without its anchors.
fn crd_duration_pattern() -> String {
    let crd = serde_json::to_value(crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let pattern = spec["limits"]["properties"]["timeout"]["pattern"].as_str().expect("a pattern on timeout");
    pattern.trim_start_matches('^').trim_end_matches('$').to_string()
}

proptest! {
    #[test]
    fn quantities_parse_or_name_the_text(text in prop_oneof![".{0,12}", "[0-9]{0,22}(|k|M|G|T|Ki|Mi|Gi|Ti|m|Qi|\\.5|e3)"]) {
        match Quantity::parse(&text) {
            Ok(q) => {
                // What parses is digits and a known suffix, and means exactly their product.
                let t = text.trim();
                let (digits, suffix) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
                let mult = SUFFIXES.iter().find(|(s, _)| *s == suffix).expect("a known suffix").1;
                prop_assert_eq!(Some(q.bytes()), digits.parse::<u64>().unwrap().checked_mul(mult));
            }
            Err(e) => prop_assert!(e.contains(&format!("`{text}`")), "{e}"),
        }
    }

    #[test]
    fn quantities_round_trip(n in prop_oneof![any::<u64>(), (0u64..1 << 24).prop_map(|n| n << 20)], i in 0usize..9) {
        let q = Quantity::from_bytes(n);
        prop_assert_eq!(Quantity::parse(&q.to_string()), Ok(q));
        prop_assert_eq!(serde_json::from_str::<Quantity>(&serde_json::to_string(&q).unwrap()).unwrap(), q);
        prop_assert_eq!(serde_yaml_ng::from_str::<Quantity>(&serde_yaml_ng::to_string(&q).unwrap()).unwrap(), q);
        let (suffix, mult) = SUFFIXES[i];
        let small = n >> 24;
        let parsed = Quantity::parse(&format!("{small}{suffix}"));
        match small.checked_mul(mult) {
            Some(bytes) => prop_assert_eq!(parsed, Ok(Quantity::from_bytes(bytes))),
            None => prop_assert!(parsed.unwrap_err().contains("too large")),
        }
    }

    #[test]
    fn keys_parse_only_two_nonempty_parts(s in prop_oneof![".{0,12}", "[a/]{0,6}", "[a-z]{0,3}/[a-z/]{0,4}"]) {
        match FunctionKey::parse(&s) {
            Some(k) => {
                prop_assert!(!k.namespace.is_empty() && !k.name.is_empty());
                prop_assert!(!k.namespace.contains('/') && !k.name.contains('/'), "{:?}", k);
                prop_assert_eq!(k.to_string(), s);
            }
            None => {
                let parts: Vec<&str> = s.split('/').collect();
                prop_assert!(parts.len() != 2 || parts.iter().any(|p| p.is_empty()), "{s} refused");
            }
        }
    }

    #[test]
    fn keys_order_as_their_text(a in ("[a-c-]{0,3}", "[a-c/-]{0,3}"), b in ("[a-c-]{0,3}", "[a-c/-]{0,3}")) {
        let (ka, kb) = (FunctionKey::new(a.0, a.1), FunctionKey::new(b.0, b.1));
        prop_assert_eq!(ka.cmp(&kb), ka.to_string().cmp(&kb.to_string()), "{} vs {}", ka, kb);
        prop_assert_eq!(ka == kb, ka.to_string() == kb.to_string());
    }

    #[test]
    fn revision_names_have_one_spelling(name in label(), g in 1u64.., other in prop_oneof![".{0,8}", "[a-z]{1,3}-[0-9+-]{0,4}"]) {
        let f = Function::new("default", &name, "a.wasm");
        prop_assert_eq!(f.revision_generation(&revision_name(&name, g)), Some(g));
        prop_assert_eq!(f.revision_generation(&revision_name(&name, 0)), None);
        for text in [other.clone(), format!("{name}-{other}")] {
            if let Some(g) = f.revision_generation(&text) {
                prop_assert!(g > 0);
                prop_assert_eq!(f.revision_name(g), text);
            }
        }
    }

    #[test]
    fn filters_round_trip_and_keep_their_logic(f in filter(), event in prop::collection::btree_map("[a-z0-9]{1,2}", ".{0,3}", 0..6)) {
        let json = serde_json::to_string(&f).unwrap();
        prop_assert_eq!(&serde_json::from_str::<Filter>(&json).unwrap(), &f);
        prop_assert_eq!(&serde_yaml_ng::from_str::<Filter>(&serde_yaml_ng::to_string(&f).unwrap()).unwrap(), &f);
        let attr = |name: &str| event.get(name).map(|v| Cow::Owned(v.clone()));
        let m = f.matches(&attr);
        prop_assert_eq!(Filter::Not(Box::new(f.clone())).matches(&attr), !m);
        prop_assert_eq!(Filter::All(vec![f.clone(), f.clone()]).matches(&attr), m);
        prop_assert_eq!(Filter::Any(vec![f.clone(), Filter::Not(Box::new(f.clone()))]).matches(&attr), true);
        // An exact filter on the event's own attributes passes; one on an absent attribute does not.
        if !event.is_empty() {
            prop_assert!(Filter::Exact(event.clone()).matches(&attr));
            let missing = BTreeMap::from([("absent9".to_string(), String::new())]);
            prop_assert!(!Filter::Prefix(missing).matches(&attr));
        }
    }

    #[test]
    fn filter_maps_have_exactly_one_key(keys in prop::collection::btree_set(prop::sample::select(vec!["exact", "prefix", "suffix", "all", "any", "not", "other"]), 0..4)) {
        let value = |k: &str| match k {
            "all" | "any" => serde_json::json!([{"exact": {"type": "x"}}]),
            "not" => serde_json::json!({"exact": {"type": "x"}}),
            _ => serde_json::json!({"type": "x"}),
        };
        let doc: serde_json::Map<String, serde_json::Value> = keys.iter().map(|k| (k.to_string(), value(k))).collect();
        let parsed = serde_json::from_value::<Filter>(serde_json::Value::Object(doc));
        prop_assert_eq!(parsed.is_ok(), keys.len() == 1 && !keys.contains("other"), "{:?}", parsed);
    }

    #[test]
    fn durations_round_trip_through_manifests(d in duration(24 * 3600)) {
        let mut f = Function::new("default", "a", "a.wasm");
        f.spec.limits.timeout = d;
        let back = Function::from_yaml(&serde_yaml_ng::to_string(&f).unwrap()).unwrap();
        prop_assert_eq!(back.spec.limits.timeout, d);
    }

    #[test]
    fn what_the_crd_admits_as_a_duration_the_node_parses(text in proptest::string::string_regex(&crd_duration_pattern().replace("[0-9]+", "[0-9]{1,4}")).unwrap()) {
        // The API server checks the CRD's pattern; every duration it admits must parse in the node and operator.
        let yaml = format!("apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: {{name: a}}\nspec: {{component: a.wasm, limits: {{timeout: {}}}}}\n", serde_json::to_string(&text).unwrap());
        match Function::from_yaml(&yaml) {
            Ok(_) => {}
            Err(wasmfn_api::ManifestError::Invalid { field, .. }) => prop_assert_eq!(field, "spec.limits.timeout"),
            Err(e) => prop_assert!(false, "the CRD admits {text:?} but the manifest parser says: {e}"),
        }
    }

    #[test]
    fn cron_schedules_parse_or_say_why(
        fields in prop::collection::vec(prop_oneof![
            Just("*".to_string()), Just("?".to_string()), Just("L".to_string()), Just("MON-FRI".to_string()),
            (0u32..70).prop_map(|n| n.to_string()), (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a}-{b}")),
            (0u32..70).prop_map(|n| format!("*/{n}")), (0u32..9, 0u32..9).prop_map(|(a, b)| format!("{a}#{b}")),
            (0u32..40).prop_map(|n| format!("{n}W")), (0u32..70, 0u32..70).prop_map(|(a, b)| format!("{a},{b}")),
            ".{0,3}",
        ], 0..8),
        tz in prop_oneof![Just(None), Just(Some("Europe/Berlin".to_string())), ".{0,12}".prop_map(Some)],
    ) {
        let schedule = fields.join(" ");
        match parse_schedule(&schedule, tz.as_deref()) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.contains(&format!("`{schedule}`")) || tz.as_deref().is_some_and(|t| e.contains(&format!("`{t}`"))), "{e}"),
        }
        // As a trigger, the schedule is checked to fire at all; that check ends and names the field.
        let mut f = Function::new("default", "a", "a.wasm");
        f.spec.triggers = vec![wasmfn_api::Trigger {
            name: "t".into(),
            events: None,
            cron: Some(wasmfn_api::CronSource { schedule, timezone: tz, data: None, content_type: None, allow_overlap: false }),
            nats: None,
            delivery: Default::default(),
        }];
        if let Err(e) = f.validate() {
            prop_assert!(e.to_string().contains("spec.triggers[0].cron"), "{e}");
        }
    }
}
