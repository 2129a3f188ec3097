//! The node's egress policy: where tenants' connections may go (guests' outgoing HTTP, dead-letter sinks,
//! NATS servers). Names are resolved once (by the system's resolver, or the node's `dns-servers`) and every
//! address checked; the connection then goes to a checked address (`send.rs`), so a second answer (DNS
//! rebinding, a short TTL) can never redirect it. Private, CGNAT and loopback ranges are refused unless the node
//! config (`egress-allow`, `allow-loopback-egress`) or the function's `spec.egress` opens them; link-local
//! (cloud metadata) only the node config can open; the node's own admin listener is never reachable.

mod send;

pub(crate) use send::Egress;

/// The host a guest posts CloudEvents to (Kyma's `event.emitCloudEvent`): the node routes it in-process to the
/// function's namespace broker, so emitting needs no loopback egress (`.internal` is reserved for private use).
pub(crate) const EVENTS_HOST: &str = "events.wasmfn.internal";

/// Publishes an event a guest emitted (the event bus implements it: egress cannot import `events`, which runs
/// guests through the executor, which builds stores with this module).
pub(crate) trait Publish: Send + Sync {
    /// Parses the CloudEvent (binary or structured mode) and publishes it to `namespace`'s broker triggers, one
    /// hop after `hops`; the number of deliveries, or why not (a client error, or the node's limits).
    fn publish_emitted(
        self: Arc<Self>,
        namespace: &str,
        headers: &http::HeaderMap,
        body: bytes::Bytes,
        hops: u32,
    ) -> Result<usize, (u16, String)>;
}

use hickory_resolver::TokioResolver;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmfn_api::EgressRule;

/// How long a name lookup may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the node lets tenants' connections go (node config `allow-loopback-egress`, `egress-allow`,
/// `dns-servers`).
#[derive(Clone, Default)]
pub(crate) struct EgressPolicy {
    pub(crate) allow_loopback: bool,
    /// Networks allowed although `prohibited`.
    pub(crate) allow: Arc<[IpNet]>,
    /// The resolver of `dns-servers`; the system's when none.
    pub(crate) resolver: Option<Arc<TokioResolver>>,
    /// The admin API's address once bound: refused whatever else allows it.
    pub(crate) admin: Arc<OnceLock<SocketAddr>>,
    /// Where events guests emit go, once the event bus exists.
    pub(crate) publisher: Arc<OnceLock<std::sync::Weak<dyn Publish>>>,
}

/// What one function's `spec.egress` opens.
#[derive(Clone, Debug, Default)]
pub(crate) struct Grants {
    names: Vec<EgressRule>,
    nets: Vec<IpNet>,
}

impl Grants {
    /// The grants of a function's `spec.egress`, shared by all functions that have none (most of thousands on a
    /// node: no allocation each).
    pub(crate) fn shared(egress: Option<&wasmfn_api::Egress>) -> Arc<Grants> {
        static NONE: OnceLock<Arc<Grants>> = OnceLock::new();
        match egress {
            Some(e) if !e.allow.is_empty() => Arc::new(Grants::of(Some(e))),
            _ => NONE.get_or_init(Arc::default).clone(),
        }
    }

    /// The grants of a function's `spec.egress` (entries were validated with the manifest).
    pub(crate) fn of(egress: Option<&wasmfn_api::Egress>) -> Grants {
        let mut grants = Grants::default();
        for rule in egress.map(wasmfn_api::Egress::rules).unwrap_or_default() {
            match rule {
                EgressRule::Net(ip, len) => grants.nets.extend(IpNet::new(ip, len).ok().map(|n| n.trunc())),
                named => grants.names.push(named),
            }
        }
        grants
    }

    fn allow(&self, host: &str, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip)) || self.names.iter().any(|r| r.names(host))
    }
}

/// Why a destination was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("`{host}` does not resolve: {message}")]
    Dns { host: String, message: String },
    #[error("resolving `{host}` took longer than {DNS_TIMEOUT:?}")]
    DnsTimeout { host: String },
    #[error("`{host}` resolves to no address")]
    NotFound { host: String },
    #[error("`{host}` resolves to {address}, which the node's egress policy refuses")]
    Prohibited { host: String, address: IpAddr },
}

