//! Lifecycle: hot updates under load, restart, AOT cache recovery, scale to zero, graceful shutdown,
//! allocator fallback.

use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmfn_tests::eventually;
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::load::{Load, Sample};
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};

fn dir() -> tempfile::TempDir {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    tempfile::tempdir().unwrap()
}

fn versioned(name: &str, wasm: &std::path::Path, version: &str) -> String {
    manifest(name, wasm, &format!("  env:\n    - name: VERSION\n      value: {version}\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_update_under_load_loses_nothing_and_each_answer_has_one_revision() {
    let wasm = rust_guest();
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    node.deploy_ok(&versioned("upd", &wasm, "v1")).await;

    let load = Load::start(&node, &node.url("default", "upd", "/"), 8);
    node.wait_for_requests("upd", 200.0).await;
    node.deploy_ok(&versioned("upd", &wasm, "v2")).await;
    let deployed = Instant::now();
    node.wait_for_requests("upd", 200.0).await;
    let all = load.stop().await;
    let (mut v1, mut v2) = (0, 0);
    for Sample { started, status, revision: rev, body } in &all {
        assert_eq!(*status, 200, "{body}");
        match (rev.as_deref(), body.as_str()) {
            (Some("upd-1"), "hello from rust v1\n") => v1 += 1,
            (Some("upd-2"), "hello from rust v2\n") => v2 += 1,
            other => panic!("answer mixes revisions or is unknown: {other:?}"),
        }
        if *started > deployed {
            assert_eq!(
                rev.as_deref(),
                Some("upd-2"),
                "a request sent after the update returned went to the old revision"
            );
        }
    }
    assert!(v1 >= 200 && v2 >= 100, "v1 {v1}, v2 {v2}");
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_restores_the_table_and_shutdown_exits_zero() {
    let wasm = rust_guest();
    let d = dir();
    let mut node = NodeProc::start(d.path(), "");
    node.deploy_ok(&versioned("one", &wasm, "v1")).await;
    node.deploy_ok(&versioned("one", &wasm, "v2")).await;
    node.deploy_ok(&manifest("two", &wasm, "  routes:\n    - path: /two\n")).await;
    let (_, before) = node.admin_get("/v1/functions").await;
    assert!(node.stop().success());

    let node = NodeProc::start(d.path(), "");
    // Served at once, without any deploy.
    assert_eq!(node.get(&node.url("default", "one", "/")).await.2, "hello from rust v2\n");
    assert_eq!(node.get(&format!("http://{}/two/", node.ingress)).await.0, 200);
    let (_, after) = node.admin_get("/v1/functions").await;
    let pick = |v: &serde_json::Value| -> Vec<(String, String, String)> {
        v["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].to_string(), f["revision"].to_string(), f["digest"].to_string()))
            .collect()
    };
    assert_eq!(pick(&before), pick(&after));
    assert_eq!(pick(&after)[0].1, "\"one-2\"");
    // The revision counter carries on.
    let body = node.deploy_ok(&versioned("one", &wasm, "v3")).await;
    assert_eq!(body["function"]["revision"], "one-3");
    eventually(Duration::from_secs(60), "ready after warm-up", || async {
        (node.admin_get("/readyz").await.0 == 200).then_some(())
    })
    .await;
}

fn aot_entries(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for compat in std::fs::read_dir(data.join("aot")).unwrap() {
        for e in std::fs::read_dir(compat.unwrap().path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "cwasm") {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_or_swapped_aot_entries_are_recompiled() {
    let wasm = rust_guest();
    let d = dir();
    let mut node = NodeProc::start(d.path(), "");
    node.deploy_ok(&manifest("aot", &wasm, "")).await;
    assert!(node.stop().success());
    let entries = aot_entries(d.path());
    assert_eq!(entries.len(), 1);
    // Flip bytes in the middle of the compiled code.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(&entries[0], &bytes).unwrap();

    let mut node = NodeProc::start(d.path(), "");
    assert_eq!(node.get(&node.url("default", "aot", "/")).await.2, "hello from rust v0\n");
    assert_eq!(node.metric("wasmfn_aot_cache_corrupt_total", &[]).await, 1.0);
    assert!(node.logs().contains("corrupt or stale"));
    assert!(node.stop().success());

    // Another component's entry, tag file and all, copied over this one's: never served.
    let variant = d.path().join("variant.wasm");
    std::fs::write(&variant, with_custom_section(&std::fs::read(&wasm).unwrap())).unwrap();
    let mut node = NodeProc::start(d.path(), "");
    node.deploy_ok(&manifest("variant", &variant, "")).await;
    assert!(node.stop().success());
    let digest_of = |p: &std::path::Path| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
    };
    let (ours, theirs) = (digest_of(&wasm), digest_of(&variant));
    let compat = entries[0].parent().unwrap().to_path_buf();
    for ext in ["cwasm", "sum"] {
        std::fs::copy(compat.join(format!("{theirs}.{ext}")), compat.join(format!("{ours}.{ext}"))).unwrap();
    }
    let mut node = NodeProc::start(d.path(), "");
    assert_eq!(node.get(&node.url("default", "aot", "/")).await.0, 200);
    assert_eq!(node.metric("wasmfn_aot_cache_corrupt_total", &[]).await, 1.0);
    assert!(node.stop().success());

    // A truncated entry.
    let entry = compat.join(format!("{theirs}.cwasm"));
    let len = std::fs::metadata(&entry).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&entry).unwrap().set_len(len / 3).unwrap();
    let node = NodeProc::start(d.path(), "");
    assert_eq!(node.get(&node.url("default", "variant", "/")).await.2, "hello from rust v0\n");
    assert_eq!(node.metric("wasmfn_aot_cache_corrupt_total", &[]).await, 1.0);
}

/// The same component with a custom section appended: valid, same behaviour, another digest.
fn with_custom_section(component: &[u8]) -> Vec<u8> {
    let name = b"wasmfn-test";
    let payload = b"variant";
    let mut out = component.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_functions_scale_to_zero_and_cold_start_from_the_aot_cache() {
    let wasm = rust_guest();
    let d = dir();
    let node = NodeProc::start(d.path(), "idle-ttl = \"300ms\"\n");
    node.deploy_ok(&manifest("sleepy", &wasm, "")).await;
    let f = "function=\"sleepy\"";
    assert_eq!(node.get(&node.url("default", "sleepy", "/")).await.0, 200);
    assert_eq!(node.metric("wasmfn_cold_starts_total", &[f]).await, 0.0, "code loaded at deploy is warm");
    eventually(Duration::from_secs(10), "eviction", || async {
        (node.metric("wasmfn_evictions_total", &[f]).await >= 1.0
            && node.metric("wasmfn_loaded_revisions", &[]).await == 0.0)
            .then_some(())
    })
    .await;
    let (_, info) = node.admin_get("/v1/functions/default/sleepy").await;
    assert_eq!(info["loaded"], false);
    let hits = node.metric("wasmfn_aot_cache_hits_total", &[]).await;
    assert_eq!(node.get(&node.url("default", "sleepy", "/")).await.0, 200);
    assert_eq!(node.metric("wasmfn_cold_starts_total", &[f]).await, 1.0);
    assert_eq!(node.metric("wasmfn_aot_cache_hits_total", &[]).await, hits + 1.0, "reloaded from the AOT cache");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let wasm = rust_guest();
    let d = dir();
    let mut node = NodeProc::start(d.path(), "shutdown-timeout = \"20s\"\n");
    node.deploy_ok(&manifest("drain", &wasm, "")).await;
    let inflight = tokio::spawn({
        let (c, u) = (node.client.clone(), node.url("default", "drain", "/sleep?ms=1500"));
        async move {
            let r = c.get(u).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    eventually(Duration::from_secs(10), "request in flight", || async {
        (node.metric("wasmfn_in_flight", &["function=\"drain\""]).await == 1.0).then_some(())
    })
    .await;
    let mut child = node.terminate();
    let (status, body) = inflight.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "slept"));
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(node.logs().contains("draining in-flight"));
    assert!(std::net::TcpStream::connect(node.ingress).is_err(), "the listener is closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn pooling_by_default_and_on_demand_when_address_space_is_short() {
    let wasm = rust_guest();
    let d = dir();
    let node = NodeProc::start(d.path(), "");
    assert_eq!(node.metric("wasmfn_instance_allocator", &["pooling"]).await, 1.0);
    drop(node);
    // 16 GiB of address space cannot hold 2,000 pooled 4 GiB memory slots.
    let d = dir();
    let node = NodeProc::start_with(
        d.path(),
        Options { shell_prefix: Some("ulimit -v 16000000;".into()), ..Default::default() },
    );
    assert!(node.logs().contains("falling back to on-demand allocation"), "{}", node.logs());
    assert_eq!(node.metric("wasmfn_instance_allocator", &["on-demand"]).await, 1.0);
    node.deploy_ok(&manifest("ondemand", &wasm, "")).await;
    assert_eq!(node.get(&node.url("default", "ondemand", "/")).await.0, 200);
}
