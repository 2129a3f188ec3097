//! What the admin API and the CLI see of a function: its current revision, traffic, rollout, counters and
//! URLs, built from a service in the table snapshot.

use crate::rollout::share;
use crate::service::Service;
use crate::state::Phase;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use wasmfn_api::{Function, FunctionSpec};

/// A function as the node sees it: its current revision and counters.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The newest revision, `<name>-<n>`.
    pub revision: String,
    /// The revision `latestRevision: true` resolves to (the newest, unless a rollout or rollback holds it back).
    pub latest_ready_revision: String,
    /// The newest revision's component digest.
    pub digest: String,
    /// When the newest revision was created (RFC 3339).
    pub created: String,
    /// How requests split now, with the URL of each tag.
    pub traffic: Vec<TrafficStatus>,
    /// The rollout in progress, or how the last one ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    /// Where the function answers (host form, then path form).
    pub urls: Vec<String>,
    /// Requests running now, over all its revisions.
    pub in_flight: i64,
    /// Requests waiting for a slot now.
    pub queued: i64,
    /// Requests answered.
    pub requests: u64,
    /// Of which 5xx, over the retained revisions.
    pub errors: u64,
    /// Median latency of the revision taking the largest share of the traffic (ms), once it served a request.
    pub p50_ms: Option<f64>,
    /// 99th percentile of that revision (ms).
    pub p99_ms: Option<f64>,
    /// Requests that loaded code into memory first.
    pub cold_starts: u64,
    /// Requests served by code already in memory.
    pub warm_starts: u64,
    /// Whether compiled code is in memory now.
    pub loaded: bool,
    /// The last error a request of this function hit.
    pub last_error: Option<String>,
    /// The applied spec, with `component` pinned to the digest.
    pub spec: FunctionSpec,
}

/// The result of a deploy.
#[derive(Clone, Debug, Serialize)]
pub struct Deployed {
    /// The function after the deploy.
    pub function: FunctionInfo,
    /// `false` when the manifest and component were identical to the serving revision.
    pub changed: bool,
    /// Something to know about the result, e.g. that the newest revision is out of service after a rollback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One share of a function's traffic, resolved to a revision.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStatus {
    /// The revision, `<name>-<n>`.
    pub revision_name: String,
    /// Its share of the requests.
    pub percent: u32,
    /// Whether the share follows the latest ready revision (a rollout splits it in two).
    pub latest_revision: bool,
    /// The tag routed to this revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Where the tag answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A rollout in progress, or how the last one ended.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// `Progressing`, `Succeeded`, `RolledBack` or `Cancelled`.
    pub state: String,
    /// The revision traffic moves away from.
    pub from: String,
    /// The revision traffic moves to.
    pub to: String,
    /// The share of the latest traffic `to` gets now.
    pub percent: u32,
    /// Steps taken.
    pub step: u32,
    /// Steps in all.
    pub steps: u32,
    /// Why it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started (in progress) or ended (RFC 3339).
    pub since: String,
}

/// A revision as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    /// `<name>-<n>`.
    pub name: String,
    /// The component's digest.
    pub digest: String,
    /// When the revision was created (RFC 3339).
    pub created: String,
    /// Share of the function's requests it gets now.
    pub percent: u32,
    /// Tags routed to it.
    pub tags: Vec<String>,
    /// Whether it is the newest revision.
    pub latest: bool,
    /// Whether `latestRevision: true` resolves to it.
    pub ready: bool,
    /// Requests answered.
    pub requests: u64,
    /// Requests answered with a 5xx status.
    pub errors: u64,
    /// Median latency to the response head, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency to the response head, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Why a rollback took it out of service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Where the node answers: the ingress address and the functions' domain.
pub(crate) struct Urls<'a> {
    pub(crate) addr: SocketAddr,
    pub(crate) domain: &'a str,
}

