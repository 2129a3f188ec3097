//! The front door: listeners and the serve loop, hyper 1 with HTTP/1.1 and h2c on the ingress (each request
//! goes to `ingress.rs`), axum on the admin API, the node's background tasks, and a graceful shutdown that
//! stops accepting and lets in-flight requests finish up to a deadline.

use crate::conn::ConnLimits;
use crate::node::Node;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Connections the admin listener holds at once.
const ADMIN_CONNECTIONS: usize = 256;

/// Bound but not yet serving listeners, so callers learn the addresses (port 0 picks a free port).
pub struct Listeners {
    ingress: TcpListener,
    admin: Option<TcpListener>,
}

impl Listeners {
    /// The ingress address.
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress.local_addr().expect("bound socket has an address")
    }

    /// The admin API address, unless the node serves without one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr().expect("bound socket has an address"))
    }
}

impl Node {
    /// Binds the ingress and admin listeners from the config.
    pub async fn bind(&self) -> std::io::Result<Listeners> {
        let c = self.config();
        let ingress = TcpListener::bind(c.listen).await?;
        let admin = TcpListener::bind(c.admin_listen).await?;
        let _ = self.inner.ingress_addr.set(ingress.local_addr()?);
        let _ = self.inner.admin_addr.set(admin.local_addr()?);
        Ok(Listeners { ingress, admin: Some(admin) })
    }

    /// Binds only the ingress: the function table is fixed by whoever embeds the node (the containerd shim).
    pub async fn bind_ingress(&self) -> std::io::Result<Listeners> {
        let ingress = TcpListener::bind(self.config().listen).await?;
        let _ = self.inner.ingress_addr.set(ingress.local_addr()?);
        Ok(Listeners { ingress, admin: None })
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests for up to `shutdown-timeout`.
    pub async fn serve(&self, listeners: Listeners, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        self.serve_with(listeners, axum::Router::new(), shutdown).await
    }

    /// [`serve`](Self::serve), with `extra` routes on the admin listener (behind its token check and cross-site
    /// refusal): `wasmfn up` adds its console API.
    pub async fn serve_with(
        &self,
        listeners: Listeners,
        extra: axum::Router,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let reaper = tokio::spawn(self.clone().reap_idle());
        let collector = tokio::spawn(self.clone().collect_garbage_periodically());
        let rollouts = tokio::spawn(self.inner.table.clone().drive_rollouts());
        let counters = tokio::spawn(self.inner.table.clone().save_counters_periodically());
        let series = tokio::spawn(self.clone().sample_series());
        let sources = tokio::spawn(self.inner.events.clone().run_sources());
        let warm = tokio::spawn({
            let node = self.clone();
            async move { node.warm_up().await }
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limits = ConnLimits::new(self.config().header_timeout, self.config().max_connections);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let admin = listeners.admin.map(|admin| {
            let service = hyper_util::service::TowerToHyperService::new(crate::admin::router(self.clone(), extra));
            // A slot pool of its own: a flood on the ingress never locks out probes and operators.
            let limits = ConnLimits::new(self.config().header_timeout, ADMIN_CONNECTIONS);
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                let graceful = GracefulShutdown::new();
                crate::conn::accept_loop("admin", &admin, &limits, &graceful, service, stop).await;
                graceful.shutdown().await;
            })
        });

        let graceful = GracefulShutdown::new();
        let node = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let node = node.clone();
            async move { Ok::<_, std::convert::Infallible>(crate::ingress::handle(node, req).await) }
        });
        crate::conn::accept_loop("ingress", &listeners.ingress, &limits, &graceful, service, shutdown).await;

        tracing::info!("shutting down: no new connections; draining in-flight requests");
        drop(listeners.ingress);
        let deadline = self.config().shutdown_timeout;
        let _ = stop_tx.send(true);
        if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
            tracing::warn!(?deadline, "in-flight requests still running at the shutdown deadline");
        }
        if let Some(admin) = admin {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), admin).await;
        }
        reaper.abort();
        collector.abort();
        rollouts.abort();
        counters.abort();
        series.abort();
        sources.abort();
        self.inner.table.save_counters().await;
        warm.abort();
        tracing::info!("stopped");
        Ok(())
    }
}
