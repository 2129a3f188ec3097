//! Whole manifests: round trips of valid ones, structure-aware mutations of their JSON tree, text mutations of
//! their YAML, and arbitrary text.

use crate::{assert_invariants, assert_names_the_problem, function};
use proptest::prelude::*;
use serde_json::Value;
use wasmfn_api::{Function, ManifestError};

/// Checks one parse outcome: an accepted manifest keeps the rules and round-trips, an error names the problem.
fn check(result: Result<Function, ManifestError>) -> Result<(), TestCaseError> {
    match result {
        Ok(f) => {
            prop_assert!(f.validate().is_ok());
            assert_invariants(&f);
            // What is accepted reads back from JSON: the node's table files and the cluster's API are JSON.
            let json = serde_json::to_string(&f).expect("an accepted manifest serialises");
            let back = Function::from_json(&json).expect("its JSON parses");
            prop_assert!(same(&back, &f), "{back:?}");
            let yaml = serde_yaml_ng::to_string(&f).expect("an accepted manifest serialises");
            prop_assert_eq!(&Function::from_yaml(&yaml).expect("its YAML parses"), &f);
        }
        Err(e) => assert_names_the_problem(&e),
    }
    Ok(())
}

/// Equal, but for serde_json reading a 17-digit float back to within one ulp (`rollout.maxErrorRate`).
fn same(a: &Function, b: &Function) -> bool {
    let mut a = a.clone();
    if let (Some(x), Some(y)) = (a.spec.rollout.as_mut(), b.spec.rollout.as_ref())
        && x.max_error_rate.to_bits().abs_diff(y.max_error_rate.to_bits()) <= 1
    {
        x.max_error_rate = y.max_error_rate;
    }
    a == *b
}

/// Whether `text` holds characters JSON allows raw but YAML refuses (DEL, C1 controls, U+FFFE, U+FFFF) or reads
/// as a line break (U+0085, NEL); the admin API reads JSON bodies with them as JSON.
fn yaml_refuses(text: &str) -> bool {
    text.chars().any(|c| matches!(c, '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}'))
}

/// Every place in a JSON tree: the path of keys and indexes from the root.
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            at.push(Value::from(k.as_str()));
            paths(c, at, out);
            at.pop();
        }),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
            at.push(Value::from(i));
            paths(c, at, out);
            at.pop();
        }),
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match step {
        Value::String(k) => &mut v[k.as_str()],
        Value::Number(i) => &mut v[i.as_u64().unwrap() as usize],
        _ => unreachable!(),
    })
}

/// Strings that manifests get wrong (bounds, names, formats) or right.
fn words() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "1.5",
            "0s",
            "1s",
            "25h",
            "1000y",
            "1.5s",
            "99999999999999999999s",
            "128Mi",
            "1Qi",
            "18446744073709551615Ti",
            "sha256:",
            "sha256:ABC",
            "/",
            "//a",
            "/a?b",
            "a b",
            "Hello",
            "-a",
            "a-",
            "default",
            "hello-1",
            "hello-01",
            "hello-0",
            "nats://x",
            "http://x",
            "@hourly",
            "0 0 30 2 *",
            "* * * * * * *",
            "Mars/Olympus",
            "wasmfn.dev/v1alpha1",
            "Function",
            "latest",
            "\u{0}",
            "é",
            "x=y",
            "2",
            "1Mi",
            "10s",
            "a",
            "t",
            "nats://127.0.0.1:4222",
            "https://x.test/",
            "rust",
            "linear",
            "*/5 * * * *",
            "Europe/Berlin",
            "true",
        ])
        .prop_map(String::from),
        ".{0,12}",
    ]
}

/// Numbers at the edges of the manifest's integer fields, and beyond.
fn numbers() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![0u64, 1, 100, 101, u32::MAX as u64, u32::MAX as u64 + 1]).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
    ]
}

/// A replacement value of any type.
fn value() -> impl Strategy<Value = Value> {
    let scalar =
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), numbers(), words().prop_map(Value::from),];
    scalar.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Edit {
    /// A value of the same type: a string for a string, a number for a number, the other boolean.
    Retype(String, Value),
    Replace(Value),
    Remove,
    AddField(String, Value),
    Duplicate,
}

fn edit() -> impl Strategy<Value = Edit> {
    let field = prop::sample::select(vec![
        "component",
        "image",
        "build",
        "source",
        "env",
        "scaling",
        "limits",
        "routes",
        "traffic",
        "rollout",
        "triggers",
        "status",
        "tag",
        "percent",
        "filter",
        "exact",
        "not",
        "all",
        "cron",
        "nats",
        "events",
        "deadLetterSink",
        "reuse",
        "maxMemory",
        "timeout",
        "unknown",
    ]);
    prop_oneof![
        4 => (words(), numbers()).prop_map(|(w, n)| Edit::Retype(w, n)),
        3 => value().prop_map(Edit::Replace),
        2 => Just(Edit::Remove),
        2 => (field, value()).prop_map(|(k, v)| Edit::AddField(k.into(), v)),
        1 => Just(Edit::Duplicate),
    ]
}

