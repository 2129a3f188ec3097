//! `spec.egress`: the destinations a function may reach although the node's egress policy refuses them by
//! default (private networks, loopback): named hosts and CIDRs, as a Kubernetes `NetworkPolicy` or Spin's
//! `allowed_outbound_hosts` would list them.

use crate::ManifestError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Where a function's outgoing HTTP may go besides public addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Egress {
    /// Host names (`db.internal`, `*.svc.cluster.local`), addresses (`10.0.0.7`) or CIDRs (`10.1.0.0/16`)
    /// the function may reach although they are private. Link-local (cloud metadata) addresses and the node's
    /// admin API stay closed whatever is listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

/// One parsed entry of `spec.egress.allow`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EgressRule {
    /// Exactly this host name (lowercase, no trailing dot).
    Host(String),
    /// Any name ending in `.<suffix>` (from `*.<suffix>`).
    Suffix(String),
    /// A network: address and prefix length.
    Net(IpAddr, u8),
}

/// Most entries in `spec.egress.allow`.
pub const MAX_EGRESS_RULES: usize = 64;

impl EgressRule {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(entry: &str) -> Result<EgressRule, String> {
        let entry = entry.trim();
        if let Some((ip, len)) = entry.split_once('/') {
            let ip: IpAddr = ip.parse().map_err(|_| format!("`{entry}` is not a CIDR (address/prefix)"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max)
                .ok_or_else(|| format!("`{entry}` has an invalid prefix length (0-{max})"))?;
            return Ok(EgressRule::Net(ip, len));
        }
        if let Ok(ip) = entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(EgressRule::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
        }
        let (wildcard, name) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, entry),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !valid {
            return Err(format!("`{entry}` is not a host name, `*.domain`, address or CIDR"));
        }
        Ok(if wildcard { EgressRule::Suffix(name) } else { EgressRule::Host(name) })
    }

    /// Whether this rule names `host` (a name as the guest wrote it, matched case-insensitively).
    pub fn names(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        match self {
            EgressRule::Host(h) => host.eq_ignore_ascii_case(h),
            EgressRule::Suffix(s) => {
                host.len() > s.len() + 1
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
            EgressRule::Net(..) => false,
        }
    }
}

impl Egress {
    /// The parsed rules.
    pub fn rules(&self) -> Vec<EgressRule> {
        self.allow.iter().filter_map(|e| EgressRule::parse(e).ok()).collect()
    }

    pub(crate) fn validate(&self) -> Result<(), ManifestError> {
        if self.allow.len() > MAX_EGRESS_RULES {
            return Err(ManifestError::invalid(
                "spec.egress.allow",
                format!("{} entries; at most {MAX_EGRESS_RULES}", self.allow.len()),
            ));
        }
        for (i, entry) in self.allow.iter().enumerate() {
            EgressRule::parse(entry).map_err(|m| ManifestError::invalid(format!("spec.egress.allow[{i}]"), m))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_match() {
        assert_eq!(EgressRule::parse("10.1.0.0/16"), Ok(EgressRule::Net("10.1.0.0".parse().unwrap(), 16)));
        assert_eq!(EgressRule::parse("fd00::1"), Ok(EgressRule::Net("fd00::1".parse().unwrap(), 128)));
        assert_eq!(EgressRule::parse("DB.Internal."), Ok(EgressRule::Host("db.internal".into())));
        let wild = EgressRule::parse("*.svc.cluster.local").unwrap();
        assert!(wild.names("redis.ns.svc.cluster.local") && wild.names("A.SVC.CLUSTER.LOCAL."));
        assert!(!wild.names("svc.cluster.local") && !wild.names("evilsvc.cluster.local"));
        assert!(EgressRule::Host("db.internal".into()).names("DB.internal"));
        for bad in ["10.0.0.0/33", "::/129", "a..b", "-a.b", "*.", "a b", "http://x", "1.2.3.4/x", ""] {
            assert!(EgressRule::parse(bad).is_err(), "{bad}");
        }
    }
}
