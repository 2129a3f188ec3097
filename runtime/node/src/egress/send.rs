//! Guests' outgoing HTTP under the policy (wasmtime's `WasiHttpHooks`): the name is resolved once and every
//! address checked (`EgressPolicy::resolve_for`), then the request goes to the first checked address. Plain
//! HTTP through wasmtime's client with the address as authority (the Host header keeps the name); HTTPS over
//! a TLS connection made here to that address, verifying the certificate for the name.

use super::{EgressPolicy, Grants, Refused};
use http_body_util::BodyExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use wasmtime_wasi_http::{Error as E, RequestOptions, WasiBody, WasiHttpHooks};

type IoFuture = Box<dyn Future<Output = Result<(), E>> + Send>;

/// One request's outgoing HTTP: the node's policy and the function's grants.
pub(crate) struct Egress {
    pub(crate) policy: EgressPolicy,
    pub(crate) grants: Arc<Grants>,
}

impl WasiHttpHooks for Egress {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), E>> + Send> {
        drop(fut);
        let (policy, grants) = (self.policy.clone(), self.grants.clone());
        Box::new(async move {
            let uri = request.uri();
            let host = uri.host().unwrap_or_default().to_string();
            let tls = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
            let first = match policy.resolve_for(&host, port, &grants).await {
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
            if tls {
                return send_tls(request, options, first, host.trim_matches(['[', ']'])).await;
            }
            // Connect to the address just checked; the Host header keeps the name.
            let mut parts = request.uri().clone().into_parts();
            parts.authority = Some(first.to_string().parse().map_err(|_| E::HttpRequestUriInvalid)?);
            *request.uri_mut() = http::Uri::from_parts(parts).map_err(|_| E::HttpRequestUriInvalid)?;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// HTTPS to `addr`, verifying the certificate for `host`, with wasmtime's timeouts (connect, first byte).
async fn send_tls(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    addr: SocketAddr,
    host: &str,
) -> Result<(http::Response<WasiBody>, IoFuture), E> {
    let limit = |t: Option<Duration>| t.unwrap_or(Duration::from_secs(600));
    let connect = limit(options.and_then(|o| o.connect_timeout));
    let first_byte = limit(options.and_then(|o| o.first_byte_timeout));
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| E::HttpRequestUriInvalid)?;
    let stream = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(E::Connect)?;
        tokio_rustls::TlsConnector::from(tls_config()).connect(name, tcp).await.map_err(E::Tls)
    };
    let stream = tokio::time::timeout(connect, stream).await.map_err(|_| E::ConnectionTimeout)??;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(E::from)?;
    let driver = tokio::spawn(conn);
    // The request line carries the path only, as to an origin server.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *request.uri_mut() = path.parse().map_err(|_| E::HttpRequestUriInvalid)?;
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| E::ConnectionReadTimeout)?
        .map_err(E::from)?;
    let io: IoFuture = Box::new(async move {
        match driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(E::from(e)),
            Err(e) => Err(E::InternalError(Some(e.to_string()))),
        }
    });
    Ok((response.map(|b| b.map_err(E::from).boxed_unsync()), io))
}
