//! `spec.scaling`: concurrency, queueing and opt-in instance reuse.

use crate::{DURATION_PATTERN, Limits, MAX_QUEUE_TIMEOUT, ManifestError, Quantity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How many requests a function serves at once on one node, and how many may wait.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scaling {
    /// Hard limit of concurrent requests (instances) per node; 0 means only the node's capacity limits it
    /// (Knative's `containerConcurrency: 0`).
    #[serde(default)]
    pub max_concurrency: u32,
    /// Requests that may wait for a free slot; more get 503.
    #[serde(default = "Scaling::default_max_queue")]
    pub max_queue: u32,
    /// How long a request may wait for a slot before it gets 503.
    #[schemars(with = "String", regex(pattern = DURATION_PATTERN))]
    #[serde(default = "Scaling::default_queue_timeout", with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Serve several requests, one after another, with one instance instead of a fresh instance per request.
    /// Off by default: with it, module-level state (caches, counters) lives across the requests one instance
    /// serves, as in a Kubeless pod, and is never shared between instances or revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<Reuse>,
}

impl Scaling {
    fn default_max_queue() -> u32 {
        100
    }
    fn default_queue_timeout() -> Duration {
        Duration::from_secs(10)
    }

    pub(crate) fn validate(&self, limits: &Limits) -> Result<(), ManifestError> {
        if self.max_queue > 0 && self.queue_timeout.is_zero() {
            return Err(ManifestError::invalid("spec.scaling.queueTimeout", "must be above zero when maxQueue > 0"));
        }
        if self.queue_timeout > MAX_QUEUE_TIMEOUT {
            return Err(ManifestError::invalid("spec.scaling.queueTimeout", "must be at most 1h"));
        }
        let Some(reuse) = &self.reuse else { return Ok(()) };
        if reuse.max_requests == 0 {
            return Err(ManifestError::invalid("spec.scaling.reuse.maxRequests", "must be at least 1"));
        }
        if reuse.idle_timeout.is_zero() || reuse.idle_timeout > MAX_IDLE_TIMEOUT {
            return Err(ManifestError::invalid("spec.scaling.reuse.idleTimeout", "must be above zero and at most 1h"));
        }
        if reuse.max_idle == 0 || reuse.max_idle > MAX_IDLE {
            return Err(ManifestError::invalid(
                "spec.scaling.reuse.maxIdle",
                format!("must be between 1 and {MAX_IDLE}"),
            ));
        }
        if let Some(m) = reuse.max_memory
            && (m.bytes() < (1 << 20) || m.bytes() > limits.memory.bytes())
        {
            return Err(ManifestError::invalid(
                "spec.scaling.reuse.maxMemory",
                format!("must be at least 1Mi and at most `limits.memory` ({})", limits.memory),
            ));
        }
        Ok(())
    }
}

impl Default for Scaling {
    fn default() -> Self {
        Scaling {
            max_concurrency: 0,
            max_queue: Self::default_max_queue(),
            queue_timeout: Self::default_queue_timeout(),
            reuse: None,
        }
    }
}

/// Longest accepted `spec.scaling.reuse.idleTimeout`.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most idle instances one revision may keep (`spec.scaling.reuse.maxIdle`).
pub const MAX_IDLE: u32 = 1024;

/// Serial instance reuse (`spec.scaling.reuse`), as Fastly's reusable sandboxes and `wasmtime serve
/// --max-instance-reuse-count` do. One instance serves one request at a time; between requests it waits in
/// its revision's idle list. It is discarded after `maxRequests`, after `idleTimeout` without a request, when
/// its memory is above `maxMemory` after a request, and whenever a request on it traps, times out or
/// exceeds `limits.memory`: the next request then gets a fresh instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reuse {
    /// Requests one instance serves before it is discarded.
    #[serde(default = "Reuse::default_max_requests")]
    pub max_requests: u32,
    /// How long an instance waits for its next request before it is discarded.
    #[schemars(with = "String", regex(pattern = DURATION_PATTERN))]
    #[serde(default = "Reuse::default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// An instance whose linear memory is above this after a request is discarded rather than reused
    /// (Kubernetes quantity; at most `limits.memory`, which it defaults to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<Quantity>,
    /// Instances of one revision kept waiting for requests on this node; more are discarded after their
    /// request. The node also caps idle instances over all functions (`pool.idle-instances`).
    #[serde(default = "Reuse::default_max_idle")]
    pub max_idle: u32,
}

impl Reuse {
    fn default_max_requests() -> u32 {
        1000
    }
    fn default_idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    fn default_max_idle() -> u32 {
        16
    }
}

impl Default for Reuse {
    fn default() -> Self {
        Reuse {
            max_requests: Self::default_max_requests(),
            idle_timeout: Self::default_idle_timeout(),
            max_memory: None,
            max_idle: Self::default_max_idle(),
        }
    }
}
