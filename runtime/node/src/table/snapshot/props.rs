//! Property tests of routing on a snapshot: arbitrary hosts and paths never panic and route only to what the
//! table holds, with a strip that leaves the guest an absolute path; every name, tag and route a deploy
//! accepted is reachable, however the host is spelt. Cases: `PROPTEST_CASES` (256 by default).

#![cfg(test)]

use super::{Table, matches_prefix};
use crate::revision::{Common, Revision};
use crate::service::Service;
use crate::state::State;
use proptest::prelude::*;
use std::sync::Arc;
use std::time::SystemTime;
use wasmfn_api::{Function, Route, TrafficTarget};

const DOMAIN: &str = "fn.test";

/// One function as generated: namespace, name, revisions, tags (each on a revision) and routes.
#[derive(Debug, Clone)]
struct Spec {
    namespace: &'static str,
    name: String,
    revisions: u64,
    tags: Vec<(String, u64)>,
    routes: Vec<String>,
}

fn spec() -> impl Strategy<Value = Spec> {
    // Short names from few letters, so that `<tag>-<name>` and other names collide.
    let name = "[ab](-[ab]){0,2}";
    (prop::sample::select(vec!["n1", "n2"]), name, 1..4u64, prop::collection::vec((name, 1..4u64), 0..3)).prop_flat_map(
        |(namespace, name, revisions, tags)| {
            let routes = prop::collection::vec("/r[0-9]{1,2}(/[a-z]{1,2})?/?", 0..3);
            routes.prop_map(move |routes| Spec {
                namespace,
                name: name.clone(),
                revisions,
                tags: tags.iter().map(|(t, g)| (t.clone(), (*g).min(revisions))).collect(),
                routes,
            })
        },
    )
}

fn service(s: &Spec) -> Option<Service> {
    let metrics = crate::metrics::Metrics::new();
    let mut f = Function::new(s.namespace, &s.name, &format!("sha256:{}", "a".repeat(64)));
    f.spec.routes = s.routes.iter().map(|p| Route { path: p.clone() }).collect();
    f.spec.traffic = vec![TrafficTarget::latest(100)];
    for (tag, g) in &s.tags {
        let t = TrafficTarget { tag: Some(tag.clone()), ..TrafficTarget::revision(&f.revision_name(*g), 0) };
        f.spec.traffic.push(t);
    }
    // What a deploy would refuse (a tag twice, a route listed twice) is not a table's to route.
    f.validate().ok()?;
    let common = Common::new(&f.key(), &metrics, &Default::default());
    let revisions = (1..=s.revisions)
        .map(|g| {
            let digest = crate::blobs::Digest::of(&g.to_le_bytes());
            Arc::new(Revision::new(f.clone(), digest, g, SystemTime::now(), &common))
        })
        .collect();
    let n = s.revisions;
    Service::new(State {
        function: f,
        revisions,
        latest: n,
        ready: n,
        rollout: None,
        outcome: None,
        failed: Default::default(),
    })
    .ok()
}

/// A table built as deploys build it: a function whose names or routes clash with the table's is refused.
fn table(specs: &[Spec]) -> Table {
    let mut table = Table::default();
    for s in specs {
        let Some(svc) = service(s) else { continue };
        let key = svc.state.function.key();
        let routes_taken = svc.state.function.spec.routes.iter().any(|r| table.route_owner(&r.path, &key).is_some());
        if table.get(&key).is_none() && table.tag_conflict(&svc).is_none() && !routes_taken {
            table = table.with(Arc::new(svc));
        }
    }
    table
}

/// How a host may be spelt for the same name: case, a port, the root's dot.
fn spell(host: &str, upper: &[bool], port: Option<u16>, dot: bool) -> String {
    let mut h: String =
        host.chars().zip(upper.iter().cycle()).map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c }).collect();
    if dot {
        h.push('.');
    }
    if let Some(p) = port {
        h.push_str(&format!(":{p}"));
    }
    h
}

