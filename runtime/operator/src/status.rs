//! The status the operator writes: `image`, `digest`, `build`, `url`, the conditions, and readiness aggregated
//! from the nodes' `status.nodes` entries (which the nodes apply themselves, under their own field managers).

use crate::{Config, Context, Error, MANAGER};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use wasmfn_api::{BuildStatus, Condition, FunctionResource, FunctionStatus, condition};

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

    /// The image of an earlier build of the same source hash, if it succeeded.
    pub fn built(&self, hash: &str) -> Option<String> {
        let b = self.status.build.as_ref().filter(|b| b.source_hash == hash)?;
        b.image.clone()
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
        self.status.build = Some(BuildStatus { source_hash: hash.into(), job: None, image: None });
        let message = format!("waiting for a build slot: {running} builds run, at most {max} at once");
        self.set(condition::BUILD_SUCCEEDED, "Unknown", "BuildQueued", message);
    }

    /// The build Job runs.
    pub fn building(&mut self, hash: &str, job: &str, _started: bool) {
        self.status.build = Some(BuildStatus { source_hash: hash.into(), job: Some(job.into()), image: None });
        self.set(condition::BUILD_SUCCEEDED, "Unknown", "Building", format!("Job {job} builds the source"));
    }

    /// The build pushed `image`.
    pub fn build_succeeded(&mut self, hash: &str, job: &str, image: &str, digest: Option<String>) {
        self.status.build =
            Some(BuildStatus { source_hash: hash.into(), job: Some(job.into()), image: Some(image.into()) });
        self.status.image = Some(image.into());
        self.status.digest = digest;
        self.set(condition::BUILD_SUCCEEDED, "True", "Succeeded", format!("built and pushed {image}"));
    }

    /// The build failed; what served before keeps serving.
    pub fn build_failed(&mut self, hash: &str, job: &str, message: &str) {
        self.status.build = Some(BuildStatus { source_hash: hash.into(), job: Some(job.into()), image: None });
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

    /// `Ready`: the current image served by every node that reports, and the latest build (if any) succeeded.
    pub fn readiness(&mut self) {
        let build = self.get(condition::BUILD_SUCCEEDED).cloned();
        let nodes = self.f.status.as_ref().map(|s| s.nodes.clone()).unwrap_or_default();
        let image = self.status.image.clone();
        let serving: Vec<_> = nodes.iter().filter(|n| n.ready && n.image.is_some() && n.image == image).collect();
        self.status.ready_nodes = (!nodes.is_empty()).then(|| format!("{}/{}", serving.len(), nodes.len()));
        self.status.latest_revision = serving.first().and_then(|n| n.revision.clone());
        let (status, reason, message) = match (&build, &image) {
            (Some(b), _) if b.status == "False" => ("False", b.reason.clone(), b.message.clone()),
            (Some(b), None) => ("Unknown", b.reason.clone(), b.message.clone()),
            (None, None) => ("Unknown", "Reconciling".into(), String::new()),
            (_, Some(image)) if nodes.is_empty() => {
                ("Unknown", "WaitingForNodes".into(), format!("no node reports serving {image} yet"))
            }
            (_, Some(image)) if serving.len() == nodes.len() => {
                ("True", "Serving".into(), format!("{} node(s) serve {image}", serving.len()))
            }
            (_, Some(image)) => {
                let lagging = nodes.iter().find(|n| !(n.ready && n.image.as_ref() == Some(image))).expect("one");
                let why = lagging
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("serves {}", lagging.image.as_deref().unwrap_or("nothing yet")));
                ("False", "NodesNotReady".into(), format!("node {}: {why}", lagging.node))
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
