//! Connection hygiene for every listener (ingress and admin): a client must show which protocol it speaks
//! and send a complete request head within `header-timeout`, idle HTTP/2 connections are pinged and dropped
//! when the peer is gone, and the node holds at most `max-connections` connections at once (accepting waits
//! past that, with one log line). Slowloris clients cost a socket for a bounded time, never a worker.

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The HTTP/2 client preface: a connection whose first bytes are a prefix of it may still be h2c.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Limits of one listener (the ingress and the admin API each have their own connection slots).
#[derive(Clone)]
pub(crate) struct ConnLimits {
    /// From accepting a connection (or finishing a request on it) to a complete request head.
    pub(crate) header_timeout: Duration,
    /// Connections this listener holds open at once.
    pub(crate) slots: Arc<Semaphore>,
}

impl ConnLimits {
    pub(crate) fn new(header_timeout: Duration, max_connections: usize) -> ConnLimits {
        ConnLimits { header_timeout, slots: Arc::new(Semaphore::new(max_connections.max(1))) }
    }

    /// hyper's connection builder with these limits: HTTP/1 heads within the timeout; HTTP/2 pings an idle
    /// connection every `header_timeout` and drops it when the peer does not answer within another.
    pub(crate) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(self.header_timeout))
            .keep_alive_timeout(self.header_timeout)
            .max_concurrent_streams(256);
        builder
    }
}

/// Waits until the first bytes on `stream` tell HTTP/1 from h2c (so the protocol sniff can never wait
/// forever), for at most `timeout`. False when the client sent too little in time, or closed.
async fn speaks_in_time(stream: &TcpStream, timeout: Duration) -> bool {
    let decided = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if n == buf.len() || !H2_PREFACE.starts_with(&buf[..n]) {
                return true;
            }
            // Part of the preface so far: wait for more (peek returns at once while data is buffered).
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(timeout, decided).await.unwrap_or(false)
}

/// Accepts connections on `listener` and serves each with `service` until `stop` resolves; connections
/// are tracked by `graceful` for draining.
pub(crate) async fn accept_loop<S, B>(
    name: &'static str,
    listener: &TcpListener,
    limits: &ConnLimits,
    graceful: &GracefulShutdown,
    service: S,
    stop: impl Future<Output = ()>,
) where
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = limits.builder();
    tokio::pin!(stop);
    let mut full_logged = false;
    loop {
        let permit = match limits.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !full_logged {
                    tracing::warn!(listener = name, "max-connections reached: new connections wait until one closes");
                    full_logged = true;
                }
                tokio::select! {
                    p = limits.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    () = &mut stop => return,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the connections we have.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        full_logged = false;
        let _ = stream.set_nodelay(true);
        let timeout = limits.header_timeout;
        let conn_builder = builder.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = permit;
            if !speaks_in_time(&stream, timeout).await {
                tracing::debug!(listener = name, "connection closed: no request within the header timeout");
                return;
            }
            let conn = conn_builder.serve_connection(TokioIo::new(stream), service).into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(listener = name, error = %e, "connection ended with an error");
            }
        });
    }
}
