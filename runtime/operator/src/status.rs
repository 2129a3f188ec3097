//! The status the operator writes: `image`, `digest`, `build`, `url`, the conditions, and readiness aggregated
//! from the nodes' `status.nodes` entries (which the nodes apply themselves, under their own field managers).

use crate::{Config, Context, Error, MANAGER};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::collections::HashSet;
use wasmfn_api::{BuildStatus, Condition, FunctionResource, FunctionStatus, NodeStatus, condition};

/// The status a reconcile wants, and the events its changes deserve.
pub struct Plan<'a> {
    f: &'a FunctionResource,
    /// The operator's part of the status.
    pub status: FunctionStatus,
}

/// (warning, reason, note) of an Event to publish.
pub type PlannedEvent = (bool, String, String);

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl<'a> Plan<'a> {
    /// Starts from the current status, without the nodes' entries.
    pub fn new(f: &'a FunctionResource, config: &Config) -> Plan<'a> {
        let mut status = f.status.clone().unwrap_or_default();
        status.nodes.clear();
        status.observed_generation = f.metadata.generation;
        let (name, ns) = (f.name_any(), f.namespace().unwrap_or_default());
        status.url = Some(format!("http://{name}.{ns}.{}/", config.domain));
        Plan { f, status }
    }

    fn set(&mut self, type_: &str, status: &str, reason: &str, message: impl Into<String>) {
        let mut c = Condition::new(type_, status, reason, message);
        c.observed_generation = self.f.metadata.generation;
        let previous = self.status.conditions.iter().position(|p| p.type_ == type_);
        c.last_transition_time = match previous.map(|i| &self.status.conditions[i]) {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(now()),
        };
        match previous {
            Some(i) => self.status.conditions[i] = c,
            None => self.status.conditions.push(c),
        }
    }

    fn get(&self, type_: &str) -> Option<&Condition> {
        self.status.conditions.iter().find(|c| c.type_ == type_)
    }

    /// How an earlier build of the same source hash ended: its image, or its failure (not retried).
    pub fn built(&self, hash: &str) -> Option<Result<String, String>> {
        let b = self.status.build.as_ref().filter(|b| b.source_hash == hash)?;
        match (&b.image, &b.failure) {
            (Some(image), _) => Some(Ok(image.clone())),
            (None, Some(failure)) => Some(Err(failure.clone())),
            (None, None) => None,
        }
    }

    /// Whether the operator already resolved `spec.image` for this generation.
    pub fn resolved_current(&self) -> bool {
        let ok = self.get(condition::BUILD_SUCCEEDED).is_some_and(|c| c.status == "True");
        let current = self.f.status.as_ref().and_then(|s| s.observed_generation) == self.f.metadata.generation;
        ok && current && self.status.image.is_some()
    }

    /// The source hash is built: nothing to do.
    pub fn serving(&mut self, image: String) {
        self.status.image = Some(image);
    }

    /// The spec breaks a rule; nodes keep serving what they served.
    pub fn invalid(&mut self, message: String) {
        self.set(condition::BUILD_SUCCEEDED, "False", "InvalidSpec", message);
    }

    /// Too many builds run.
    pub fn queued(&mut self, hash: &str, running: usize, max: usize) {
        self.status.build = Some(BuildStatus { source_hash: hash.into(), ..Default::default() });
        let message = format!("waiting for a build slot: {running} builds run, at most {max} at once");
        self.set(condition::BUILD_SUCCEEDED, "Unknown", "BuildQueued", message);
    }

    /// The build Job runs.
    pub fn building(&mut self, hash: &str, job: &str, _started: bool) {
        self.status.build = Some(BuildStatus { source_hash: hash.into(), job: Some(job.into()), ..Default::default() });
        self.set(condition::BUILD_SUCCEEDED, "Unknown", "Building", format!("Job {job} builds the source"));
    }

    /// The build pushed `image`.
    pub fn build_succeeded(&mut self, hash: &str, job: &str, image: &str, digest: Option<String>) {
        self.status.build = Some(BuildStatus {
            source_hash: hash.into(),
            job: Some(job.into()),
            image: Some(image.into()),
            failure: None,
        });
        self.status.image = Some(image.into());
        self.status.digest = digest;
        self.set(condition::BUILD_SUCCEEDED, "True", "Succeeded", format!("built and pushed {image}"));
    }

    /// The build failed; what served before keeps serving.
    pub fn build_failed(&mut self, hash: &str, job: &str, message: &str) {
        self.status.build = Some(BuildStatus {
            source_hash: hash.into(),
            job: Some(job.into()),
            image: None,
            failure: Some(message.into()),
        });
        self.set(condition::BUILD_SUCCEEDED, "False", "BuildFailed", message);
    }

    /// `spec.image` resolved to `pinned`.
    pub fn resolved(&mut self, pinned: &str, digest: Option<String>) {
        self.status.build = None;
        self.status.image = Some(pinned.into());
        self.status.digest = digest;
        self.set(condition::BUILD_SUCCEEDED, "True", "ImageResolved", format!("spec.image is {pinned}"));
    }

    /// `spec.image` could not be resolved.
    pub fn unresolved(&mut self, image: &str, message: &str) {
        self.set(condition::BUILD_SUCCEEDED, "False", "ImageUnavailable", format!("{image}: {message}"));
    }

    /// `Ready`: `True` when every reporting node serves the current image at the current generation; `False` on a
    /// failure (a failed build, a rejected spec, a node that cannot deploy); `Unknown` while work is under way
    /// (building, nodes catching up).
    /// With `live` (the cluster's node names), entries of nodes that left are ignored.
    pub fn readiness(&mut self, live: Option<&HashSet<String>>) {
        let build = self.get(condition::BUILD_SUCCEEDED).cloned();
        let mut nodes = self.f.status.as_ref().map(|s| s.nodes.clone()).unwrap_or_default();
        if let Some(live) = live {
            nodes.retain(|n| live.contains(&n.node));
        }
        let image = self.status.image.clone();
        let generation = self.f.metadata.generation;
        let serves = |n: &&NodeStatus| n.ready && n.image.is_some() && n.image == image;
        let current = |n: &&NodeStatus| serves(n) && n.observed_generation == generation;
        let serving: Vec<_> = nodes.iter().filter(serves).collect();
        self.status.ready_nodes =
            (!nodes.is_empty()).then(|| format!("{}/{}", nodes.iter().filter(current).count(), nodes.len()));
        self.status.latest_revision = serving.first().and_then(|n| n.revision.clone());
        let failing = nodes.iter().find(|n| !n.ready && n.message.is_some() && n.observed_generation == generation);
        let (status, reason, message) = match (&build, &image) {
            (Some(b), _) if b.status != "True" => (b.status.as_str(), b.reason.clone(), b.message.clone()),
            (_, None) => ("Unknown", "Reconciling".into(), String::new()),
            (_, Some(_)) if nodes.is_empty() => {
                ("Unknown", "WaitingForNodes".into(), "no node has reported yet".into())
            }
            (_, Some(_)) if failing.is_some() => {
                let n = failing.expect("checked");
                ("False", "NodesNotReady".into(), format!("node {}: {}", n.node, n.message.as_deref().unwrap_or("")))
            }
            (_, Some(image)) if nodes.iter().all(|n| current(&n)) => {
                ("True", "Serving".into(), format!("{} node(s) serve {image}", nodes.len()))
            }
            (_, Some(image)) => {
                let done = nodes.iter().filter(current).count();
                ("Unknown", "RollingOut".into(), format!("{done}/{} nodes serve {image}", nodes.len()))
            }
        };
        self.set(condition::READY, status, &reason, message);
    }

    /// Applies the status when it changed, and returns the events for the conditions that changed.
    pub async fn commit(self, ctx: &Context) -> Result<Vec<PlannedEvent>, Error> {
        let mut current = self.f.status.clone().unwrap_or_default();
        current.nodes.clear();
        if current == self.status {
            return Ok(Vec::new());
        }
        let ns = self.f.namespace().unwrap_or_default();
        let api: Api<FunctionResource> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({"apiVersion": wasmfn_api::API_VERSION, "kind": wasmfn_api::KIND, "status": self.status});
        api.patch_status(&self.f.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
        // One event per changed condition, but none for `Ready: Unknown`: it repeats the build's step.
        let changed = self.status.conditions.iter().filter(|c| {
            let before = current.conditions.iter().find(|p| p.type_ == c.type_);
            let unknown_ready = c.type_ == condition::READY && c.status == "Unknown";
            !unknown_ready && before.is_none_or(|p| (&p.status, &p.reason) != (&c.status, &c.reason))
        });
        let mut events: Vec<PlannedEvent> = Vec::new();
        for c in changed {
            // `Ready` often repeats the build's reason and message: one event says it.
            if !events.iter().any(|(_, reason, _)| *reason == c.reason) {
                events.push((c.status == "False", c.reason.clone(), c.message.clone()));
            }
        }
        Ok(events)
    }
}
