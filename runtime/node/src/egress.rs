//! The node's egress policy: where tenants' connections may go (guests' outgoing HTTP, dead-letter sinks,
//! NATS servers). Names are resolved once and every address checked; private, link-local (metadata), CGNAT
//! and loopback ranges are refused unless the node config allows them.

use http_body_util::BodyExt;
use ipnet::IpNet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// Where the node lets tenants' connections go (node config `allow-loopback-egress`, `egress-allow`).
#[derive(Clone, Debug, Default)]
pub(crate) struct EgressPolicy {
    pub(crate) allow_loopback: bool,
    /// Networks allowed although `prohibited`.
    pub(crate) allow: Arc<[IpNet]>,
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
    /// Whether `ip` may be reached.
    pub(crate) fn allowed(&self, ip: IpAddr) -> bool {
        !prohibited(ip, self.allow_loopback) || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// Resolves `host` once and checks every address it resolves to: the addresses to connect to, never
    /// empty. A name that does not resolve is refused (fail closed).
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(e)) => return Err(Refused::Dns { host: host.into(), message: e.to_string() }),
                Err(_) => return Err(Refused::DnsTimeout { host: host.into() }),
            },
        };
        if addrs.is_empty() {
            return Err(Refused::NotFound { host: host.into() });
        }
        if let Some(bad) = addrs.iter().find(|a| !self.allowed(a.ip())) {
            return Err(Refused::Prohibited { host: host.into(), address: bad.ip() });
        }
        Ok(addrs)
    }
}

/// Guests' outgoing HTTP under the policy. A name is resolved once; every address it resolves to must be
/// allowed, or the request is refused; plain HTTP then connects to the checked address itself, so a second
/// answer (DNS rebinding, a short TTL) can never redirect it. HTTPS connects by name through wasmtime's
/// client: a rebound address would also have to present a certificate for that name.
pub(crate) struct Egress(pub(crate) EgressPolicy);

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

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

/// How long a guest's name lookup may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error>> + Send> {
        drop(fut);
        let policy = self.0.clone();
        Box::new(async move {
            use wasmtime_wasi_http::Error as E;
            let uri = request.uri();
            let host = uri.host().unwrap_or_default().to_string();
            let tls = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let first = match policy.resolve(&host, port).await {
                Ok(addrs) => addrs[0],
                Err(refused) => {
                    tracing::warn!(%host, port, reason = %refused, "outgoing request refused");
                    return Err(match refused {
                        Refused::Dns { message, .. } => E::DnsError { rcode: Some(message), info_code: None },
                        Refused::DnsTimeout { .. } => E::DnsTimeout,
                        Refused::NotFound { .. } => E::DestinationNotFound,
                        Refused::Prohibited { .. } => E::DestinationIpProhibited,
                    });
                }
            };
            if !tls {
                // Connect to the address just checked; the Host header keeps the name.
                let mut parts = request.uri().clone().into_parts();
                let authority = first.to_string();
                parts.authority = Some(authority.parse().map_err(|_| E::HttpRequestUriInvalid)?);
                *request.uri_mut() = http::Uri::from_parts(parts).map_err(|_| E::HttpRequestUriInvalid)?;
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::prohibited;

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
        let egress = super::EgressPolicy { allow_loopback: false, allow: vec!["10.1.0.0/16".parse().unwrap()].into() };
        assert!(egress.allowed("10.1.2.3".parse().unwrap()));
        assert!(!egress.allowed("10.2.0.1".parse().unwrap()));
        assert!(!egress.allowed("127.0.0.1".parse().unwrap()));
        assert!(egress.allowed("8.8.8.8".parse().unwrap()));
    }
}
