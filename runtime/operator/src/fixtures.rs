//! A scripted API server for reconciler tests, on kube's `tower-test` mock service: each test states the
//! requests it expects, in order, and what the API server answers.

use crate::{Config, Context};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use std::time::Duration;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The expecting side of the mock.
pub struct ApiServer(Handle);

/// A request the reconciler made.
#[derive(Debug)]
pub struct Served {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// A context whose client talks to the returned [`ApiServer`].
pub fn context() -> (Context, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let config = Config {
        registry: "registry.test/functions".into(),
        insecure_registries: vec!["registry.test".into()],
        builder_image: "builder.test/wasmfn-builder:1".into(),
        max_builds: 2,
        domain: "fn.test".into(),
    };
    (Context::new(client, config).expect("a registry client"), ApiServer(handle))
}

/// A Kubernetes `Status` failure body.
pub fn status_failure(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{reason} (scripted)"), "reason": reason, "code": code})
}

impl ApiServer {
    /// Waits for the next request, checks its method and path, and answers with what `reply` makes of it.
    pub async fn handle(&mut self, method: &str, path: &str, reply: impl FnOnce(&Served) -> (u16, Value)) -> Served {
        let next = tokio::time::timeout(Duration::from_secs(10), self.0.next_request()).await;
        let (request, send) = next
            .unwrap_or_else(|_| panic!("no request within 10 s; expected {method} {path}"))
            .unwrap_or_else(|| panic!("the reconciler finished; expected {method} {path}"));
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("a request body");
        let served = Served {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        assert_eq!((served.method.as_str(), served.path.as_str()), (method, path), "unexpected request {served:?}");
        let (code, value) = reply(&served);
        let response = Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&value).expect("json")))
            .expect("a response");
        send.send_response(response);
        served
    }

    /// Answers with the request's own body (what server-side apply returns, near enough).
    pub async fn echo(&mut self, method: &str, path: &str) -> Served {
        self.handle(method, path, |s| (200, s.body.clone())).await
    }

    /// An Event is published.
    pub async fn event(&mut self) -> Served {
        self.echo("POST", "/apis/events.k8s.io/v1/namespaces/default/events").await
    }

    /// Asserts the reconciler makes no further request: the mock's client side has been dropped.
    pub async fn done(mut self) {
        let next = tokio::time::timeout(Duration::from_secs(10), self.0.next_request()).await;
        if let Ok(Some((request, _))) = next {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}
