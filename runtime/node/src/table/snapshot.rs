//! A snapshot of the function table and routing on it: which service (a function with its revisions) serves
//! each host, path and route prefix. Immutable; the table's owner swaps in a new one on every change, and a
//! request routes through the snapshot it loaded.

use crate::revision::Revision;
use crate::service::Service;
use imbl::OrdMap;
use std::sync::Arc;
use wasmfn_api::FunctionKey;

/// An immutable snapshot; requests route through the snapshot they loaded. The map is persistent: the next
/// snapshot shares all but the changed function's path with this one, so a change costs O(log n), not a copy.
#[derive(Default, Clone)]
pub(crate) struct Table {
    pub(crate) functions: OrdMap<FunctionKey, Arc<Service>>,
    /// Extra path prefixes, longest first.
    routes: Arc<Vec<(String, Arc<Service>)>>,
}

fn has_routes(s: Option<&Arc<Service>>) -> bool {
    s.is_some_and(|s| !s.state.function.spec.routes.is_empty())
}

/// Where a request goes and how much of its path to strip.
pub(crate) struct Routed {
    pub(crate) revision: Arc<Revision>,
    pub(crate) strip: usize,
}

impl Table {
    pub(crate) fn with(&self, service: Arc<Service>) -> Table {
        let mut functions = self.functions.clone();
        let key = service.state.function.key();
        // The route list holds the services that have routes: rebuilt only when one of those changes.
        let rebuild = has_routes(Some(&service)) || has_routes(functions.get(&key));
        functions.insert(key, service);
        self.next(functions, rebuild)
    }

    pub(crate) fn without(&self, key: &FunctionKey) -> Table {
        let mut functions = self.functions.clone();
        let removed = functions.remove(key);
        self.next(functions, has_routes(removed.as_ref()))
    }

    fn next(&self, functions: OrdMap<FunctionKey, Arc<Service>>, rebuild_routes: bool) -> Table {
        if rebuild_routes {
            return Table::from_functions(functions);
        }
        Table { functions, routes: self.routes.clone() }
    }

    pub(crate) fn from_functions(functions: impl IntoIterator<Item = (FunctionKey, Arc<Service>)>) -> Table {
        let functions: OrdMap<FunctionKey, Arc<Service>> = functions.into_iter().collect();
        let mut routes: Vec<(String, Arc<Service>)> = functions
            .values()
            .flat_map(|s| {
                s.state
                    .function
                    .spec
                    .routes
                    .iter()
                    .map(move |route| (route.path.trim_end_matches('/').to_string(), s.clone()))
            })
            .collect();
        routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Table { functions, routes: Arc::new(routes) }
    }

    /// The function that already claims `path` as a route, other than `key`.
    pub(crate) fn route_owner(&self, path: &str, key: &FunctionKey) -> Option<FunctionKey> {
        let path = path.trim_end_matches('/');
        self.routes
            .iter()
            .find(|(p, s)| p == path && s.state.function.key() != *key)
            .map(|(_, s)| s.state.function.key())
    }