impl EgressPolicy {
    /// Whether `addr`, reached as `host` by a function with `grants`, may be reached.
    pub(crate) fn allowed(&self, host: &str, addr: SocketAddr, grants: &Grants) -> bool {
        let ip = addr.ip();
        if self.is_admin(addr) {
            return false;
        }
        if !prohibited(ip, self.allow_loopback) || self.allow.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        // A function's own grants open private networks and loopback, never what only the node may open.
        !node_only(ip) && grants.allow(host, ip)
    }

    fn is_admin(&self, addr: SocketAddr) -> bool {
        let Some(admin) = self.admin.get() else { return false };
        let local = |ip: IpAddr| ip.is_loopback() || ip.to_canonical().is_loopback();
        addr.port() == admin.port()
            && (addr.ip().to_canonical() == admin.ip().to_canonical()
                || (admin.ip().is_unspecified() && (local(addr.ip()) || addr.ip().is_unspecified()))
                || (admin.ip().is_loopback() && local(addr.ip())))
    }

    /// Resolves `host` once and checks every address it resolves to: the addresses to connect to, never
    /// empty. A name that does not resolve is refused (fail closed).
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        self.resolve_for(host, port, &Grants::default()).await
    }

    /// [`EgressPolicy::resolve`] for a function with `grants`.
    pub(crate) async fn resolve_for(&self, host: &str, port: u16, grants: &Grants) -> Result<Vec<SocketAddr>, Refused> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => self.lookup(host, port).await?,
        };
        if addrs.is_empty() {
            return Err(Refused::NotFound { host: host.into() });
        }
        if let Some(bad) = addrs.iter().find(|a| !self.allowed(host, **a, grants)) {
            return Err(Refused::Prohibited { host: host.into(), address: bad.ip() });
        }
        Ok(addrs)
    }

    async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let dns = |e: &dyn std::fmt::Display| Refused::Dns { host: host.into(), message: e.to_string() };
        match &self.resolver {
            Some(resolver) => match tokio::time::timeout(DNS_TIMEOUT, resolver.lookup_ip(host)).await {
                Ok(Ok(ips)) => Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
                Ok(Err(e)) => Err(dns(&e)),
                Err(_) => Err(Refused::DnsTimeout { host: host.into() }),
            },
            None => match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(found)) => Ok(found.collect()),
                Ok(Err(e)) => Err(dns(&e)),
                Err(_) => Err(Refused::DnsTimeout { host: host.into() }),
            },
        }
    }
}