/// Applies `edits` at places chosen by `picks`.
fn mutate(f: &Function, edits: Vec<(prop::sample::Index, Edit)>) -> Value {
    let mut doc = serde_json::to_value(f).unwrap();
    for (pick, edit) in edits {
        let mut all = Vec::new();
        paths(&doc, &mut Vec::new(), &mut all);
        let path = pick.get(&all).clone();
        match edit {
            Edit::Retype(w, n) => {
                let v = at(&mut doc, &path);
                *v = match v {
                    Value::String(_) => Value::String(w),
                    Value::Number(_) => n,
                    Value::Bool(b) => Value::Bool(!*b),
                    _ => continue,
                };
            }
            Edit::Replace(v) => *at(&mut doc, &path) = v,
            Edit::Remove => match path.split_last() {
                Some((Value::String(k), parent)) => {
                    at(&mut doc, parent).as_object_mut().unwrap().remove(k);
                }
                Some((Value::Number(i), parent)) => {
                    at(&mut doc, parent).as_array_mut().unwrap().remove(i.as_u64().unwrap() as usize);
                }
                _ => {}
            },
            Edit::AddField(k, v) => {
                if let Some(m) = at(&mut doc, &path).as_object_mut() {
                    m.insert(k, v);
                }
            }
            Edit::Duplicate => {
                if let Some(a) = at(&mut doc, &path).as_array_mut()
                    && let Some(first) = a.first().cloned()
                {
                    a.push(first);
                }
            }
        }
    }
    doc
}

proptest! {
    #[test]
    fn valid_manifests_round_trip_through_json_and_yaml(f in function()) {
        prop_assert!(f.validate().is_ok(), "{:?}", f.validate());
        check(Ok(f.clone()))?;
        let json = serde_json::to_string_pretty(&f).unwrap();
        // JSON is YAML too, but for the characters YAML refuses.
        match Function::from_yaml(&json) {
            Ok(back) => prop_assert!(back == f || yaml_refuses(&json), "{back:?}"),
            Err(e) => prop_assert!(yaml_refuses(&json), "{e}"),
        }
    }

    #[test]
    fn mutated_manifests_are_accepted_whole_or_rejected_by_name(
        f in function(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), edit()), 1..4),
    ) {
        let doc = mutate(&f, edits);
        let json = doc.to_string();
        let (from_json, from_yaml) = (Function::from_json(&json), Function::from_yaml(&json));
        // Both parsers agree on what they accept but for YAML's leniency on scalars and strictness on characters.
        match (&from_json, &from_yaml) {
            (Ok(a), Ok(b)) => prop_assert!(a == b || yaml_refuses(&json), "{a:?} {b:?}"),
            (Err(_), Err(_)) => {}
            (Ok(_), Err(_)) if yaml_refuses(&json) => {}
            // YAML reads any scalar as a string; JSON wants a string.
            (Err(ManifestError::Parse { message, .. }), Ok(_)) if message.contains("invalid type") => {}
            // serde_json reads a struct from an array of its fields in order; YAML wants a map.
            (Ok(_), Err(ManifestError::Parse { message, .. })) if message.contains("invalid type: sequence") => {}
            _ => prop_assert!(false, "JSON {:?} but YAML {:?} for {}", from_json.as_ref().err(), from_yaml.as_ref().err(), json),
        }
        check(from_json)?;
        check(from_yaml)?;
        let yaml = serde_yaml_ng::to_string(&doc).unwrap();
        check(Function::from_yaml(&yaml))?;
    }

    #[test]
    fn yaml_text_edits_never_panic(
        f in function(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0..3u8, ".{0,3}"), 1..5),
    ) {
        let mut text = serde_yaml_ng::to_string(&f).unwrap();
        for (pick, kind, s) in edits {
            let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            let i = *pick.get(&bounds);
            match kind {
                0 => text.insert_str(i, &s),
                1 => { let end = bounds.iter().copied().find(|b| *b > i).unwrap_or(i); text.replace_range(i..end, ""); }
                _ => { let end = bounds.iter().copied().find(|b| *b > i).unwrap_or(i); text.replace_range(i..end, &s); }
            }
        }
        check(Function::from_yaml(&text))?;
        if let Ok(all) = Function::all_from_yaml(&text) {
            all.iter().for_each(assert_invariants);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in prop_oneof![".{0,200}", "[-:{}\\[\\],&*!|>'\"%@` \n a-z0-9]{0,200}"]) {
        check(Function::from_yaml(&text))?;
        check(Function::from_json(&text))?;
        let _ = Function::all_from_yaml(&text);
    }

    #[test]
    fn deeply_nested_documents_are_refused_not_overflowed(depth in prop_oneof![1usize..40, 40usize..200, 200usize..5000], open in prop::sample::select(vec!["[", "{a: ", "{\"not\": "])) {
        let close = match open { "[" => "]", _ => "}" };
        let doc = format!("apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: {{name: a}}\nspec: {{component: a.wasm, triggers: [{{name: t, events: {{filter: {}{{exact: {{type: x}}}}{}}}}}]}}\n", open.repeat(depth), close.repeat(depth));
        let parsed = Function::from_yaml(&doc);
        if open.contains("not") {
            // Filters nest at most 32 levels, so that what is accepted reads back from JSON.
            prop_assert_eq!(parsed.is_ok(), depth <= 32, "{:?}", parsed.as_ref().err());
        }
        check(parsed)?;
        check(Function::from_json(&serde_json::to_string(&serde_yaml_ng::from_str::<Value>(&doc).unwrap_or(Value::Null)).unwrap()))?;
    }
}
