//! Revisions and routing: `spec.traffic` (weighted splits and tags, as in Knative Serving) and `spec.rollout`
//! (gradual shifts to a new revision with automatic rollback).

use crate::DURATION_PATTERN;
use crate::{Function, ManifestError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One share of a function's traffic: a revision (by name, or whichever is latest) and its percent, with an
/// optional tag that gives the revision its own route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficTarget {
    /// A revision of this function, `<name>-<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    /// `true`: the latest ready revision, which moves with every deploy (and with `spec.rollout`, gradually).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    /// Share of the requests, 0 to 100; the shares of all targets add up to 100.
    #[serde(default)]
    pub percent: u32,
    /// Also answer on `<tag>-<name>.<namespace>.<domain>` and `/<namespace>/<tag>-<name>/`, whatever the percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl TrafficTarget {
    /// A target for the latest ready revision.
    pub fn latest(percent: u32) -> TrafficTarget {
        TrafficTarget { latest_revision: Some(true), percent, ..Default::default() }
    }

    /// A target for a named revision.
    pub fn revision(name: &str, percent: u32) -> TrafficTarget {
        TrafficTarget { revision_name: Some(name.into()), percent, ..Default::default() }
    }

    /// Whether the target follows the latest ready revision.
    pub fn is_latest(&self) -> bool {
        self.latest_revision == Some(true)
    }
}

/// A gradual rollout: when a deploy creates a revision, the share of `latestRevision` moves from the previous
/// revision to the new one in `steps` equal steps over `duration`. If the new revision's 5xx rate exceeds
/// `maxErrorRate` (once it has answered `minRequests`), the rollout stops and the share goes back. It succeeds
/// at `duration` once the new revision has answered `minRequests`. With no `latestRevision` share in
/// `spec.traffic` (revisions pinned by name), there is nothing to shift and deploys take effect as named.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    /// Number of equal steps; the first is taken at once, the last at `duration × (steps-1)/steps`.
    #[serde(default = "Rollout::default_steps")]
    pub steps: u32,
    /// From the deploy to the end of the rollout.
    #[schemars(with = "String", regex(pattern = DURATION_PATTERN))]
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Largest tolerated fraction of the new revision's responses that are 5xx, from 0 to 1.
    #[serde(default = "Rollout::default_max_error_rate")]
    pub max_error_rate: f64,
    /// Responses the new revision must have given before its error rate is judged.
    #[serde(default = "Rollout::default_min_requests")]
    pub min_requests: u64,
}

impl Rollout {
    fn default_steps() -> u32 {
        5
    }
    fn default_max_error_rate() -> f64 {
        0.05
    }
    fn default_min_requests() -> u64 {
        20
    }

    /// A rollout over `duration` with the default steps and thresholds.
    pub fn over(duration: Duration) -> Rollout {
        Rollout {
            steps: Self::default_steps(),
            duration,
            max_error_rate: Self::default_max_error_rate(),
            min_requests: Self::default_min_requests(),
        }
    }
}

/// Longest accepted `spec.rollout.duration`.
pub const MAX_ROLLOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whether `s` is a DNS label.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Function {
    /// The generation `n` of `<name>-<n>`, when `revision` names one of this function's revisions.
    pub fn revision_generation(&self, revision: &str) -> Option<u64> {
        let n = revision.strip_prefix(&self.metadata.name)?.strip_prefix('-')?;
        // No sign, no leading zero: one spelling per revision.
        if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse().ok().filter(|g| *g > 0)
    }

    pub(crate) fn validate_traffic(&self) -> Result<(), ManifestError> {
        let mut tags = std::collections::BTreeSet::new();
        let mut sum = 0u32;
        for (i, t) in self.spec.traffic.iter().enumerate() {
            let at = |f: &str| format!("spec.traffic[{i}].{f}");
            match (&t.revision_name, t.latest_revision) {
                (Some(_), Some(true)) => {
                    return Err(ManifestError::invalid(
                        at("latestRevision"),
                        "set `revisionName` or `latestRevision: true`, not both",
                    ));
                }
                (None, None | Some(false)) => {
                    return Err(ManifestError::invalid(
                        format!("spec.traffic[{i}]"),
                        "name a revision (`revisionName`) or follow the latest one (`latestRevision: true`)",
                    ));
                }
                (Some(name), _) if self.revision_generation(name).is_none() => {
                    let f = &self.metadata.name;
                    return Err(ManifestError::invalid(
                        at("revisionName"),
                        format!("`{name}` is not a revision name of {f} (`{f}-<n>`, e.g. `{f}-1`)"),
                    ));
                }
                _ => {}
            }
            if t.percent > 100 {
                return Err(ManifestError::invalid(at("percent"), format!("{} is above 100", t.percent)));
            }
            sum += t.percent;
            if let Some(tag) = &t.tag {
                let host_label = format!("{tag}-{}", self.metadata.name);
                if !is_dns_label(tag) {
                    return Err(ManifestError::invalid(
                        at("tag"),
                        format!("`{tag}` is not a DNS label (lowercase letters, digits and `-`)"),
                    ));
                }
                if host_label.len() > 63 {
                    return Err(ManifestError::invalid(
                        at("tag"),
                        format!("the tagged name `{host_label}` is longer than 63 characters"),
                    ));
                }
                if !tags.insert(tag) {
                    return Err(ManifestError::invalid(at("tag"), format!("tag `{tag}` is used twice")));
                }
            }
        }
        if !self.spec.traffic.is_empty() && sum != 100 {
            let shares: Vec<String> = self
                .spec
                .traffic
                .iter()
                .map(|t| format!("{}={}", t.revision_name.as_deref().unwrap_or("@latest"), t.percent))
                .collect();
            return Err(ManifestError::invalid(
                "spec.traffic",
                format!("percents must add up to 100, but {} add up to {sum}", shares.join(" + ")),
            ));
        }
        if let Some(r) = &self.spec.rollout {
            if r.steps == 0 || r.steps > 100 {
                return Err(ManifestError::invalid("spec.rollout.steps", "must be 1 to 100"));
            }
            if r.duration.is_zero() || r.duration > MAX_ROLLOUT {
                return Err(ManifestError::invalid("spec.rollout.duration", "must be above zero and at most 7d"));
            }
            if !(0.0..=1.0).contains(&r.max_error_rate) {
                return Err(ManifestError::invalid(
                    "spec.rollout.maxErrorRate",
                    format!("{} is not a fraction from 0 to 1 (0.05 is 5%)", r.max_error_rate),
                ));
            }
            if r.min_requests == 0 {
                return Err(ManifestError::invalid("spec.rollout.minRequests", "must be at least 1"));
            }
        }
        Ok(())
    }
}