/// Checks one routing outcome against the table: the strip and who may own the stripped prefix.
fn check(table: &Table, host: Option<&str>, path: &str) -> Result<(), TestCaseError> {
    let Some(routed) = table.route(host, path, DOMAIN) else {
        let routes = table.functions.values().flat_map(|s| s.state.function.spec.routes.clone());
        for r in routes {
            prop_assert!(!matches_prefix(path, r.path.trim_end_matches('/')), "{path} misses route {}", r.path);
        }
        return Ok(());
    };
    let key = routed.revision.function.key();
    let Some(service) = table.get(&key) else {
        return Err(TestCaseError::fail(format!("routed to {key}, which the table does not hold")));
    };
    prop_assert!(service.state.revision(routed.revision.generation).is_some());
    let f = &service.state.function;
    prop_assert!(
        routed.strip <= path.len() && path.is_char_boundary(routed.strip),
        "strip {} of {path:?}",
        routed.strip
    );
    if routed.strip == 0 {
        return Ok(());
    }
    let (prefix, rest) = path.split_at(routed.strip);
    prop_assert!(rest.is_empty() || rest.starts_with('/'), "{path:?} leaves the guest {rest:?}");
    let (ns, name) = (&f.metadata.namespace, &f.metadata.name);
    let by_name = prefix == format!("/{ns}/{name}") || service.tags().any(|t| prefix == format!("/{ns}/{t}-{name}"));
    let by_route = f.spec.routes.iter().any(|r| r.path.trim_end_matches('/') == prefix);
    prop_assert!(by_name || by_route, "{path:?} stripped as {prefix:?} for {}", f.key());
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_hosts_and_paths_route_only_to_the_table(
        specs in prop::collection::vec(spec(), 1..6),
        host in prop::option::of(prop_oneof![".{0,20}", "[abn12.:-]{0,16}(\\.fn\\.test)?(:[0-9]{0,5})?\\.?"]),
        path in prop_oneof![".{0,24}", "(/(n1|n2|r[0-9]|[ab-]{1,5}|)){0,4}/?"],
    ) {
        let table = table(&specs);
        check(&table, host.as_deref(), &path)?;
        check(&table, None, &path)?;
        if let Some(h) = &host {
            let _ = table.route_host(Some(h), DOMAIN);
        }
    }

    #[test]
    fn every_name_and_tag_is_reachable_by_host_and_path(
        specs in prop::collection::vec(spec(), 1..6),
        upper in prop::collection::vec(any::<bool>(), 1..8),
        port in prop::option::of(any::<u16>()),
        dot in any::<bool>(),
        rest in "(/[a-z]{0,3}){0,2}",
    ) {
        let table = table(&specs);
        for (key, svc) in table.functions.iter() {
            let (ns, name) = (&key.namespace, &key.name);
            let mut labels = vec![(name.clone(), None)];
            labels.extend(svc.tags().map(|t| (format!("{t}-{name}"), svc.tagged(t).map(|r| r.generation))));
            for (label, generation) in labels {
                let host = spell(&format!("{label}.{ns}.{DOMAIN}"), &upper, port, dot);
                let by_host = table.route(Some(&host), "/x", DOMAIN);
                let path = format!("/{ns}/{label}{rest}");
                let by_path = table.route(None, &path, DOMAIN);
                for routed in [by_host, by_path] {
                    prop_assert!(routed.is_some(), "{label} in {ns} unreachable ({host}, {path})");
                    let r = routed.unwrap();
                    prop_assert_eq!(&r.revision.function.key(), key);
                    if let Some(g) = generation {
                        prop_assert_eq!(r.revision.generation, g);
                    }
                }
                check(&table, None, &path)?;
            }
        }
    }

    #[test]
    fn every_route_reaches_its_function_or_a_longer_route(specs in prop::collection::vec(spec(), 1..6), rest in "(/[a-z]{0,3}){0,2}") {
        let table = table(&specs);
        for (key, svc) in table.functions.iter() {
            for r in &svc.state.function.spec.routes {
                let path = format!("{}{rest}", r.path.trim_end_matches('/'));
                let routed = table.route(None, &path, DOMAIN);
                prop_assert!(routed.is_some(), "route {} of {} unreachable as {path}", r.path, key);
                let routed = routed.unwrap();
                if routed.revision.function.key() != *key {
                    // Only a longer route of another function may take it.
                    prop_assert!(routed.strip > r.path.trim_end_matches('/').len(), "{path} went to {}", routed.revision.function.key());
                }
                check(&table, None, &path)?;
            }
        }
    }
}
