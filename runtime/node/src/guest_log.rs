//! Guest stdout and stderr: split into lines, tagged with the function and request id, rate limited per
//! function so a noisy guest cannot flood the node's log.

use crate::config::GuestLogConfig;
use crate::logs::{LogHub, Source};
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmfn_api::FunctionKey;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Rate limit and destination for one function's guest output, shared by its requests.
pub(crate) struct GuestLog {
    function: String,
    key: FunctionKey,
    hub: Arc<LogHub>,
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
    pub(crate) fn new(key: &FunctionKey, config: GuestLogConfig, dropped: Counter, hub: Arc<LogHub>) -> Self {
        let bucket = Bucket { tokens: config.burst as f64, last: Instant::now(), suppressed: 0 };
        GuestLog { function: key.to_string(), key: key.clone(), hub, config, bucket: Mutex::new(bucket), dropped }
    }

    fn emit(&self, request_id: &str, revision: &str, stream: &'static str, line: &[u8]) {
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
        let (namespace, function) = (self.key.namespace.as_str(), self.key.name.as_str());
        self.hub.push(Source { namespace, function, revision, request_id, stream }, &text);
    }

    /// The stdout or stderr of one instance of `revision`, tagged with its current request's id.
    pub(crate) fn stream(
        self: &Arc<Self>,
        request_id: Arc<str>,
        revision: Arc<str>,
        stream: &'static str,
    ) -> GuestOutput {
        let buf = Mutex::new(Lines { request_id, pending: Vec::new() });
        GuestOutput(Arc::new(LineBuffer { log: self.clone(), revision, stream, buf }))
    }
}

/// Splits one instance's output stream into lines; the last partial line is emitted when its request ends.
struct LineBuffer {
    log: Arc<GuestLog>,
    revision: Arc<str>,
    stream: &'static str,
    buf: Mutex<Lines>,
}

struct Lines {
    request_id: Arc<str>,
    pending: Vec<u8>,
}

impl LineBuffer {
    fn write(&self, bytes: &[u8]) {
        let mut lines = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let Lines { request_id, pending: buf } = &mut *lines;
        buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            self.log.emit(request_id, &self.revision, self.stream, &buf[start..start + pos]);
            start += pos + 1;
        }
        buf.drain(..start);
        // A line that never ends is cut rather than buffered without bound.
        if buf.len() > self.log.config.max_line_bytes {
            self.log.emit(request_id, &self.revision, self.stream, buf);
            buf.clear();
        }
    }

    /// Emits the partial line of the request that ended and tags what follows with `request_id` (a reused
    /// instance's next request).
    fn restart(&self, request_id: Arc<str>) {
        let mut lines = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        if !lines.pending.is_empty() {
            self.log.emit(&lines.request_id, &self.revision, self.stream, &lines.pending);
            lines.pending.clear();
        }
        lines.request_id = request_id;
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        let lines = self.buf.get_mut().unwrap_or_else(|e| e.into_inner());
        if !lines.pending.is_empty() {
            self.log.emit(&lines.request_id, &self.revision, self.stream, &lines.pending);
        }
    }
}

/// A guest's stdout or stderr, handed to `WasiCtxBuilder`.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<LineBuffer>);

impl GuestOutput {
    /// Ends the current request's output and tags what follows with the next request's id.
    pub(crate) fn restart(&self, request_id: Arc<str>) {
        self.0.restart(request_id);
    }
}

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
