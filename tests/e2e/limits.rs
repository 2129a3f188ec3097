//! Per-function limits: concurrency and queue (503), timeout (504), memory (500), request body (413).

use std::time::Duration;
use wasmfn_tests::eventually;
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::node::{NodeProc, manifest, use_binary};

fn start() -> (tempfile::TempDir, NodeProc) {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "");
    (dir, node)
}

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn overload_gets_503_with_retry_after_and_queue_times_out() {
    let wasm = rust_guest();
    let (_dir, node) = start();
    node.deploy_ok(&manifest(
        "slow",
        &wasm,
        "  scaling:\n    maxConcurrency: 1\n    maxQueue: 1\n    queueTimeout: 500ms\n",
    ))
    .await;
    let fn_label = "function=\"slow\"";

    let running = tokio::spawn({
        let (c, u) = (node.client.clone(), node.url("default", "slow", "/sleep?ms=3000"));
        async move { c.get(u).send().await.unwrap().status().as_u16() }
    });
    eventually(WAIT, "one request in flight", || async {
        (node.metric("wasmfn_in_flight", &[fn_label]).await == 1.0).then_some(())
    })
    .await;
    let queued = tokio::spawn({
        let (c, u) = (node.client.clone(), node.url("default", "slow", "/"));
        async move {
            let r = c.get(u).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    eventually(WAIT, "one request queued", || async {
        (node.metric("wasmfn_queue_depth", &[fn_label]).await == 1.0).then_some(())
    })
    .await;

    // Slot taken and queue full: rejected at once.
    let (status, headers, body) = node.get(&node.url("default", "slow", "/")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert!(body.contains("queue is full"), "{body}");

    // The queued request waits queueTimeout (500ms) while the first holds the slot for 3s.
    let (status, body) = queued.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("timed out waiting in the queue"), "{body}");
    assert_eq!(running.await.unwrap(), 200);
    // Once free, the function serves again.
    assert_eq!(node.get(&node.url("default", "slow", "/")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_gets_504_and_the_node_keeps_serving() {
    let wasm = rust_guest();
    let (_dir, node) = start();
    node.deploy_ok(&manifest("spin", &wasm, "  limits:\n    timeout: 300ms\n")).await;
    // A guest spinning in wasm code: stopped by epoch interruption.
    let (status, _, body) = node.get(&node.url("default", "spin", "/loop")).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("timeout of 300ms"), "{body}");
    // A guest blocked in a host call: stopped by the request deadline.
    let (status, _, body) = node.get(&node.url("default", "spin", "/sleep?ms=5000")).await;
    assert_eq!(status, 504, "{body}");
    let (status, _, body) = node.get(&node.url("default", "spin", "/")).await;
    assert_eq!((status, body.as_str()), (200, "hello from rust v0\n"));
    let (_, info) = node.admin_get("/v1/functions/default/spin").await;
    assert!(info["lastError"].as_str().unwrap_or_default().contains("timeout"), "{info}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_mid_body_aborts_the_response_instead_of_a_short_200() {
    let wasm = rust_guest();
    let (_dir, node) = start();
    node.deploy_ok(&manifest("partial", &wasm, "  limits:\n    timeout: 300ms\n")).await;
    // The connection is aborted: before the head left the node (hyper had it buffered) or mid-body. Either
    // way the client must not receive what looks like a complete 200.
    match node.client.get(node.url("default", "partial", "/partial")).send().await {
        Err(e) => assert!(e.is_request(), "{e}"),
        Ok(r) => {
            assert_eq!(r.status().as_u16(), 200);
            assert!(r.text().await.is_err(), "the body must end with an error, not look complete");
        }
    }
    let (_, info) = node.admin_get("/v1/functions/default/partial").await;
    assert!(info["lastError"].as_str().unwrap_or_default().contains("timeout"), "{info}");
    assert_eq!(node.get(&node.url("default", "partial", "/")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_request_body_holds_no_slot_and_times_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let wasm = rust_guest();
    let (_dir, node) = start();
    // One slot and a short wait for it: were the stalled request holding the slot, other requests would get
    // 503 after 500ms instead of waiting for it in the queue. Its body may stall for 5s (the timeout).
    let spec =
        "  scaling:\n    maxConcurrency: 1\n    maxQueue: 1\n    queueTimeout: 500ms\n  limits:\n    timeout: 5s\n";
    node.deploy_ok(&manifest("one", &wasm, spec)).await;
    // A chunked body that never finishes.
    let mut stalled = tokio::net::TcpStream::connect(node.ingress).await.unwrap();
    let head = "POST /default/one/echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let (_, info) = node.admin_get("/v1/functions/default/one").await;
    assert_eq!((info["inFlight"].as_i64(), info["queued"].as_i64()), (Some(0), Some(0)), "{info}");
    // Requests for a second, all while the body stalls: the only slot stays free for them (held, it would
    // turn them away with a 503 after the 500ms queue timeout).
    let until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < until {
        let (status, _, body) = node.get(&node.url("default", "one", "/")).await;
        assert_eq!(status, 200, "the stalled request must not hold the slot: {body}");
    }
    let mut early = [0u8; 64];
    assert!(
        matches!(stalled.try_read(&mut early), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the stalled request was answered before the checks ended: they did not overlap its stall"
    );
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_cap_fails_only_the_greedy_request() {
    let wasm = rust_guest();
    let (_dir, node) = start();
    node.deploy_ok(&manifest("greedy", &wasm, "  limits:\n    memory: 16Mi\n")).await;
    let neighbour = tokio::spawn({
        let (c, u) = (node.client.clone(), node.url("default", "greedy", "/sleep?ms=700"));
        async move { c.get(u).send().await.unwrap().status().as_u16() }
    });
    eventually(WAIT, "the neighbour in flight", || async {
        (node.metric("wasmfn_in_flight", &["function=\"greedy\""]).await == 1.0).then_some(())
    })
    .await;
    let (status, _, body) = node.get(&node.url("default", "greedy", "/alloc")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("memory limit of 16777216 bytes"), "{body}");
    assert_eq!(neighbour.await.unwrap(), 200, "the concurrent request must not be affected");
    assert_eq!(node.get(&node.url("default", "greedy", "/")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_body_gets_413_without_reaching_the_guest() {
    let wasm = rust_guest();
    let (_dir, node) = start();
    node.deploy_ok(&manifest("small", &wasm, "  limits:\n    maxRequestBody: 1Ki\n")).await;
    let url = node.url("default", "small", "/echo");
    let ok = node.client.post(&url).body(vec![b'a'; 1024]).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(ok.bytes().await.unwrap().len(), 1024);
    let count = "wasmfn_instantiation_duration_seconds_count";
    let instantiated = node.metric(count, &["function=\"small\""]).await;
    assert_eq!(instantiated, 1.0);

    // Declared length above the limit.
    let r = node.client.post(&url).body(vec![b'a'; 2048]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // The body was not read, so the connection must not be reused (clients would fail their next request).
    assert_eq!(r.headers()["connection"], "close");
    assert!(r.text().await.unwrap().contains("limit of 1024 bytes"));
    // Chunked, no declared length.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        (0..4).map(|_| Ok(bytes::Bytes::from(vec![b'b'; 512]))).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = node.client.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // A small chunked body passes.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        vec![Ok(bytes::Bytes::from_static(b"hi ")), Ok(bytes::Bytes::from_static(b"there"))];
    let r = node
        .client
        .post(&url)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hi there");
    assert_eq!(node.metric(count, &["function=\"small\""]).await, 2.0, "the 413s never instantiated the guest");
}
