//! What Kyma/Kubeless functions `require` (issue 18): Node.js built-ins through polyfills, npm packages bundled
//! (axios and node-fetch over the engine's fetch, lodash, uuid, dayjs, moment), packages needing sockets or native
//! code refused at build time naming the module; Python's standard library modules and `requests` over wasi:http.
//! The corpus is in `tests/kyma/`; outbound calls go to a loopback server the function is granted.

use axum::Json;
use axum::extract::{Query, Request};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use wasmfn_tests::build::{build_err, build_ok};
use wasmfn_tests::node::{NodeProc, manifest, use_binary};

fn corpus(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kyma").join(name)
}

/// A copy of a corpus function in a temporary folder (the build writes `node_modules` and caches there).
fn copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(corpus(name)).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// The upstream the functions call: `GET /json` answers the path and `x-client`; `POST /echo` the JSON body.
async fn upstream() -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route(
            "/json",
            get(|Query(q): Query<HashMap<String, String>>, req: Request| async move {
                let client = req.headers().get("x-client").and_then(|v| v.to_str().ok()).map(str::to_string);
                let query = q.get("from").map(|f| format!("?from={f}")).unwrap_or_default();
                Json(json!({"path": format!("/json{query}"), "client": client}))
            }),
        )
        .route("/echo", post(|Json(body): Json<Value>| async move { Json(json!({"echo": body})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

fn spec(upstream: &str) -> String {
    format!(
        "  egress:\n    allow: [\"127.0.0.1\"]\n  env:\n    - {{name: UPSTREAM, value: \"{upstream}\"}}\n    - {{name: GREETING, value: hi}}\n"
    )
}

async fn call(node: &NodeProc, function: &str, path: &str) -> (u16, Value) {
    let resp = node.client.get(node.url("default", function, path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread")]
async fn node_builtins_and_npm_packages_bundle_and_run() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = copy("npm");
    let (wasm, _) = build_ok(dir.path(), &["--template", "js"]);
    let (upstream, server) = upstream().await;
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "");
    node.deploy_ok(&manifest("npm", &wasm, &spec(&upstream))).await;

    let (status, b) = call(&node, "npm", "/builtins").await;
    assert_eq!(status, 200, "{b}");
    assert_eq!((b["buffer"].as_str(), b["globalBuffer"].as_str()), (Some("aGVsbG8="), Some("hi")));
    assert_eq!((b["format"].as_str(), b["inspect"].as_str()), (Some("n=42"), Some("{ a: [ 1, 2 ] }")));
    assert_eq!((&b["promisify"], b["events"].as_str()), (&json!(42), Some("pong")));
    assert_eq!(b["urlParse"], json!({"host": "example.test:8080", "pathname": "/a/b", "query": "x=1&y=two"}));
    assert_eq!(b["whatwg"], "http://example.test/c?d=4");
    assert_eq!((&b["querystring"], b["stringify"].as_str()), (&json!({"a": "1", "b": "x y"}), Some("q=a%20b&n=3")));
    assert_eq!((b["path"].as_str(), b["ext"].as_str()), (Some("/srv/data/x.json"), Some(".html")));
    assert_eq!(b["uuid"], 36);
    assert_eq!(b["sha256"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(b["md5"], "kAFQmDzST7DWlj99KOF/cg==");
    assert_eq!(b["hmac"], "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    assert_eq!(
        (&b["randomBytes"], b["env"].as_str(), b["nextTick"].as_str()),
        (&json!(16), Some("hi"), Some("ticked"))
    );

    let (status, b) = call(&node, "npm", "/packages").await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["axios"]["status"], 200);
    assert_eq!(b["axios"]["data"], json!({"path": "/json?from=axios", "client": "axios"}));
    assert_eq!(b["axios"]["posted"], json!({"echo": {"n": 1}}));
    assert_eq!(b["nodeFetch"], json!({"status": 200, "data": {"path": "/json?from=node-fetch", "client": null}}));
    assert_eq!(b["lodash"], json!({"chunk": [[1, 2], [3, 4], [5]], "get": 3, "camel": "fooBar"}));
    assert_eq!((&b["uuid"], b["dayjs"].as_str()), (&json!(true), Some("2024-02-29")));
    assert_eq!(b["moment"], "2025-01-01 01:00");

    // A built-in a function cannot have imports fine and fails when used, naming the module.
    let (status, b) = call(&node, "npm", "/fs").await;
    assert_eq!(status, 500);
    assert!(b["error"].as_str().unwrap().contains("the Node.js module `fs` is not available"), "{b}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn packages_needing_sockets_or_native_code_fail_the_build_naming_the_module() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    // A real npm package built on raw sockets.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "r", "private": true, "dependencies": {"redis": "4.7.0"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("handler.js"),
        "const { createClient } = require('redis');\nexports.main = async () => (await createClient().connect()).get('k');\n",
    )
    .unwrap();
    let run = build_err(dir.path(), &["--template", "js"]);
    assert!(run.stderr.contains("imports `redis`, which needs raw sockets or native code"), "{}", run.stderr);
    assert!(run.stderr.contains("Redis REST API"), "what to use instead: {}", run.stderr);

    // A package deep in node_modules loading a native addon: the error names the package the function uses.
    let dir = tempfile::tempdir().unwrap();
    let addon = dir.path().join("node_modules/imagey/node_modules/imagey-core");
    std::fs::create_dir_all(&addon).unwrap();
    std::fs::write(dir.path().join("node_modules/imagey/index.js"), "module.exports = require('imagey-core');\n")
        .unwrap();
    std::fs::write(addon.join("index.js"), "module.exports = require('./build/Release/imagey.node');\n").unwrap();
    std::fs::write(
        dir.path().join("handler.js"),
        "const imagey = require('imagey');\nexports.main = () => imagey.x;\n",
    )
    .unwrap();
    let run = build_err(dir.path(), &["--template", "js"]);
    assert!(
        run.stderr.contains(
            "the npm package `imagey` (via imagey-core) loads the native addon `./build/Release/imagey.node`"
        ),
        "{}",
        run.stderr
    );

    // Python: the requirement is refused before pip runs.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("requirements.txt"), "psycopg2-binary==2.9.9\n").unwrap();
    std::fs::write(dir.path().join("handler.py"), "def main(event, context):\n    return 'x'\n").unwrap();
    let run = build_err(dir.path(), &["--template", "python"]);
    assert!(run.stderr.contains("`psycopg2-binary` needs raw sockets or native code"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_standard_library_and_requests_run() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = copy("python");
    let (wasm, _) = build_ok(dir.path(), &["--template", "python"]);
    let (upstream, server) = upstream().await;
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "");
    node.deploy_ok(&manifest("py", &wasm, &spec(&upstream))).await;

    let (status, b) = call(&node, "py", "/stdlib").await;
    assert_eq!(status, 200, "{b}");
    assert_eq!((&b["json"], b["datetime"].as_str()), (&json!({"a": [1, 2]}), Some("2024-02-29")));
    assert_eq!(b["parse"], json!({"host": "example.test:8080", "query": {"x": ["1"], "y": ["two"]}}));
    assert_eq!((b["quote"].as_str(), b["base64"].as_str()), (Some("a%20b/c"), Some("aGVsbG8=")));
    assert_eq!(b["sha256"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(b["md5"], "kAFQmDzST7DWlj99KOF/cg==");
    assert_eq!(b["hmac"], "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    assert!(node.logs().contains("stdlib corpus"), "logging reaches the node's log");

    let (status, b) = call(&node, "py", "/requests").await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["status"], 200);
    assert_eq!(b["data"], json!({"path": "/json?from=requests", "client": "requests"}));
    assert_eq!((&b["posted"], b["contentType"].as_str()), (&json!({"echo": {"n": 1}}), Some("application/json")));
    assert_eq!(b["missing"], 404);
    assert!(b["raised"].as_str().unwrap().starts_with("404 Client Error"), "{b}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_read_at_module_load_warns_at_build_time() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let dir = tempfile::tempdir().unwrap();
    // A source of its own (a nonce): a cache hit would print no build output.
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::fs::write(
        dir.path().join("handler.js"),
        format!(
            "// {nonce}\nconst early = process.env.API_URL;\nexports.main = () => ({{ early: early ?? null, late: process.env.API_URL }});\n"
        ),
    )
    .unwrap();
    let (wasm, run) = build_ok(dir.path(), &["--template", "js"]);
    assert!(run.stderr.contains("warning: process.env.API_URL is read while the module loads"), "{}", run.stderr);
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start(data.path(), "");
    node.deploy_ok(&manifest("env", &wasm, "  env:\n    - {name: API_URL, value: \"http://api\"}\n")).await;
    let (status, b) = call(&node, "env", "/").await;
    assert_eq!((status, b), (200, json!({"early": null, "late": "http://api"})));
}
