//! The node's memory budget (issue 17): a flood of requests whose guests grow their memory and then wait
//! gets 503s with `Retry-After` instead of growing the node without bound, and another function's requests
//! keep succeeding. Bodies without a length (HTTP/1 chunked, h2c) count against the budget too.

use futures_util::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::node::{NodeProc, manifest, use_binary};

const BUDGET_MIB: u64 = 256;
/// The node's own memory beside the budget (code, connections, allocator), generous for a debug build.
const NODE_BASE_MIB: u64 = 250;

#[derive(Default)]
struct Tally {
    ok: AtomicU32,
    busy: AtomicU32,
    /// HTTP/1 uploads the node refused mid-body (503 and `Connection: close` while the client still wrote).
    cut: AtomicU32,
    other: AtomicU32,
}

impl Tally {
    fn count(&self, status: u16, retry_after: bool, body: &str) {
        match status {
            200 => self.ok.fetch_add(1, Ordering::Relaxed),
            503 if retry_after => self.busy.fetch_add(1, Ordering::Relaxed),
            _ => {
                println!("unexpected {status}: {body}");
                self.other.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    fn get(&self) -> (u32, u32, u32) {
        (self.ok.load(Ordering::Relaxed), self.busy.load(Ordering::Relaxed), self.other.load(Ordering::Relaxed))
    }
}

async fn send(tally: Arc<Tally>, req: reqwest::RequestBuilder) {
    send_upload(tally, req, false).await
}

/// `may_be_cut`: an HTTP/1 upload, which the node may answer (503) and close before the client has written it.
async fn send_upload(tally: Arc<Tally>, req: reqwest::RequestBuilder, may_be_cut: bool) {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").is_some();
            let body = r.text().await.unwrap_or_default();
            tally.count(status, retry_after, &body);
        }
        Err(e) if may_be_cut && e.is_request() => {
            tally.cut.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => tally.count(0, false, &e.to_string()),
    }
}

/// A body of `kib` KiB in 16 KiB chunks, without a length (chunked on HTTP/1).
fn chunked(kib: usize) -> reqwest::Body {
    let chunks = futures_util::stream::iter((0..kib / 16).map(|_| Ok::<_, std::io::Error>(vec![7u8; 16 << 10])));
    reqwest::Body::wrap_stream(chunks.boxed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_memory_hungry_requests_gets_503s_and_leaves_the_node_and_other_tenants_alone() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let wasm = rust_guest();
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), &format!("memory-budget = \"{BUDGET_MIB}Mi\"\nfair-share = 50\n"));
    let scaling = "  scaling:\n    maxQueue: 50\n    queueTimeout: 500ms\n  limits:\n    memory: 64Mi\n";
    node.deploy_ok(&manifest("greedy", &wasm, scaling)).await;
    node.deploy_ok(&manifest("polite", &wasm, "")).await;
    let baseline = node.rss_bytes();

    let h1 = node.client.clone();
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let (greedy, polite) = (Arc::new(Tally::default()), Arc::new(Tally::default()));
    let mut flood = Vec::new();
    // 300 clients whose guests each grow by 24 MiB and hold it for a second: 7 GiB unchecked.
    for i in 0..300 {
        let url = node.url("default", "greedy", "/hold?mb=24&ms=1000");
        let (req, upload) = match i % 3 {
            0 => (h1.get(url), false),
            // A chunked body of 1 MiB, read before admission, and an h2c body without a length.
            1 => (h1.post(url).body(chunked(1024)), true),
            _ => (h2.post(url).body(chunked(512)), false),
        };
        flood.push(tokio::spawn(send_upload(greedy.clone(), req, upload)));
    }
    // Meanwhile another tenant's function, four clients at a time.
    let polite_url = node.url("default", "polite", "/");
    let calm = (0..4).map(|_| {
        let (c, u, t) = (h1.clone(), polite_url.clone(), polite.clone());
        tokio::spawn(async move {
            for _ in 0..50 {
                send(t.clone(), c.get(&u)).await;
            }
        })
    });
    let calm: Vec<_> = calm.collect();
    for t in flood.into_iter().chain(calm) {
        t.await.unwrap();
    }

    let (ok, busy, other) = greedy.get();
    let cut = greedy.cut.load(Ordering::Relaxed);
    let (p_ok, p_busy, p_other) = polite.get();
    let peak = node.peak_rss_bytes();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    // RELIABILITY.md quotes this line (`--nocapture`).
    println!(
        "budget flood: greedy {ok} ok / {busy} 503 / {cut} cut mid-upload / {other} other; polite {p_ok}/{} ok; node RSS {:.1} MiB \
         before, peak {:.1} MiB (budget {BUDGET_MIB} MiB)",
        p_ok + p_busy + p_other,
        mib(baseline),
        mib(peak)
    );
    assert_eq!(other, 0, "only 200s and 503s with Retry-After");
    assert!(ok > 0 && busy > 0, "some ran, the rest were refused: {ok} ok, {busy} 503");
    assert_eq!((p_ok, p_busy, p_other), (200, 0, 0), "the other function keeps serving every request");
    assert!(peak < (BUDGET_MIB + NODE_BASE_MIB) << 20, "peak RSS {:.1} MiB", mib(peak));
    let reserved = node.metric("wasmfn_memory_reserved_bytes", &[]).await;
    assert_eq!(node.metric("wasmfn_memory_budget_bytes", &[]).await, (BUDGET_MIB << 20) as f64);
    assert!(reserved < (64 << 20) as f64, "the flood's reservations are given back: {reserved}");
    let (health, _, _) = node.get(&format!("http://{}/healthz", node.admin)).await;
    assert_eq!(health, 200);
    // Once the flood is over, the function serves within its share again.
    let (status, _, body) = node.get(&node.url("default", "greedy", "/hold?mb=24&ms=10")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_the_budget_cannot_hold_gets_503_and_bounds_are_checked_at_start() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let wasm = rust_guest();
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "memory-budget = \"16Mi\"\nfair-share = 50\nmax-request-body = \"16Mi\"\n");
    node.deploy_ok(&manifest("echo", &wasm, "  limits:\n    maxRequestBody: 16Mi\n")).await;
    // 12 MiB without a length: past the function's 8 MiB share while it is read, before any slot is taken. (Over
    // h2c, where the client reads the early answer; HTTP/1 clients see the connection close mid-upload.)
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let resp = h2.post(node.url("default", "echo", "/echo")).body(chunked(12 << 10)).send().await.unwrap();
    let (status, retry) = (resp.status().as_u16(), resp.headers().get("retry-after").is_some());
    let body = resp.text().await.unwrap_or_default();
    assert_eq!((status, retry), (503, true), "{body}");
    assert!(body.contains("fair share"), "{body}");
    let resp = node.client.post(node.url("default", "echo", "/echo")).body(chunked(64)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "a body within the share is served");
    let reserved = node.metric("wasmfn_memory_reserved_bytes", &[]).await;
    assert!(reserved < (8 << 20) as f64, "{reserved}");

    // A node whose body ceiling is above its whole budget does not start.
    let bad = tempfile::tempdir().unwrap();
    let opts = wasmfn_tests::node::Options {
        config: "memory-budget = \"16Mi\"\nmax-request-body = \"32Mi\"\n".into(),
        ..Default::default()
    };
    let Err((_, logs)) = NodeProc::try_start(bad.path(), opts) else { panic!("the node started") };
    assert!(logs.contains("max-request-body") && logs.contains("memory budget"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_namespace_filling_its_event_deliveries_does_not_block_another() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let wasm = rust_guest();
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "max-event-deliveries = 4\nfair-share = 50\n");
    for ns in ["flood", "calm"] {
        let yaml = format!(
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: sink\n  namespace: {ns}\nspec:\n  \
             component: {}\n  env:\n    - {{name: SLEEP_MS, value: \"3000\"}}\n  triggers:\n    - {{name: t, events: {{}}}}\n",
            wasm.display()
        );
        node.deploy_ok(&yaml).await;
    }
    let post = |ns: &'static str, id: u32| {
        let url = format!("http://{}/_events/{ns}", node.ingress);
        let req = node.client.post(url).header("ce-specversion", "1.0").header("ce-id", id.to_string());
        req.header("ce-source", "/test").header("ce-type", "t").body("{}").send()
    };
    // Two deliveries in progress fill the namespace's half of the node's four.
    for id in 0..2 {
        assert_eq!(post("flood", id).await.unwrap().status().as_u16(), 202);
    }
    let refused = post("flood", 2).await.unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    let body = refused.text().await.unwrap();
    assert!(body.contains("namespace `flood` holds its share"), "{body}");
    // The other namespace still gets the node's other half.
    for id in 0..2 {
        let resp = post("calm", id).await.unwrap();
        assert_eq!(resp.status().as_u16(), 202, "{}", resp.text().await.unwrap());
    }
    assert_eq!(post("calm", 9).await.unwrap().status().as_u16(), 503, "and no more than its half");
}
