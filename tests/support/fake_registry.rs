//! A scripted OCI registry on 127.0.0.1 for the hostile tests: it answers exactly what a test scripts for each
//! manifest and blob path, including what a real registry never would (path-like digests, blobs longer than
//! their descriptor, endless bodies). Everything else is 404.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What a path answers.
#[derive(Clone)]
pub enum Answer {
    /// These bytes, with this content type.
    Bytes(&'static str, Vec<u8>),
    /// This many zero bytes, streamed in 64 KiB chunks (`u64::MAX`: endless).
    Zeros(&'static str, u64),
}

/// A running scripted registry.
pub struct FakeRegistry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    _server: tokio::task::JoinHandle<()>,
}

/// The OCI image manifest media type.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI manifest with one layer of `media_type`, `layer_digest` and `size`, and an empty JSON config.
pub fn manifest(media_type: &str, layer_digest: &str, size: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": digest(b"{}"), "size": 2},
        "layers": [{"mediaType": media_type, "digest": layer_digest, "size": size}],
    }))
    .unwrap()
}

impl FakeRegistry {
    /// Starts it on an ephemeral loopback port, answering nothing yet.
    pub async fn start() -> FakeRegistry {
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let shared = answers.clone();
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let answers = shared.clone();
            async move { answer(&answers, uri.path()) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRegistry { addr, answers, _server: server }
    }

    /// Scripts `GET /v2/<repo>/manifests/<tag>`.
    pub fn manifest(&self, repo: &str, tag: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(format!("/v2/{repo}/manifests/{tag}"), answer);
    }

    /// Scripts `GET /v2/<repo>/blobs/<digest>`.
    pub fn blob(&self, repo: &str, digest: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(format!("/v2/{repo}/blobs/{digest}"), answer);
    }

    /// `127.0.0.1:PORT/<repo>:<tag>`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }
}

fn answer(answers: &Mutex<HashMap<String, Answer>>, path: &str) -> Response {
    if path == "/v2/" || path == "/v2" {
        return StatusCode::OK.into_response();
    }
    let Some(found) = answers.lock().unwrap().get(path).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut headers = HeaderMap::new();
    match found {
        Answer::Bytes(content_type, bytes) => {
            headers.insert("content-type", content_type.parse().unwrap());
            headers.insert("docker-content-digest", digest(&bytes).parse().unwrap());
            (headers, bytes).into_response()
        }
        Answer::Zeros(content_type, total) => {
            headers.insert("content-type", content_type.parse().unwrap());
            let chunks = stream::unfold(total, |left| async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(64 << 10);
                Some((Ok::<_, std::io::Error>(vec![0u8; n as usize]), left - n))
            });
            (headers, Body::from_stream(chunks)).into_response()
        }
    }
}
