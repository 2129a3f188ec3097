//! Property tests of the manifest parsers: arbitrary and structure-aware mutated input never panics, is
//! accepted or rejected with an error that names the problem, and what is accepted keeps the manifest's rules
//! and round-trips. Cases per property: `PROPTEST_CASES` (256 by default); longer on demand:
//! `PROPTEST_CASES=10000 cargo test -p wasmfn-api --test props` (README, Tests).

mod admin;
mod fields;
mod manifest;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use std::time::Duration;
use wasmfn_api::*;

/// A DNS label of 1 to 12 characters.
pub fn label() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,10}[a-z0-9])?"
}

/// A duration from 1 ms to `max_secs`, whole milliseconds (or seconds, or with nanoseconds).
pub fn duration(max_secs: u64) -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1..=max_secs).prop_map(Duration::from_secs),
        (1..=max_secs * 1000).prop_map(Duration::from_millis),
        (0..max_secs, 1..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

/// A quantity from 1 Mi to 16 Gi, written plain or with a binary suffix on output.
pub fn memory() -> impl Strategy<Value = Quantity> {
    prop_oneof![
        (1u64..=16 << 10).prop_map(|mi| Quantity::from_bytes(mi << 20)),
        (1u64 << 20..=1 << 34).prop_map(Quantity::from_bytes)
    ]
}

/// A valid filter, at most `depth` levels of `all`/`any`/`not`.
pub fn filter() -> impl Strategy<Value = Filter> {
    let attrs = || btree_map("[a-z0-9]{1,8}", ".{0,8}", 1..3);
    let leaf = prop_oneof![
        attrs().prop_map(Filter::Exact),
        attrs().prop_map(Filter::Prefix),
        attrs().prop_map(Filter::Suffix)
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 1..3).prop_map(Filter::All),
            vec(inner.clone(), 1..3).prop_map(Filter::Any),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    let sink = prop_oneof![
        label().prop_map(|f| Sink { function: Some(f), url: None, nats: None }),
        "https?://[a-z]{1,8}(:[0-9]{2,4})?/[a-z]{0,6}".prop_map(|u| Sink { function: None, url: Some(u), nats: None }),
        "[a-z.]{1,10}".prop_map(|s| Sink {
            function: None,
            url: None,
            nats: Some(NatsSink { url: "nats://127.0.0.1:4222".into(), subject: s }),
        }),
    ];
    let policy = prop_oneof![Just(BackoffPolicy::Linear), Just(BackoffPolicy::Exponential)];
    (0..=100u32, policy, duration(3600), option::of(duration(3600)), option::of(sink)).prop_map(
        |(retry, backoff_policy, backoff_delay, timeout, dead_letter_sink)| Delivery {
            retry,
            backoff_policy,
            backoff_delay,
            timeout,
            dead_letter_sink,
        },
    )
}

fn trigger() -> impl Strategy<Value = Trigger> {
    let events = option::of(filter()).prop_map(|filter| BrokerTrigger { filter });
    let cron = (
        prop::sample::select(vec!["*/5 * * * *", "0 0 * * *", "@hourly", "0 */2 * * * *", "15 3 1 * MON"]),
        prop::sample::select(vec![None, Some("UTC"), Some("Europe/Berlin")]),
        option::of(".{0,10}"),
        any::<bool>(),
    )
        .prop_map(|(s, tz, data, allow_overlap)| CronSource {
            schedule: s.into(),
            timezone: tz.map(Into::into),
            data,
            content_type: None,
            allow_overlap,
        });
    let nats =
        ("[a-z.*>]{1,10}", "[A-Za-z0-9_-]{1,10}", option::of("[a-z_-]{1,8}")).prop_map(|(subject, stream, q)| {
            NatsSource { url: "nats://localhost:4222".into(), subject, stream, queue_group: q }
        });
    let source = prop_oneof![
        events.prop_map(|e| (Some(e), None, None)),
        cron.prop_map(|c| (None, Some(c), None)),
        nats.prop_map(|n| (None, None, Some(n))),
    ];
    (label(), source, delivery()).prop_map(|(name, (events, cron, nats), delivery)| Trigger {
        name,
        events,
        cron,
        nats,
        delivery,
    })
}

/// Traffic of function `name`: 1 to 4 targets whose percents add up to 100, tags unique.
pub fn traffic(name: String) -> impl Strategy<Value = Vec<TrafficTarget>> {
    let target = (prop::option::of(1..40u64), prop::option::of(label()));
    (vec(target, 1..4), vec(0..=100u32, 3)).prop_map(move |(targets, cuts)| {
        let mut cuts: Vec<u32> = cuts[..targets.len() - 1].to_vec();
        cuts.sort();
        let mut prev = 0;
        let mut tags = std::collections::BTreeSet::new();
        targets
            .into_iter()
            .enumerate()
            .map(|(i, (generation, tag))| {
                let bound = cuts.get(i).copied().unwrap_or(100);
                let percent = bound - prev;
                prev = bound;
                let tag = tag.filter(|t| tags.insert(t.clone()));
                match generation {
                    Some(g) => TrafficTarget { tag, ..TrafficTarget::revision(&revision_name(&name, g), percent) },
                    None => TrafficTarget { tag, ..TrafficTarget::latest(percent) },
                }
            })
            .collect()
    })
}

fn spec(name: String) -> impl Strategy<Value = FunctionSpec> {
    let component = prop_oneof!["sha256:[0-9a-f]{64}", "[a-z/._-]{1,20}\\.wasm"];
    let limits = (duration(24 * 3600), memory(), (0u64..1 << 40).prop_map(Quantity::from_bytes))
        .prop_map(|(timeout, memory, max_request_body)| Limits { timeout, memory, max_request_body });
    let reuse = (1..10_000u32, duration(3600), 1..=MAX_IDLE).prop_map(|(max_requests, idle_timeout, max_idle)| Reuse {
        max_requests,
        idle_timeout,
        max_memory: Some(Quantity::from_bytes(1 << 20)),
        max_idle,
    });
    let scaling = (any::<u32>(), any::<u32>(), duration(3600), option::of(reuse)).prop_map(
        |(max_concurrency, max_queue, queue_timeout, reuse)| Scaling {
            max_concurrency,
            max_queue,
            queue_timeout,
            reuse,
        },
    );
    let env = btree_map("[A-Za-z_][A-Za-z0-9_]{0,8}", any::<String>(), 0..4)
        .prop_map(|m| m.into_iter().map(|(name, value)| EnvVar { name, value }).collect::<Vec<_>>());
    let routes = prop::collection::btree_set("(/[a-z0-9_.-]{1,6}){1,3}/?", 0..3)
        .prop_map(|s| s.into_iter().map(|path| Route { path }).collect::<Vec<_>>());
    // Fractions as people write them: serde_json reads 17-digit floats to within one ulp, not exactly.
    let rate = (0..=1000u32).prop_map(|n| f64::from(n) / 1000.0);
    let rollout = (1..=100u32, duration(7 * 24 * 3600), rate, 1..1000u64).prop_map(
        |(steps, duration, max_error_rate, min_requests)| Rollout { steps, duration, max_error_rate, min_requests },
    );
    let triggers = vec(trigger(), 0..3).prop_map(|mut ts| {
        let mut seen = std::collections::BTreeSet::new();
        ts.retain(|t| seen.insert(t.name.clone()));
        ts
    });
    let traffic = prop_oneof![Just(Vec::new()), traffic(name)];
    (component, limits, scaling, env, routes, traffic, option::of(rollout), triggers).prop_map(
        |(component, limits, scaling, env, routes, traffic, rollout, triggers)| FunctionSpec {
            component: Some(component),
            env,
            scaling,
            limits,
            routes: dedupe_routes(routes),
            traffic,
            rollout,
            triggers,
            ..Default::default()
        },
    )
}

/// Routes that differ only by a trailing `/` are one route.
fn dedupe_routes(mut routes: Vec<Route>) -> Vec<Route> {
    let mut seen = std::collections::BTreeSet::new();
    routes.retain(|r| seen.insert(r.path.trim_end_matches('/').to_string()));
    routes
}

/// A valid `Function`, every part of the spec exercised.
pub fn function() -> impl Strategy<Value = Function> {
    let meta = (label(), label(), btree_map(".{1,8}", ".{0,8}", 0..3), btree_map(".{1,8}", ".{0,8}", 0..2));
    meta.prop_flat_map(|(name, namespace, labels, annotations)| {
        spec(name.clone()).prop_map(move |spec| {
            let mut f = Function::new(&namespace, &name, "x.wasm");
            f.metadata.labels = labels.clone();
            f.metadata.annotations = annotations.clone();
            f.spec = spec;
            f
        })
    })
}

/// The rules an accepted manifest keeps, checked independently of `validate`.
pub fn assert_invariants(f: &Function) {
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    assert!(dns(&f.metadata.name) && dns(&f.metadata.namespace), "{:?}", f.metadata);
    let key = f.key();
    assert_eq!(FunctionKey::parse(&key.to_string()), Some(key));
    if let Some(hex) = f.spec.component.as_deref().and_then(|c| c.strip_prefix("sha256:")) {
        assert!(hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{hex}");
    }
    let l = &f.spec.limits;
    assert!(!l.timeout.is_zero() && l.timeout <= MAX_TIMEOUT && l.memory.bytes() >= 1 << 20);
    assert!(f.spec.scaling.queue_timeout <= MAX_QUEUE_TIMEOUT);
    for r in &f.spec.routes {
        assert!(r.path.starts_with('/') && r.path.len() > 1 && !r.path.contains("//"), "{}", r.path);
        assert!(!r.path.contains(['?', '#', ' ']), "{}", r.path);
    }
    if !f.spec.traffic.is_empty() {
        assert_eq!(f.spec.traffic.iter().map(|t| u64::from(t.percent)).sum::<u64>(), 100);
    }
    for t in &f.spec.traffic {
        if let Some(name) = &t.revision_name {
            let g = f.revision_generation(name).expect("a named revision of this function");
            assert_eq!(&f.revision_name(g), name);
        }
        if let Some(tag) = &t.tag {
            assert!(dns(tag) && dns(&format!("{tag}-{}", f.metadata.name)), "{tag}");
        }
    }
    for (i, e) in f.spec.env.iter().enumerate() {
        assert!(!e.name.is_empty() && !e.name.contains(['=', '\0']), "{}", e.name);
        assert!(f.spec.env[..i].iter().all(|o| o.name != e.name), "{} twice", e.name);
    }
    for t in &f.spec.triggers {
        assert!(dns(&t.name));
        assert_eq!([t.events.is_some(), t.cron.is_some(), t.nats.is_some()].iter().filter(|s| **s).count(), 1);
    }
}

/// An error's message names what is wrong: a path or field, and a reason.
pub fn assert_names_the_problem(e: &ManifestError) {
    let text = e.to_string();
    match e {
        // The path is `.` for the document; a field named by an empty key (`"": 1`) shows as an empty path.
        ManifestError::Parse { message, .. } => assert!(!message.is_empty(), "{text}"),
        ManifestError::Invalid { field, message } => {
            assert!(!field.is_empty() && !message.is_empty() && text.contains(field.as_str()), "{text}");
        }
    }
}
