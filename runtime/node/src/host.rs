//! Per-request host state: WASI and `wasi:http` contexts, the memory cap, and guest output capture.

use crate::config::GuestLogConfig;
use bytes::Bytes;
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// The data of every request's `Store`.
pub(crate) struct Host {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) egress: Egress,
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

/// Caps one instance's linear memory; tables get a generous fixed cap.
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitExceeded { limit: self.limit }.into());
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Rate limit and destination for one function's guest output, shared by its requests.
pub(crate) struct GuestLog {
    function: String,
    config: GuestLogConfig,
    bucket: Mutex<Bucket>,
    dropped: Counter,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
}

impl GuestLog {
    pub(crate) fn new(function: String, config: GuestLogConfig, dropped: Counter) -> Self {
        let bucket = Bucket { tokens: config.burst as f64, last: Instant::now(), suppressed: 0 };
        GuestLog { function, config, bucket: Mutex::new(bucket), dropped }
    }

    fn emit(&self, request_id: &str, stream: &'static str, line: &[u8]) {
        let suppressed = {
            let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let refill = now.duration_since(b.last).as_secs_f64() * self.config.lines_per_second as f64;
            b.tokens = (b.tokens + refill).min(self.config.burst as f64);
            b.last = now;
            if b.tokens < 1.0 {
                b.suppressed += 1;
                self.dropped.inc();
                return;
            }
            b.tokens -= 1.0;
            std::mem::take(&mut b.suppressed)
        };
        if suppressed > 0 {
            tracing::warn!(target: "wasmfn::guest", function = %self.function, suppressed,
                "guest output over {} lines/s: {suppressed} lines suppressed", self.config.lines_per_second);
        }
        let cut = &line[..line.len().min(self.config.max_line_bytes)];
        let text = String::from_utf8_lossy(cut);
        tracing::info!(target: "wasmfn::guest", function = %self.function, request_id, stream, "{text}");
    }

    /// The stdout or stderr of one request.
    pub(crate) fn stream(self: &Arc<Self>, request_id: Arc<str>, stream: &'static str) -> GuestOutput {
        GuestOutput(Arc::new(LineBuffer { log: self.clone(), request_id, stream, buf: Mutex::new(Vec::new()) }))
    }
}

/// Splits one request's output stream into lines; the last partial line is emitted when the request ends.
struct LineBuffer {
    log: Arc<GuestLog>,
    request_id: Arc<str>,
    stream: &'static str,
    buf: Mutex<Vec<u8>>,
}

impl LineBuffer {
    fn write(&self, bytes: &[u8]) {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            self.log.emit(&self.request_id, self.stream, &buf[start..start + pos]);
            start += pos + 1;
        }
        buf.drain(..start);
        // A line that never ends is cut rather than buffered without bound.
        if buf.len() > self.log.config.max_line_bytes {
            self.log.emit(&self.request_id, self.stream, &buf);
            buf.clear();
        }
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let buf = self.buf.get_mut().unwrap_or_else(|e| e.into_inner());
        if !buf.is_empty() {
            self.log.emit(&self.request_id, self.stream, buf);
        }
    }
}

/// A guest's stdout or stderr, handed to `WasiCtxBuilder`.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<LineBuffer>);

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.write(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
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
