//! A steady load on one function: workers send requests back to back until stopped, recording each answer.

use crate::node::NodeProc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// One answer (or a failed request: status 0, the error in `body`).
#[derive(Debug, Clone)]
pub struct Sample {
    pub started: Instant,
    pub status: u16,
    pub revision: Option<String>,
    pub body: String,
}

/// Running workers.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts `workers` clients requesting `url`.
    pub fn start(node: &Arc<NodeProc>, url: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|_| {
                let (node, stop, url) = (node.clone(), stop.clone(), url.to_string());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let sample = match node.client.get(&url).send().await {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let revision =
                                    r.headers().get("x-wasmfn-revision").map(|v| v.to_str().unwrap().to_string());
                                match r.text().await {
                                    Ok(body) => Sample { started, status, revision, body },
                                    // A body cut short is a failed request, whatever the head said.
                                    Err(e) => {
                                        let body = format!("status {status}, then the body failed: {e}");
                                        Sample { started, status: 0, revision, body }
                                    }
                                }
                            }
                            Err(e) => Sample { started, status: 0, revision: None, body: e.to_string() },
                        };
                        seen.push(sample);
                    }
                    seen
                })
            })
            .collect();
        Load { stop, workers }
    }

    /// Stops the workers and returns every answer.
    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for w in self.workers {
            all.extend(w.await.expect("load worker"));
        }
        all
    }
}

impl NodeProc {
    /// Waits until `function` has answered `more` requests beyond what it had answered when called.
    pub async fn wait_for_requests(&self, function: &str, more: f64) {
        let needle = format!("function=\"{function}\"");
        let total = || async { self.metric_opt("wasmfn_requests_total", &[needle.as_str()]).await.unwrap_or(0.0) };
        let target = total().await + more;
        crate::eventually(Duration::from_secs(60), &format!("{more} more requests to {function}"), || async {
            (total().await >= target).then_some(())
        })
        .await;
    }
}