impl Urls<'_> {
    /// `http://<name>.<namespace>.<domain>:<port>/` and `http://<addr>/<ns>/<name>/`.
    pub(crate) fn function(&self, namespace: &str, name: &str) -> Vec<String> {
        let (addr, domain) = (self.addr, self.domain);
        vec![
            format!("http://{name}.{namespace}.{domain}:{}/", addr.port()),
            format!("http://{addr}/{namespace}/{name}/"),
        ]
    }

    /// `http://<tag>-<name>.<namespace>.<domain>:<port>/`.
    fn tag(&self, f: &Function, tag: &str) -> String {
        let (name, ns) = (&f.metadata.name, &f.metadata.namespace);
        format!("http://{tag}-{name}.{ns}.{}:{}/", self.domain, self.addr.port())
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The function view of a service.
pub(crate) fn info(service: &Service, urls: &Urls<'_>) -> FunctionInfo {
    let st = &service.state;
    let r = service.latest();
    let meta = &st.function.metadata;
    let s = &r.stats;
    // Latency is the revision taking the largest share of the traffic now.
    let main = service.shares.iter().filter(|sh| sh.percent > 0).max_by_key(|sh| sh.percent).map(|sh| &sh.revision);
    FunctionInfo {
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        revision: r.name.clone(),
        latest_ready_revision: st.name_of(st.ready),
        digest: r.digest.to_string(),
        created: time(r.created),
        traffic: traffic(service, urls),
        rollout: rollout(service),
        urls: urls.function(&meta.namespace, &meta.name),
        in_flight: st.revisions.iter().map(|r| r.gate.in_flight() as i64).sum(),
        queued: r.gate.queued() as i64,
        requests: s.total(),
        errors: st.revisions.iter().map(|r| r.counters.errors()).sum(),
        p50_ms: main.and_then(|r| ms(r.counters.latency().quantile(0.5))),
        p99_ms: main.and_then(|r| ms(r.counters.latency().quantile(0.99))),
        cold_starts: s.cold.get(),
        warm_starts: s.warm.load(Ordering::Relaxed),
        loaded: st.revisions.iter().any(|r| r.loaded().is_some()),
        last_error: s.last_error(),
        spec: st.function.spec.clone(),
    }
}

/// Says when the manifest just applied is not what serves the latest traffic: its revision failed a rollout or
/// was rolled back.
pub(crate) fn note(s: &Service) -> Option<String> {
    let st = &s.state;
    let reason = st.failed.get(&st.latest)?;
    Some(format!(
        "{} is out of service ({reason}); {} serves the latest traffic. Change the configuration to deploy again, or `wasmfn rollback --to {}`",
        st.name_of(st.latest),
        st.name_of(st.ready),
        st.name_of(st.latest)
    ))
}

fn traffic(s: &Service, urls: &Urls<'_>) -> Vec<TrafficStatus> {
    s.shares
        .iter()
        .map(|share| TrafficStatus {
            revision_name: share.revision.name.clone(),
            percent: share.percent,
            latest_revision: share.latest,
            url: share.tag.as_deref().map(|t| urls.tag(&s.state.function, t)),
            tag: share.tag.clone(),
        })
        .collect()
}

fn rollout(s: &Service) -> Option<RolloutStatus> {
    let st = &s.state;
    let steps = st.function.spec.rollout.as_ref().map_or(1, |r| r.steps);
    if let Some(r) = &st.rollout {
        return Some(RolloutStatus {
            state: Phase::Progressing.as_str().into(),
            from: st.name_of(r.from),
            to: st.name_of(r.to),
            percent: share(100, r.step, steps),
            step: r.step,
            steps,
            reason: None,
            since: time(r.started),
        });
    }
    let o = st.outcome.as_ref()?;
    let done = o.state == crate::state::Ended::Succeeded;
    Some(RolloutStatus {
        state: Phase::Ended(o.state).as_str().into(),
        from: st.name_of(o.from),
        to: st.name_of(o.to),
        percent: if done { 100 } else { 0 },
        step: if done { steps } else { 0 },
        steps,
        reason: Some(o.reason.clone()),
        since: time(o.at),
    })
}

fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0)
}

/// Every retained revision, newest first.
pub(crate) fn revisions(service: &Service) -> Vec<RevisionInfo> {
    let s = &service.state;
    s.revisions
        .iter()
        .rev()
        .map(|r| RevisionInfo {
            name: r.name.clone(),
            digest: r.digest.to_string(),
            created: time(r.created),
            percent: service.percent_of(r.generation),
            tags: service
                .shares
                .iter()
                .filter(|x| x.revision.generation == r.generation)
                .filter_map(|x| x.tag.clone())
                .collect(),
            latest: r.generation == s.latest,
            ready: r.generation == s.ready,
            requests: r.counters.requests(),
            errors: r.counters.errors(),
            p50_ms: ms(r.counters.latency().quantile(0.5)),
            p99_ms: ms(r.counters.latency().quantile(0.99)),
            failure: s.failed.get(&r.generation).cloned(),
        })
        .collect()
}