/// The resolver asking only `servers` (UDP, then TCP for truncated answers), caching nothing: each request's
/// name is looked up once, and that answer is what it connects to.
pub(crate) fn resolver(servers: &[SocketAddr]) -> Option<Arc<TokioResolver>> {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    use hickory_resolver::name_server::TokioConnectionProvider;
    use hickory_resolver::proto::xfer::Protocol;
    if servers.is_empty() {
        return None;
    }
    let mut config = ResolverConfig::new();
    for addr in servers {
        config.add_name_server(NameServerConfig::new(*addr, Protocol::Udp));
        config.add_name_server(NameServerConfig::new(*addr, Protocol::Tcp));
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = Duration::from_secs(2);
    let builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
    Some(Arc::new(builder.with_options(opts).build()))
}

/// Addresses only the node config can open: unspecified, link-local (cloud metadata), multicast, broadcast.
fn node_only(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_unspecified()
        || ip.is_multicast()
        || match ip {
            IpAddr::V4(a) => a.is_link_local() || a.is_broadcast() || a.octets()[0] == 0,
            IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
        }
}

/// Addresses guests may not reach by default: unspecified, "this network", link-local (cloud metadata at
/// 169.254.169.254), private (RFC 1918, IPv6 ULA: AWS's fd00:ec2::254), CGNAT (Alibaba's 100.100.100.200),
/// IETF protocol assignments (Oracle's 192.0.0.192), benchmarking, reserved, multicast and broadcast; and
/// loopback (the admin API) unless `allow_loopback`. IPv4 inside IPv6 (mapped, NAT64, 6to4) is judged as IPv4.
pub(crate) fn prohibited(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (a.is_loopback() && !allow_loopback)
                || a.is_unspecified()
                || a.is_link_local()
                || a.is_private()
                || a.is_multicast()
                || a.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8))
            };
            if let Some(v4) = a.to_ipv4_mapped() {
                return prohibited(IpAddr::V4(v4), allow_loopback);
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
                return prohibited(embedded(s[6], s[7]), allow_loopback);
            }
            if s[0] == 0x2002 {
                return prohibited(embedded(s[1], s[2]), allow_loopback);
            }
            (a.is_loopback() && !allow_loopback)
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] & 0xfe00) == 0xfc00
                // The deprecated IPv4-compatible form (::a.b.c.d).
                || (s[..6] == [0; 6] && !a.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_policy() {
        for ip in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "192.0.0.192",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "fd00:ec2::254",
            "fc00::1",
            "fec0::1",
            "ff02::1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "::7f00:1",
        ] {
            assert!(prohibited(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2001:db8::1", "2606:4700::1111", "64:ff9b::808:808", "100.128.0.1"] {
            assert!(!prohibited(ip.parse().unwrap(), false), "{ip}");
        }
        assert!(!prohibited("127.0.0.1".parse().unwrap(), true));
        assert!(!prohibited("::1".parse().unwrap(), true));
        assert!(prohibited("169.254.169.254".parse().unwrap(), true));
        assert!(prohibited("10.0.0.1".parse().unwrap(), true));
    }

    #[test]
    fn egress_allow_opens_named_networks_only() {
        let egress = EgressPolicy { allow: vec!["10.1.0.0/16".parse().unwrap()].into(), ..Default::default() };
        let none = Grants::default();
        let ok = |ip: &str| egress.allowed("h", SocketAddr::new(ip.parse().unwrap(), 80), &none);
        assert!(ok("10.1.2.3"));
        assert!(!ok("10.2.0.1"));
        assert!(!ok("127.0.0.1"));
        assert!(ok("8.8.8.8"));
    }

    #[test]
    fn a_functions_grants_open_private_hosts_and_networks_but_never_metadata_or_the_admin_api() {
        let egress = EgressPolicy { allow_loopback: true, ..Default::default() };
        egress.admin.set("127.0.0.1:9000".parse().unwrap()).unwrap();
        let spec = wasmfn_api::Egress {
            allow: vec![
                "db.internal".into(),
                "*.svc.cluster.local".into(),
                "10.9.0.0/16".into(),
                "169.254.0.0/16".into(),
            ],
        };
        let grants = Grants::of(Some(&spec));
        let ok = |host: &str, addr: &str| egress.allowed(host, addr.parse().unwrap(), &grants);
        assert!(ok("db.internal", "10.0.0.5:5432"), "a granted name, whatever private address it has");
        assert!(ok("redis.ns.svc.cluster.local", "172.20.0.3:6379"));
        assert!(ok("x", "10.9.1.1:80") && !ok("x", "10.8.1.1:80"), "a granted network only");
        assert!(!ok("x", "169.254.169.254:80"), "metadata stays closed");
        assert!(!ok("db.internal", "169.254.169.254:80"));
        // --allow-loopback-egress opens loopback, never the admin listener, under any spelling.
        assert!(ok("x", "127.0.0.1:8080"));
        for admin in ["127.0.0.1:9000", "127.0.0.2:9000", "[::1]:9000", "[::ffff:127.0.0.1]:9000"] {
            assert!(!ok("x", admin), "{admin}");
        }
        let open = EgressPolicy { allow_loopback: true, ..Default::default() };
        open.admin.set("0.0.0.0:9000".parse().unwrap()).unwrap();
        assert!(!open.allowed("x", "127.0.0.1:9000".parse().unwrap(), &Grants::default()));
    }
}
