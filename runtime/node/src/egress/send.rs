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

/// Largest event a guest may emit.
const MAX_EMITTED: usize = 1 << 20;

/// One request's outgoing HTTP: the node's policy and the function's grants, and what the request being served
/// passes on: its trace context and, for events, its hop count.
pub(crate) struct Egress {
    pub(crate) policy: EgressPolicy,
    pub(crate) grants: Arc<Grants>,
    pub(crate) namespace: Arc<str>,
    pub(crate) traceparent: Option<http::HeaderValue>,
    pub(crate) hops: u32,
}

impl Egress {
    /// Takes what outgoing calls carry on from the request about to be served.
    pub(crate) fn serving(&mut self, headers: &http::HeaderMap) {
        self.traceparent = headers.get("traceparent").cloned();
        self.hops = headers.get("ce-wasmfnhops").and_then(|h| h.to_str().ok()?.parse().ok()).unwrap_or(0);
    }
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
        let (namespace, hops) = (self.namespace.clone(), self.hops);
        // W3C trace context: the guest's outgoing calls continue the request's trace unless it set its own.
        if let Some(tp) = &self.traceparent
            && !request.headers().contains_key("traceparent")
        {
            request.headers_mut().insert("traceparent", tp.clone());
        }
        Box::new(async move {
            let uri = request.uri();
            let host = uri.host().unwrap_or_default().to_string();
            if host.eq_ignore_ascii_case(super::EVENTS_HOST) {
                return emit(request, &policy, &namespace, hops).await;
            }
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

/// A guest's `POST http://events.wasmfn.internal/`: the event goes to its namespace's broker in-process.
async fn emit(
    request: http::Request<WasiBody>,
    policy: &EgressPolicy,
    namespace: &str,
    hops: u32,
) -> Result<(http::Response<WasiBody>, IoFuture), E> {
    let (parts, body) = request.into_parts();
    let answer = |status: u16, body: serde_json::Value| {
        let body = http_body_util::Full::new(bytes::Bytes::from(body.to_string()));
        let mut resp = http::Response::new(body.map_err(|never| match never {}).boxed_unsync());
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        Ok((resp, Box::new(async { Ok(()) }) as IoFuture))
    };
    if parts.method != http::Method::POST {
        return answer(405, serde_json::json!({ "error": "events are emitted by POST" }));
    }
    let bytes = match http_body_util::Limited::new(body, MAX_EMITTED).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return answer(413, serde_json::json!({ "error": format!("an event is at most {MAX_EMITTED} bytes") }));
        }
    };
    let Some(publisher) = policy.publisher.get().and_then(std::sync::Weak::upgrade) else {
        return answer(503, serde_json::json!({ "error": "the node's broker is not running" }));
    };
    match publisher.publish_emitted(namespace, &parts.headers, bytes, hops) {
        Ok(deliveries) => answer(202, serde_json::json!({ "accepted": 1, "deliveries": deliveries })),
        Err((status, error)) => answer(status, serde_json::json!({ "error": error })),
    }
}
