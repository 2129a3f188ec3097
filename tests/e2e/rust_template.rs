//! The Rust template end to end: examples written with wasmfn-sdk built by `wasmfn build`/`wasmfn up` with the
//! real toolchain (rustup's wasm32-wasip2 target, or Debian's with -Zbuild-std), served by a real node.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wasmfn_tests::build::{Run, build_err, build_ok, cache_dir, initial_memory, wasmfn};
use wasmfn_tests::guests::repo_root;
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};

fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// A scaffolded Rust function whose `src/lib.rs` is replaced by `source`.
fn rust_function(parent: &Path, name: &str, source: &str) -> PathBuf {
    let dir = parent.join(name);
    let run = Run::from(wasmfn(&["new", name, "--lang", "rust", "--dir", dir.to_str().unwrap()]));
    assert!(run.ok, "{}", run.stderr);
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn up_builds_and_serves_the_rust_examples() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let names = ["hello-rust", "api-rust", "event-rust", "fetch-rust"];
    let mut args: Vec<String> = names.iter().map(|n| example(n).display().to_string()).collect();
    args.extend(["--cache-dir".into(), cache_dir().display().to_string(), "--allow-loopback-egress".into()]);
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with(dir.path(), Options { up: Some(args), ..Default::default() });

    // hello-rust, through its route.
    let (status, headers, text) = node.get(&format!("http://{}/hello/x?y=1", node.ingress)).await;
    assert_eq!((status, text.as_str()), (200, "Hello from wasmfn (Rust)! You asked for /x?y=1\n"));
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");

    // api-rust: JSON in and out, typed errors.
    let todos = node.url("default", "api-rust", "/todos");
    let resp = node.client.post(&todos).body(r#"{"title":"ship it"}"#).send().await.unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (&body["title"], &body["done"], &body["function"]),
        (&json!("ship it"), &json!(false), &json!("api-rust"))
    );
    for (payload, status, message) in
        [(r#"{"title":" "}"#, 400, "title must not be empty"), ("nope", 400, "invalid JSON body")]
    {
        let resp = node.client.post(&todos).body(payload).send().await.unwrap();
        assert_eq!(resp.status(), status, "{payload}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(message), "{body}");
    }
    let (status, _, _) = node.get(&node.url("default", "api-rust", "/missing")).await;
    assert_eq!(status, 404);

    // event-rust: a binary-mode and a structured-mode event each get a binary-mode reply.
    let url = node.url("default", "event-rust", "/");
    let order = r#"{"items":[{"price":2.5,"quantity":2},{"price":1.25,"quantity":4}]}"#;
    let binary = node
        .client
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "o-1")
        .header("ce-type", "dev.wasmfn.order.created")
        .header("ce-source", "/shop")
        .header("content-type", "application/json")
        .body(order);
    let structured = node.client.post(&url).header("content-type", "application/cloudevents+json").body(format!(
        r#"{{"specversion":"1.0","id":"o-2","type":"dev.wasmfn.order.created","source":"/shop","datacontenttype":"application/json","data":{order}}}"#
    ));
    for (req, id) in [(binary, "o-1"), (structured, "o-2")] {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{id}");
        let h = resp.headers().clone();
        assert_eq!(
            (h["ce-type"].to_str().unwrap(), h["ce-subject"].to_str().unwrap()),
            ("dev.wasmfn.order.processed", id)
        );
        assert_eq!(h["ce-id"], format!("{id}-processed").as_str());
        assert_eq!(h["ce-source"], "/wasmfn/event-rust");
        assert_eq!(h["ce-specversion"], "1.0");
        assert_eq!(resp.json::<Value>().await.unwrap(), json!({"order": id, "total": 10.0}));
    }
    // Another type is accepted without a reply; a plain request is a 400 naming what is missing.
    let resp = node
        .client
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "x")
        .header("ce-type", "dev.other")
        .header("ce-source", "/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = node.client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("CloudEvent"));

    // fetch-rust calls hello-rust over wasi:http/outgoing-handler.
    let target = node.url("default", "hello-rust", "/via-fetch");
    let (status, _, text) = node.get(&node.url("default", "fetch-rust", &format!("/?url={target}"))).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], 200);
    assert_eq!(body["body"], "Hello from wasmfn (Rust)! You asked for /via-fetch\n");
}

/// A panic traps the instance: 500 with the request id, the panic message logged, the next request served.
#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_handler_gets_a_500_and_the_next_request_is_served() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let parent = tempfile::tempdir().unwrap();
    let source = r#"
use wasmfn_sdk::{IntoResponse, Request};

#[wasmfn_sdk::http]
fn handle(req: Request) -> impl IntoResponse {
    if req.uri().path() == "/panic" {
        panic!("kaboom from rust");
    }
    "still fine"
}
"#;
    let dir = rust_function(parent.path(), "panicky", source);
    let (wasm, _) = build_ok(&dir, &[]);
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProc::start(dir.path(), "");
    node.deploy_ok(&manifest("panicky", &wasm, "")).await;
    let resp = node.client.get(node.url("default", "panicky", "/panic")).header("x-request-id", "req-p-1").send().await;
    let resp = resp.unwrap();
    assert_eq!(resp.status(), 500);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["requestId"], "req-p-1", "{body}");
    node.wait_for_log("kaboom from rust", std::time::Duration::from_secs(10)).await;
    let (status, _, text) = node.get(&node.url("default", "panicky", "/")).await;
    assert_eq!((status, text.as_str()), (200, "still fine"));
}

#[test]
fn rust_compile_errors_and_a_missing_handler_fail_the_build() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let parent = tempfile::tempdir().unwrap();
    let dir =
        rust_function(parent.path(), "broken", "pub fn handle() -> u32 {\n    let x: u32 = \"text\";\n    x\n}\n");
    let run = build_err(&dir, &[]);
    assert!(run.stderr.contains("cargo build --target wasm32-wasip2 failed"), "{}", run.stderr);
    assert!(run.stderr.contains("error[E0308]: mismatched types"), "{}", run.stderr);
    assert!(run.stderr.contains("src/lib.rs:2:"), "no file:line in: {}", run.stderr);

    // Compiles, but exports no handler: the build's validation rejects it.
    let dir = rust_function(parent.path(), "nohandler", "pub fn helper() -> u32 {\n    42\n}\n");
    let run = build_err(&dir, &[]);
    assert!(run.stderr.contains("cannot be served"), "{}", run.stderr);
    assert!(run.stderr.contains("wasi:http/incoming-handler"), "{}", run.stderr);
}

/// The scaffold `wasmfn new --lang rust` writes builds as is and greets from the query or the JSON body.
#[tokio::test(flavor = "multi_thread")]
async fn rust_scaffold_builds_and_serves() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("fresh-rust");
    let run = Run::from(wasmfn(&["new", "fresh-rust", "--lang", "rust", "--dir", dir.to_str().unwrap()]));
    assert!(run.ok, "{}", run.stderr);
    let (wasm, _) = build_ok(&dir, &[]);
    // The template starts Rust functions with 4 MiB (wasm-ld's default is ~1.1 MiB), so that a request does not
    // grow memory in its fresh instance.
    assert_eq!(initial_memory(&wasm), 4 << 20);
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "");
    node.deploy_ok(&manifest("fresh-rust", &wasm, "")).await;
    let (status, _, text) = node.get(&node.url("default", "fresh-rust", "/?name=ada")).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"message": "Hello, ada!", "function": "fresh-rust"})
    );
    let resp = node.client.post(node.url("default", "fresh-rust", "/")).body(r#"{"name":"bo"}"#).send().await.unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["message"], "Hello, bo!");
}