    /// The functions of `namespace`, in name order.
    pub(crate) fn namespace<'a>(
        &'a self,
        namespace: &'a str,
    ) -> impl Iterator<Item = (&'a FunctionKey, &'a Arc<Service>)> {
        self.functions
            .range(FunctionKey::namespace_start(namespace)..)
            .take_while(move |(k, _)| k.namespace == namespace)
    }

    /// The function `key`.
    pub(crate) fn get(&self, key: &FunctionKey) -> Option<&Arc<Service>> {
        self.functions.get(key)
    }

    /// A clash between the names `service` answers on (its own, `<tag>-<name>` per tag) and those of the other
    /// functions of its namespace: (the field at fault, the message). Each name is looked up (as a function,
    /// and as `<tag>-<function>` at each `-`), so the check costs the same however many functions there are.
    pub(crate) fn tag_conflict(&self, service: &Service) -> Option<(String, String)> {
        let f = &service.state.function;
        let (ns, name, me) = (&f.metadata.namespace, &f.metadata.name, f.key());
        let mine =
            std::iter::once((None, name.clone())).chain(service.tags().map(|t| (Some(t), format!("{t}-{name}"))));
        for (my_tag, label) in mine {
            // Who else answers on `label`: a function of that name, or a function `x` with a tag `t`, `t-x`.
            let plain = std::iter::once((None, label.as_str()));
            let tagged = label.match_indices('-').map(|(i, _)| (Some(&label[..i]), &label[i + 1..]));
            let clash = plain.chain(tagged).find_map(|(their_tag, other)| {
                let key = FunctionKey::new(ns, other);
                let s = self.functions.get(&key).filter(|_| key != me)?;
                their_tag.is_none_or(|t| s.tagged(t).is_some()).then_some((their_tag, other))
            });
            let Some((their_tag, other_name)) = clash else { continue };
            let whose = match their_tag {
                Some(t) => format!("the tagged name of {other_name}'s tag `{t}`"),
                None => format!("the function {other_name}"),
            };
            return Some(match my_tag {
                Some(t) => (
                    "spec.traffic".into(),
                    format!("tag `{t}` would answer as `{label}`, which is {whose} in namespace {ns}"),
                ),
                None => ("metadata.name".into(), format!("`{label}` is {whose}")),
            });
        }
        None
    }

    /// The revision for `<function>` or `<tag>-<function>` in a namespace.
    fn lookup(&self, namespace: &str, label: &str) -> Option<Arc<Revision>> {
        if let Some(s) = self.functions.get(&FunctionKey::new(namespace, label)) {
            return Some(s.pick().clone());
        }
        label.match_indices('-').find_map(|(i, _)| {
            let s = self.functions.get(&FunctionKey::new(namespace, &label[i + 1..]))?;
            s.tagged(&label[..i]).cloned()
        })
    }

    /// The function `namespace/name`, path unchanged.
    pub(crate) fn whole(&self, key: &FunctionKey) -> Option<Routed> {
        self.functions.get(key).map(|s| Routed { revision: s.pick().clone(), strip: 0 })
    }

    /// Routes by `Host: [<tag>-]<function>.<namespace>.<domain>`, then by `/<namespace>/[<tag>-]<function>/…`,
    /// then by the functions' own route prefixes. A function is split over its revisions by weight; a tag
    /// reaches one revision.
    pub(crate) fn route(&self, host: Option<&str>, path: &str, domain: &str) -> Option<Routed> {
        if let Some(routed) = self.route_host(host, domain) {
            return Some(routed);
        }
        let mut parts = path.splitn(4, '/');
        if let (Some(""), Some(namespace), Some(function)) = (parts.next(), parts.next(), parts.next())
            && let Some(revision) = self.lookup(namespace, function)
        {
            return Some(Routed { revision, strip: 2 + namespace.len() + function.len() });
        }
        self.routes
            .iter()
            .find(|(prefix, _)| matches_prefix(path, prefix))
            .map(|(prefix, s)| Routed { revision: s.pick().clone(), strip: prefix.len() })
    }

    /// Routes by `Host: [<tag>-]<function>.<namespace>.<domain>` only, path unchanged.
    pub(crate) fn route_host(&self, host: Option<&str>, domain: &str) -> Option<Routed> {
        if let Some(host) = host {
            let host = host
                .rsplit_once(':')
                .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                .map_or(host, |(h, _)| h);
            // Host names are case-insensitive and may end with the root's dot.
            let host = host.strip_suffix('.').unwrap_or(host);
            let host: std::borrow::Cow<'_, str> = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                host.to_ascii_lowercase().into()
            } else {
                host.into()
            };
            if let Some(labels) = host.strip_suffix(domain).and_then(|h| h.strip_suffix('.'))
                && let Some((function, namespace)) = labels.split_once('.')
                && let Some(revision) = self.lookup(namespace, function)
            {
                return Some(Routed { revision, strip: 0 });
            }
        }
        None
    }
}

