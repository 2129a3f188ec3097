//! The data of every request's `Store`: WASI and `wasi:http` contexts, the memory cap and the egress policy.

use crate::guest_log::GuestOutput;
use http_body_util::BodyExt;
use std::future::Future;
use std::net::IpAddr;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// The data of every request's `Store`.
pub(crate) struct Host {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) egress: Egress,
    /// The guest's stdout and stderr, retagged for each request a reused instance serves.
    pub(crate) output: [GuestOutput; 2],
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

/// Outgoing HTTP policy. A guest may not reach the node itself (its admin API listens on loopback), other
/// loopback services, or link-local addresses (cloud metadata endpoints) unless `allow-loopback-egress` is set;
/// everything else goes through wasmtime's default client.
pub(crate) struct Egress {
    pub(crate) allow_loopback: bool,
}

pub(crate) fn prohibited(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(a) => (a.is_loopback() && !allow_loopback) || a.is_unspecified() || a.is_link_local(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => prohibited(IpAddr::V4(v4), allow_loopback),
            None => (a.is_loopback() && !allow_loopback) || a.is_unspecified() || (a.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error>> + Send> {
        drop(fut);
        let allow_loopback = self.allow_loopback;
        Box::new(async move {
            let uri = request.uri();
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
            let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                // Resolution failures are left to the client, which reports them as DNS errors.
                Err(_) => tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map(|it| it.map(|a| a.ip()).collect())
                    .unwrap_or_default(),
            };
            if addrs.iter().any(|ip| prohibited(*ip, allow_loopback)) {
                tracing::warn!(%host, port, "outgoing request to a prohibited address refused");
                return Err(wasmtime_wasi_http::Error::DestinationIpProhibited);
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}

/// The error a guest gets when it grows its memory past `limits.memory`; it ends the request with 500.
#[derive(Debug, thiserror::Error)]
#[error("the instance exceeded its memory limit of {limit} bytes")]
pub struct MemoryLimitExceeded {
    /// The limit in bytes.
    pub limit: usize,
}

/// Caps one instance's linear memory and counts what its memories have grown to; tables get a generous
/// fixed cap.
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    /// Bytes of linear memory over all the instance's memories (a reused instance's ceiling is checked on it).
    pub(crate) used: usize,
}

impl MemoryCap {
    pub(crate) fn new(limit: usize) -> Self {
        MemoryCap { limit, used: 0 }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitExceeded { limit: self.limit }.into());
        }
        self.used = self.used.saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::prohibited;

    #[test]
    fn egress_policy() {
        for ip in ["127.0.0.1", "::1", "0.0.0.0", "169.254.169.254", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(prohibited(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!prohibited(ip.parse().unwrap(), false), "{ip}");
        }
        assert!(!prohibited("127.0.0.1".parse().unwrap(), true));
        assert!(prohibited("169.254.169.254".parse().unwrap(), true));
    }
}
