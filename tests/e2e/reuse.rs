//! Opt-in instance reuse (`spec.scaling.reuse`): module-level state lives across the requests of one
//! instance and never crosses revisions; a trap, a timeout, a memory limit, memory above the ceiling,
//! `maxRequests` and the idle timeout each discard the instance, and the next request gets a fresh one.
//! The guests count requests in a module-level variable (`/count`), so "fresh" is the count starting at 1.

use std::time::Duration;
use wasmfn_tests::eventually;
use wasmfn_tests::guests::{js_guest, py_guest, rust_guest};
use wasmfn_tests::node::{NodeProc, manifest, use_binary};

const WAIT: Duration = Duration::from_secs(30);

fn start(config: &str) -> (tempfile::TempDir, NodeProc) {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), config);
    (dir, node)
}

async fn count(node: &NodeProc, name: &str) -> String {
    let (status, _, body) = node.get(&node.url("default", name, "/count")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn discarded(node: &NodeProc, name: &str, reason: &str) -> f64 {
    let labels = [&format!("function=\"{name}\"") as &str, &format!("reason=\"{reason}\"")];
    node.metric_opt("wasmfn_instances_discarded_total", &labels).await.unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_instance_keeps_module_state_until_it_fails_or_reaches_a_limit() {
    let wasm = rust_guest();
    let (_dir, node) = start("");
    // One request at a time, so every request finds the instance the previous one left.
    let scaling = "  scaling:\n    maxConcurrency: 1\n    reuse: {maxRequests: 3, maxMemory: 32Mi}\n";
    let limits = "  limits: {timeout: 1s, memory: 64Mi}\n";
    node.deploy_ok(&manifest("keep", &wasm, &format!("{scaling}{limits}"))).await;
    node.deploy_ok(&manifest("fresh", &wasm, "")).await;

    // Without reuse every request gets a fresh instance.
    assert_eq!((count(&node, "fresh").await, count(&node, "fresh").await), ("1".into(), "1".into()));

    // maxRequests: 3 requests on one instance, then a fresh one.
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(count(&node, "keep").await);
    }
    assert_eq!(seen, ["1", "2", "3", "1"]);
    assert_eq!(discarded(&node, "keep", "max-requests").await, 1.0);

    // A trap discards the instance.
    assert_eq!(node.get(&node.url("default", "keep", "/trap")).await.0, 500);
    assert_eq!(count(&node, "keep").await, "1");
    assert_eq!(discarded(&node, "keep", "trap").await, 1.0);

    // A timeout (a guest blocked in a host call past `limits.timeout`) discards it.
    assert_eq!(node.get(&node.url("default", "keep", "/sleep?ms=5000")).await.0, 504);
    assert_eq!(count(&node, "keep").await, "1");
    assert_eq!(discarded(&node, "keep", "timeout").await, 1.0);

    // Growing past `limits.memory` fails the request and discards the instance.
    assert_eq!(node.get(&node.url("default", "keep", "/alloc")).await.0, 500);
    assert_eq!(count(&node, "keep").await, "1");
    assert_eq!(discarded(&node, "keep", "memory").await, 1.0);

    // Growing past `reuse.maxMemory` (but under the limit) answers, then the instance is not kept.
    let (status, _, body) = node.get(&node.url("default", "keep", "/grow?mb=40")).await;
    assert_eq!((status, body.as_str()), (200, "kept 40 MiB"));
    assert_eq!(count(&node, "keep").await, "1");
    assert_eq!(discarded(&node, "keep", "memory").await, 2.0);
    assert!(node.metric("wasmfn_instances_reused_total", &["function=\"keep\""]).await >= 4.0);

    // A new revision (an env change) starts from fresh instances; its instances are its own.
    assert_eq!(count(&node, "keep").await, "2");
    let env = "  env: [{name: VERSION, value: v2}]\n";
    node.deploy_ok(&manifest("keep", &wasm, &format!("{scaling}{limits}{env}"))).await;
    let (_, headers, _) = node.get(&node.url("default", "keep", "/")).await;
    assert_eq!(headers["x-wasmfn-revision"], "keep-2");
    assert_eq!(count(&node, "keep").await, "1", "module state never crosses revisions");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_instances_expire_and_each_request_logs_under_its_own_id() {
    let wasm = rust_guest();
    // The node sweeps idle instances every idle-ttl / 4 (1 s); code is evicted after 4 s, well after the
    // instances' idle timeout.
    let (_dir, node) = start("idle-ttl = \"4s\"\n");
    let spec = "  scaling:\n    maxConcurrency: 1\n    reuse: {idleTimeout: 1500ms}\n";
    node.deploy_ok(&manifest("idle", &wasm, spec)).await;
    for id in ["req-first", "req-second"] {
        let url = node.url("default", "idle", "/log?lines=1");
        let r = node.client.get(url).header("x-request-id", id).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(node.metric("wasmfn_instances_reused_total", &["function=\"idle\""]).await, 1.0);
    let logs = node.wait_for_log("req-second", Duration::from_secs(10)).await;
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains("guest line 0")).collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(lines[0].contains("req-first") && lines[1].contains("req-second"), "{lines:?}");

    // Left alone past its idle timeout, the instance is dropped and gives its idle slot back; the next
    // request starts from a fresh one.
    eventually(WAIT, "the idle instance to expire", || async {
        let expired = discarded(&node, "idle", "idle").await >= 1.0;
        (expired && node.metric("wasmfn_idle_instances", &[]).await == 0.0).then_some(())
    })
    .await;
    assert_eq!(count(&node, "idle").await, "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_state_lives_across_reused_requests_and_javascript_falls_back_to_fresh_instances() {
    let (js, py) = (js_guest(), py_guest());
    let (_dir, node) = start("");
    let reuse = "  scaling:\n    maxConcurrency: 1\n    reuse: {}\n  limits:\n    memory: 256Mi\n";
    node.deploy_ok(&manifest("py", &py, reuse)).await;
    node.deploy_ok(&manifest("js", &js, reuse)).await;
    let seen = [count(&node, "py").await, count(&node, "py").await, count(&node, "py").await];
    assert_eq!(seen, ["1", "2", "3"]);

    // StarlingMonkey (componentize-js) answers one request per instance: the second call returns without a
    // response. That request gets a 500 (not a hang), reuse is turned off for the revision with the reason
    // in its status, and every later request gets a fresh instance.
    assert_eq!(count(&node, "js").await, "1");
    let (status, _, body) = node.get(&node.url("default", "js", "/count")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("without setting a response") && body.contains("reuse is off"), "{body}");
    let (_, info) = node.admin_get("/v1/functions/default/js").await;
    assert!(info["lastError"].as_str().unwrap_or_default().contains("instance reuse is off"), "{info}");
    for _ in 0..3 {
        assert_eq!(count(&node, "js").await, "1");
    }
    let r = node.client.post(node.url("default", "js", "/echo")).body("ping").send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ping");
    assert_eq!(discarded(&node, "js", "no-response").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_instance_that_returns_without_a_response_turns_reuse_off() {
    let wasm = rust_guest();
    let (_dir, node) = start("");
    let spec = "  scaling:\n    maxConcurrency: 1\n    reuse: {}\n  limits: {timeout: 10s}\n";
    node.deploy_ok(&manifest("quiet", &wasm, spec)).await;
    assert_eq!(count(&node, "quiet").await, "1");
    // On the reused instance: a 500 at once (not a hang until the timeout) that says why.
    let (status, _, body) = node.get(&node.url("default", "quiet", "/noresponse")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("without setting a response") && body.contains("reuse is off"), "{body}");
    assert_eq!(discarded(&node, "quiet", "no-response").await, 1.0);
    let (_, info) = node.admin_get("/v1/functions/default/quiet").await;
    assert!(info["lastError"].as_str().unwrap_or_default().contains("instance reuse is off"), "{info}");
    // From then on every request gets a fresh instance.
    assert_eq!((count(&node, "quiet").await, count(&node, "quiet").await), ("1".into(), "1".into()));
}