fn matches_prefix(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revision::Common;
    use crate::state::State;
    use std::time::SystemTime;
    use wasmfn_api::{Function, TrafficTarget};

    /// A service of `ns/name` with revisions 1..=n, the newest ready.
    fn state(ns: &str, name: &str, n: u64) -> State {
        let metrics = crate::metrics::Metrics::new();
        let f = Function::new(ns, name, &format!("sha256:{}", "a".repeat(64)));
        let common = Common::new(&f.key(), &metrics, &Default::default());
        let revisions = (1..=n)
            .map(|g| {
                let digest = crate::blobs::Digest::of(&g.to_le_bytes());
                Arc::new(Revision::new(f.clone(), digest, g, SystemTime::now(), &common))
            })
            .collect();
        State { function: f, revisions, latest: n, ready: n, rollout: None, outcome: None, failed: Default::default() }
    }

    fn service(state: State) -> Arc<Service> {
        Arc::new(Service::new(state).unwrap())
    }

    fn tagged(tag: &str, t: TrafficTarget) -> TrafficTarget {
        TrafficTarget { tag: Some(tag.into()), ..t }
    }

    #[test]
    fn host_routing_ignores_case_port_and_root_dot() {
        let table = Table::default().with(service(state("team", "hello", 1)));
        for host in ["hello.team.fn.test", "Hello.TEAM.fn.test:8080", "hello.team.fn.test.", "[::1]:80"] {
            let routed = table.route(Some(host), "/x", "fn.test");
            assert_eq!(routed.is_some(), !host.starts_with('['), "{host}");
        }
        assert_eq!(table.route(None, "/team/hello/a", "fn.test").unwrap().strip, "/team/hello".len());
        assert!(table.route(None, "/team/hellox/a", "fn.test").is_none());
    }

    #[test]
    fn splits_by_weight_and_tags_reach_one_revision() {
        let mut st = state("default", "hello", 3);
        st.function.spec.traffic = vec![
            tagged("stable", TrafficTarget::revision("hello-1", 90)),
            TrafficTarget::latest(10),
            tagged("preview", TrafficTarget::revision("hello-2", 0)),
        ];
        let table = Table::default().with(service(st));
        fastrand::seed(7);
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            counts[table.route(None, "/default/hello/", "fn.test").unwrap().revision.generation as usize] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!((9_000..=11_000).contains(&counts[3]), "{counts:?}");
        for _ in 0..100 {
            let r = table.route(Some("preview-hello.default.fn.test"), "/", "fn.test").unwrap();
            assert_eq!((r.revision.generation, r.strip), (2, 0));
            let r = table.route(None, "/default/stable-hello/x", "fn.test").unwrap();
            assert_eq!((r.revision.generation, r.strip), (1, "/default/stable-hello".len()));
        }
        assert!(table.route(None, "/default/nope-hello/x", "fn.test").is_none());
    }

    #[test]
    fn rollouts_split_the_latest_share() {
        let mut st = state("default", "hello", 2);
        st.ready = 1;
        st.function.spec.rollout =
            Some(wasmfn_api::Rollout { steps: 4, ..wasmfn_api::Rollout::over(std::time::Duration::from_secs(60)) });
        st.function.spec.traffic = vec![tagged("next", TrafficTarget::latest(100))];
        st.rollout = Some(crate::state::Progress { from: 1, to: 2, step: 1, started: SystemTime::now() });
        let s = service(st);
        assert_eq!((s.percent_of(1), s.percent_of(2)), (75, 25));
        assert_eq!(s.tagged("next").unwrap().generation, 2);
    }

    #[test]
    fn unknown_revisions_and_clashing_tags_are_rejected() {
        let mut st = state("default", "hello", 2);
        st.function.spec.traffic = vec![TrafficTarget::revision("hello-7", 100)];
        let e = Service::new(st).err().unwrap().to_string();
        assert!(
            e.contains("spec.traffic[0].revisionName") && e.contains("hello-7") && e.contains("hello-1, hello-2"),
            "{e}"
        );

        let table = Table::default().with(service(state("default", "canary-hello", 1)));
        let mut st = state("default", "hello", 1);
        st.function.spec.traffic = vec![tagged("canary", TrafficTarget::latest(100))];
        let hello = service(st);
        let (field, e) = table.tag_conflict(&hello).unwrap();
        assert!(field == "spec.traffic" && e.contains("canary-hello"), "{e}");
        let table = Table::default().with(hello);
        let (field, e) = table.tag_conflict(&service(state("default", "canary-hello", 1))).unwrap();
        assert!(field == "metadata.name" && e.contains("tag `canary`"), "{e}");
        assert!(table.tag_conflict(&service(state("other", "canary-hello", 1))).is_none());

        // Two tagged names: tag `a` of `b-c` and tag `a-b` of `c` both answer as `a-b-c`.
        let mut st = state("default", "b-c", 1);
        st.function.spec.traffic = vec![tagged("a", TrafficTarget::latest(100))];
        let table = Table::default().with(service(st));
        let mut st = state("default", "c", 1);
        st.function.spec.traffic = vec![tagged("a-b", TrafficTarget::latest(100))];
        let (field, e) = table.tag_conflict(&service(st)).unwrap();
        assert!(field == "spec.traffic" && e.contains("`a-b-c`") && e.contains("b-c's tag `a`"), "{e}");
    }

    #[test]
    fn prune_keeps_the_newest_and_the_referenced() {
        let mut st = state("default", "hello", 6);
        st.function.spec.traffic = vec![TrafficTarget::revision("hello-1", 50), TrafficTarget::latest(50)];
        st.ready = 4;
        st.failed.insert(2, "bad".into());
        st.prune(2);
        let kept: Vec<u64> = st.revisions.iter().map(|r| r.generation).collect();
        assert_eq!(kept, [1, 4, 5, 6]);
        assert!(st.failed.is_empty());
    }

    #[test]
    fn routes_follow_changes_of_the_functions_that_have_them() {
        let mut routed = state("default", "a", 1);
        routed.function.spec.routes = vec![wasmfn_api::Route { path: "/a".into() }];
        let t = Table::default().with(service(routed.clone()));
        // A change of another function keeps the route list as it was.
        let t = t.with(service(state("default", "b", 1)));
        assert_eq!(t.route(None, "/a/x", "fn.test").map(|r| r.revision.name.clone()).as_deref(), Some("a-1"));
        assert_eq!(t.route_owner("/a", &FunctionKey::new("default", "b")), Some(FunctionKey::new("default", "a")));
        // A new revision of the routed function is what its route reaches next.
        let mut next = state("default", "a", 2);
        next.function.spec.routes = routed.function.spec.routes.clone();
        let t = t.with(service(next));
        assert_eq!(t.route(None, "/a/x", "fn.test").map(|r| r.revision.name.clone()).as_deref(), Some("a-2"));
        // Its route goes with it.
        let t = t.without(&FunctionKey::new("default", "a"));
        assert!(t.route(None, "/a/x", "fn.test").is_none());
        assert!(t.get(&FunctionKey::new("default", "b")).is_some());
    }

    #[test]
    fn prefixes() {
        assert!(matches_prefix("/api", "/api"));
        assert!(matches_prefix("/api/x", "/api"));
        assert!(!matches_prefix("/apix", "/api"));
    }
}
mod props;
