//! The console (issue 19) in a real browser: Debian's chromium, headless, driven by chromedriver over WebDriver
//! (fantoccini), against a real `wasmfn up` started on an empty folder. Create a JavaScript function in the
//! editor → it builds → test-invoke it and read the body → its log line appears live → a syntax error shows a
//! marker on its line while the old revision keeps answering → fix it → split traffic 50/50 → roll back; a
//! Python function from the template picker. Also: the CLI (`ls`, `call`, `logs`, `delete`) against the same
//! node, cross-site calls refused, and `up` answering one function while another still builds.
//!
//! With `WASMFN_SCREENSHOTS=DIR`, the browser test saves the README's screenshots there.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use wasmfn_tests::eventually;
use wasmfn_tests::node::{NodeProc, Options, use_binary};

/// chromedriver on a loopback port, stopped on drop.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser() -> (Client, Driver) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("chromedriver")
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (apt-get install chromium-driver; scripts/setup.sh does)");
    let driver = Driver(child, port);
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-proxy-server"]
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{}", driver.1);
    let client = eventually(Duration::from_secs(30), "chromedriver to accept a session", || {
        let (caps, url) = (caps.clone(), url.clone());
        async move { ClientBuilder::new(HttpConnector::new()).capabilities(caps).connect(&url).await.ok() }
    })
    .await;
    (client, driver)
}

/// Waits for the element `css`, with a deadline.
async fn find(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait().at_most(Duration::from_secs(60)).for_element(Locator::Css(css)).await.unwrap_or_else(|e| {
        panic!("no `{css}` on the page: {e}");
    })
}

/// The text of `css`, once it contains `needle` (polled with a deadline).
async fn text_with(c: &Client, css: &str, needle: &str, within: Duration) -> String {
    eventually(within, &format!("`{css}` to contain {needle:?}"), || async {
        let el = c.find(Locator::Css(css)).await.ok()?;
        let text = el.text().await.ok()?;
        text.contains(needle).then_some(text)
    })
    .await
}

/// Replaces the open editor's text (typing into CodeMirror over WebDriver is slow and flaky).
async fn set_code(c: &Client, code: &str) {
    c.execute(
        "const v = window.wasmfnEditor; v.dispatch({changes: {from: 0, to: v.state.doc.length, insert: arguments[0]}});",
        vec![json!(code)],
    )
    .await
    .unwrap();
}

async fn screenshot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("WASMFN_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn invoke(c: &Client, body: &str) -> (String, String) {
    let field = find(c, "#body").await;
    field.clear().await.unwrap();
    field.send_keys(body).await.unwrap();
    let before = c.find(Locator::Css("#result-request")).await.ok();
    let before = match before {
        Some(el) => el.text().await.unwrap_or_default(),
        None => String::new(),
    };
    find(c, "#send").await.click().await.unwrap();
    let request = eventually(Duration::from_secs(60), "a new result", || async {
        let t = c.find(Locator::Css("#result-request")).await.ok()?.text().await.ok()?;
        (t != before).then_some(t)
    })
    .await;
    let status = find(c, "#result-status").await.text().await.unwrap();
    let body = find(c, "#result-body").await.text().await.unwrap();
    (format!("{status} {request}"), body)
}

const V1: &str = "export function handler(event, context) {\n  console.log('console says hi to ' + event.data.name);\n  return 'v1 hello ' + event.data.name;\n}\n";
const BROKEN: &str = "export function handler(event, context) {\n  return 'v2 hello ' + ;\n}\n";
const V2: &str = "export function handler(event, context) {\n  return 'v2 hello ' + event.data.name;\n}\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_console_creates_builds_tests_logs_and_rolls_out_a_function() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let root = tempfile::tempdir().unwrap();
    let cache = wasmfn_tests::build::cache_dir().display().to_string();
    let args = vec![root.path().display().to_string(), "--cache-dir".into(), cache];
    let data = tempfile::tempdir().unwrap();
    let env = vec![("WASMFN_SERIES_INTERVAL".to_string(), "1s".to_string())];
    let options = Options { up: Some(args), env, ..Default::default() };
    let node = NodeProc::start_with(data.path(), options);
    assert!(node.stdout().starts_with("wasmfn console: http://"), "the console's URL first:\n{}", node.stdout());
    let admin = format!("http://{}", node.admin);
    let (c, _driver) = browser().await;

    // The list, then a new JavaScript function from the template picker.
    c.goto(&format!("{admin}/")).await.unwrap();
    find(&c, "h1").await;
    let rendered = eventually(Duration::from_secs(10), "the first render's time", || async {
        c.execute("return window.wasmfnFirstRender ?? null;", vec![]).await.ok()?.as_f64()
    })
    .await;
    println!("first render {rendered:.0} ms after navigation started");
    c.goto(&format!("{admin}/#/new")).await.unwrap();
    find(&c, "#new-name").await;
    // Keyboard: the form starts on its first field, and Tab moves through the fields in order.
    let focused = |c: &Client| {
        let c = c.clone();
        async move { c.active_element().await.unwrap().attr("id").await.unwrap().unwrap_or_default() }
    };
    assert_eq!(focused(&c).await, "new-name");
    c.active_element().await.unwrap().send_keys("\u{E004}").await.unwrap();
    assert_eq!(focused(&c).await, "new-namespace");
    find(&c, "#new-name").await.send_keys("hello-console").await.unwrap();
    find(&c, "#new-template option[value='js']").await.click().await.unwrap();
    find(&c, "#create").await.click().await.unwrap();
    find(&c, "#editor .cm-content").await;
    // The scaffold builds first (revision 1).
    text_with(&c, "#fn-state", "ready", Duration::from_secs(120)).await;
    screenshot(&c, "editor").await;

    // Edit, save: it builds and deploys with the build's progress on the page.
    set_code(&c, V1).await;
    find(&c, "#save").await.click().await.unwrap();
    find(&c, "#build-done").await;

    // Test-invoke it and read the body; its log line appears live under its request id.
    c.goto(&format!("{admin}/#/fn/default/hello-console/test")).await.unwrap();
    let (status, body) = invoke(&c, r#"{"name": "Ada"}"#).await;
    assert!(status.starts_with("200 "), "{status}");
    assert_eq!(body, "v1 hello Ada");
    assert_eq!(find(&c, "#result-revision").await.text().await.unwrap(), "hello-console-2");
    screenshot(&c, "test").await;
    find(&c, "#result-request").await.click().await.unwrap();
    let logs = text_with(&c, "#logs", "console says hi to Ada", Duration::from_secs(30)).await;
    assert!(logs.contains("hello-console-2"), "{logs}");

    // A syntax error: a marker on line 2, and the old revision keeps answering.
    c.goto(&format!("{admin}/#/fn/default/hello-console/code")).await.unwrap();
    find(&c, "#editor .cm-content").await;
    set_code(&c, BROKEN).await;
    find(&c, "#save").await.click().await.unwrap();
    find(&c, "#build-failed").await;
    let lines: Value = c.execute("return window.wasmfnDiagnostics.map(d => d.line);", vec![]).await.unwrap();
    assert_eq!(lines, json!([2]), "the marker is on the line with the error");
    find(&c, ".cm-lint-marker-error").await;
    screenshot(&c, "build-error").await;
    let (status, _, body) = node.get(&node.url("default", "hello-console", "/")).await;
    assert_eq!((status, body.contains("v1 hello")), (200, true), "the previous revision keeps serving: {body}");

    // Fixed: a second revision.
    set_code(&c, V2).await;
    find(&c, "#save").await.click().await.unwrap();
    find(&c, "#build-done").await;

    // Traffic 50/50 between the two revisions, then roll back.
    c.goto(&format!("{admin}/#/fn/default/hello-console/revisions")).await.unwrap();
    for (rev, pct) in [("hello-console-2", "50"), ("hello-console-3", "50")] {
        let input = find(&c, &format!("#percent-{rev}")).await;
        input.clear().await.unwrap();
        input.send_keys(pct).await.unwrap();
    }
    assert_eq!(find(&c, "#traffic-total").await.text().await.unwrap(), "total 100%");
    find(&c, "#apply-traffic").await.click().await.unwrap();
    text_with(&c, "#traffic-message", "Traffic updated", Duration::from_secs(10)).await;
    screenshot(&c, "traffic").await;
    let (_, info) = node.admin_get("/v1/functions/default/hello-console").await;
    let split: Vec<(String, u64)> = info["traffic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["revisionName"].as_str().unwrap_or("").to_string(), t["percent"].as_u64().unwrap_or(0)))
        .collect();
    assert!(
        split.contains(&("hello-console-2".into(), 50)) && split.contains(&("hello-console-3".into(), 50)),
        "{split:?}"
    );
    find(&c, "#rollback").await.click().await.unwrap();
    let said = eventually(Duration::from_secs(10), "the rollback's message", || async {
        let t = c.find(Locator::Css("#traffic-message")).await.ok()?.text().await.ok()?;
        (!t.is_empty() && t != "Traffic updated.").then_some(t)
    })
    .await;
    assert!(said.contains("Rolled back: hello-console-2"), "{said}");

    // The charts: the last hour of requests, with a point per second (series-interval in this node's config).
    c.goto(&format!("{admin}/#/fn/default/hello-console/metrics")).await.unwrap();
    find(&c, "[data-chart='requests,errors,coldStarts'] canvas").await;
    let (_, series) = node.admin_get("/v1/functions/default/hello-console/series").await;
    let served: u64 = series["points"].as_array().unwrap().iter().map(|p| p["requests"].as_u64().unwrap()).sum();
    assert!(served >= 2, "the test invocations are in the series: {series}");
    screenshot(&c, "metrics").await;

    // A cron trigger: a bad schedule is named beside its field; a good one shows its next runs and is deployed.
    c.goto(&format!("{admin}/#/fn/default/hello-console/triggers")).await.unwrap();
    find(&c, "#trigger-name").await.send_keys("nightly").await.unwrap();
    find(&c, "#trigger-schedule").await.send_keys("61 * * * *").await.unwrap();
    text_with(&c, "#trigger-schedule-error", "61", Duration::from_secs(10)).await;
    let schedule = find(&c, "#trigger-schedule").await;
    schedule.clear().await.unwrap();
    schedule.send_keys("30 2 * * *").await.unwrap();
    find(&c, "#trigger-timezone").await.send_keys("Europe/Berlin").await.unwrap();
    let next = text_with(&c, "#trigger-next", "next:", Duration::from_secs(10)).await;
    assert_eq!(next.matches("next:").count(), 5, "{next}");
    assert!(next.contains("T02:30:00+01:00") || next.contains("T02:30:00+02:00"), "{next}");
    find(&c, "#add-trigger").await.click().await.unwrap();
    text_with(&c, "#trigger-message", "Saved", Duration::from_secs(10)).await;
    // Redeployed, the tab lists it with its next runs.
    text_with(&c, "[data-next-runs='nightly']", "next:", Duration::from_secs(120)).await;
    let (_, info) = node.admin_get("/v1/functions/default/hello-console").await;
    assert_eq!(info["spec"]["triggers"][0]["cron"]["schedule"], "30 2 * * *");

    // Settings: a bad timeout is named beside its field; then env and a timeout are deployed.
    c.goto(&format!("{admin}/#/fn/default/hello-console/settings")).await.unwrap();
    let env = find(&c, "#set-env").await;
    env.send_keys("GREETING=hallo").await.unwrap();
    let timeout = find(&c, "#set-timeout").await;
    timeout.clear().await.unwrap();
    timeout.send_keys("soon").await.unwrap();
    find(&c, "#save-settings").await.click().await.unwrap();
    text_with(&c, "#set-timeout-error", "soon", Duration::from_secs(10)).await;
    let timeout = find(&c, "#set-timeout").await;
    timeout.clear().await.unwrap();
    timeout.send_keys("20s").await.unwrap();
    find(&c, "#save-settings").await.click().await.unwrap();
    text_with(&c, "#settings-message", "Saved and deployed", Duration::from_secs(120)).await;
    let (_, info) = node.admin_get("/v1/functions/default/hello-console").await;
    assert_eq!(info["spec"]["limits"]["timeout"], "20s");
    assert_eq!(info["spec"]["env"][0], json!({"name": "GREETING", "value": "hallo"}));
    // The YAML view is the same function.yaml the forms wrote.
    c.goto(&format!("{admin}/#/fn/default/hello-console/yaml")).await.unwrap();
    let yaml = text_with(&c, "#yaml .cm-content", "GREETING", Duration::from_secs(10)).await;
    assert!(yaml.contains("timeout: 20s") && yaml.contains("30 2 * * *"), "{yaml}");

    // A Python function from the template picker builds and answers.
    c.goto(&format!("{admin}/#/new")).await.unwrap();
    find(&c, "#new-name").await.send_keys("hello-py").await.unwrap();
    find(&c, "#new-template option[value='python']").await.click().await.unwrap();
    find(&c, "#create").await.click().await.unwrap();
    find(&c, "#editor .cm-content").await;
    text_with(&c, "#fn-state", "ready", Duration::from_secs(180)).await;
    c.goto(&format!("{admin}/#/fn/default/hello-py/test")).await.unwrap();
    let (status, _) = invoke(&c, r#"{"name": "Grace"}"#).await;
    assert!(status.starts_with("200 "), "{status}");

    c.goto(&format!("{admin}/")).await.unwrap();
    text_with(&c, "main", "hello-py", Duration::from_secs(10)).await;
    // The list: state, revision, requests and latency per function (of the revision serving, which the
    // redeploys above made the newest: it answers twice first).
    for _ in 0..2 {
        assert_eq!(node.get(&node.url("default", "hello-console", "/")).await.0, 200);
    }
    c.refresh().await.unwrap();
    let row = text_with(&c, "[data-function='default/hello-console']", " ms", Duration::from_secs(10)).await;
    assert!(row.contains("ready") && row.contains("hello-console-"), "{row}");
    screenshot(&c, "list").await;
    c.close().await.unwrap();
}

/// `wasmfn ARGS`; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmfn")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn guest_folder(root: &std::path::Path, name: &str, extra: &str) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = wasmfn_tests::guests::rust_guest();
    std::fs::write(
        dir.join("function.yaml"),
        format!(
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  component: {}\n{extra}",
            wasm.display()
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_lists_calls_follows_logs_and_deletes_and_browsers_cannot_forge_calls() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let root = tempfile::tempdir().unwrap();
    guest_folder(root.path(), "echo", "");
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with(
        data.path(),
        Options { up: Some(vec![root.path().display().to_string()]), ..Default::default() },
    );
    let admin = format!("http://{}", node.admin);

    let (ok, out, err) = cli(&["ls", "--admin", &admin]);
    assert!(ok && out.contains("echo") && out.contains("echo-1"), "{out}{err}");

    // `logs -f` follows while `call` runs: the call's own request id appears with the guest's line.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["logs", "echo", "-f", "--admin", &admin])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (out, lines) = (follow.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push_str(&format!("{l}\n"));
            }
        })
    };
    let (ok, out, err) = cli(&["call", "echo", "--admin", &admin, "--path", "/log?lines=2", "-X", "GET"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "logged");
    let (ok, out, err) =
        cli(&["call", "echo", "--admin", &admin, "--event-type", "dev.test.cli", "--data", r#"{"n":7}"#]);
    assert!(ok, "{out}{err}");
    let followed = eventually(Duration::from_secs(30), "the followed log lines", || {
        let lines = lines.clone();
        async move {
            let l = lines.lock().unwrap().clone();
            (l.contains("guest line 1") && l.contains("type=dev.test.cli") && l.contains("data={\"n\":7}")).then_some(l)
        }
    })
    .await;
    assert!(followed.contains("echo-1"), "lines carry the revision: {followed}");
    let _ = follow.kill();
    let _ = follow.wait();
    let _ = reader.join();
    let (ok, out, _) = cli(&["logs", "echo", "--admin", &admin]);
    assert!(ok && out.contains("guest stderr line"), "{out}");

    // A browser page on another origin cannot change anything, even with a simple form post.
    let forged = node
        .client
        .delete(format!("{admin}/v1/functions/default/echo"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let same_origin_without_header = node
        .client
        .delete(format!("{admin}/v1/functions/default/echo"))
        .header("origin", &admin)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin_without_header.status().as_u16(), 403, "the console's header is required too");
    let page = node.client.get(format!("{admin}/")).send().await.unwrap();
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
    assert!(page.text().await.unwrap().contains("/console/app.js"), "no CDN: the page's code is served here");

    let (ok, out, err) = cli(&["delete", "echo", "--admin", &admin]);
    assert!(ok && out.contains("deleted default/echo"), "{out}{err}");
    let (_, out, _) = cli(&["ls", "--admin", &admin]);
    assert!(!out.contains("echo-1"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_answers_at_once_and_holds_requests_for_a_function_still_building() {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let root = tempfile::tempdir().unwrap();
    // Sources deploy in path order: `a-ready` (a component) first, then `b-slow`, a Python build with a unique
    // source (no cache hit: componentize-py takes seconds).
    guest_folder(root.path(), "a-ready", "");
    let slow = root.path().join("b-slow");
    std::fs::create_dir_all(&slow).unwrap();
    std::fs::write(
        slow.join("function.yaml"),
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata:\n  name: b-slow\nspec:\n  build:\n    template: python\n  scaling:\n    queueTimeout: 300s\n",
    )
    .unwrap();
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::fs::write(
        slow.join("handler.py"),
        format!("# {nonce}\ndef handler(event, context):\n    return 'slow and ready'\n"),
    )
    .unwrap();
    let cache = wasmfn_tests::build::cache_dir().display().to_string();
    let args = vec![root.path().display().to_string(), "--cache-dir".into(), cache];
    let data = tempfile::tempdir().unwrap();
    let node = NodeProc::start_with(data.path(), Options { up: Some(args), serve_at_once: true, ..Default::default() });

    // Listening before anything is built: the ready function answers while the slow one still builds.
    let (status, _, _) = node.get(&node.url("default", "a-ready", "/log")).await;
    assert_eq!(status, 200);
    let (_, state) = node.admin_get("/v1/console").await;
    assert_eq!(state["functions"]["default/b-slow"]["state"], "building", "{state}");
    // A request to the building function waits and is answered once it is deployed.
    let (status, _, body) = node.get(&node.url("default", "b-slow", "/")).await;
    assert_eq!((status, body.as_str()), (200, "slow and ready"));
    assert!(node.logs().contains("function=default/b-slow"), "it was built behind the listener");
}

/// The committed bundle (`console/dist`, embedded in the binary so that `cargo build` needs no npm) is what its
/// locked npm packages build: like `deploy/crd.yaml`, a stale one fails here.
#[test]
fn the_committed_console_bundle_is_fresh() {
    let console = wasmfn_tests::guests::repo_root().join("console");
    assert!(console.join("node_modules/codemirror").is_dir(), "console/node_modules is missing: run scripts/setup.sh");
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("node").arg(console.join("build.mjs")).arg(out.path()).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for file in ["vendor.js", "uPlot.min.css"] {
        let built = std::fs::read(out.path().join(file)).unwrap();
        let committed = std::fs::read(console.join("dist").join(file)).unwrap();
        assert!(
            built == committed,
            "console/dist/{file} is stale: run `npm ci --prefix console && node console/build.mjs`"
        );
    }
}

/// `wasmfn console` against the scripted Kubernetes API server (no real one runs here): the list across
/// namespaces, creating an inline Function (the resource applied), and RBAC's 403 passed to the page.
#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_console_lists_creates_and_shows_what_rbac_refuses() {
    use wasmfn_tests::kube::{FakeApi, function};
    let api = FakeApi::start().await;
    let mut ready = function("hello", 1, Some("registry.test/fns/hello@sha256:11"), &[]);
    ready["status"]["url"] = json!("http://hello.default.wasmfn.local/");
    ready["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "Serving"}]);
    api.apply(ready);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["console", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    let url =
        first.trim().strip_prefix("wasmfn console: ").expect("the console's URL").trim_end_matches('/').to_string();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let list: Value = client.get(format!("{url}/v1/functions")).send().await.unwrap().json().await.unwrap();
    let hello = &list["functions"][0];
    assert_eq!((hello["name"].as_str(), hello["state"].as_str()), (Some("hello"), Some("ready")), "{list}");
    assert_eq!(hello["urls"][0], "http://hello.default.wasmfn.local/");
    assert!(client.get(format!("{url}/")).send().await.unwrap().text().await.unwrap().contains("/console/app.js"));

    let created = client
        .post(format!("{url}/v1/console/functions"))
        .header("x-wasmfn-console", "1")
        .json(&json!({"name": "greeter", "namespace": "default", "template": "python"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201, "{}", created.text().await.unwrap());
    let applied = api.patches().into_iter().find(|(_, name, _, _)| name == "greeter").expect("the Function applied");
    assert!(applied.2.contains("fieldManager=wasmfn-console"), "{}", applied.2);
    assert_eq!(applied.3["spec"]["build"]["template"], "python");
    assert!(applied.3["spec"]["source"]["inline"]["code"].as_str().unwrap().contains("def handler"), "{:?}", applied.3);
    let source: Value = client
        .get(format!("{url}/v1/console/functions/default/greeter/source"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(source["files"][0]["name"], "handler.py");

    // A test invocation goes through a node pod, by the API server's pod proxy to its ingress.
    let log = "INFO wasmfn::guest: function=default/hello request_id=r1 stream=stdout hello from the guest\nINFO other: function=default/other x\n";
    api.add_pod("wasmfn-system", "wasmfn-node-a", json!({"app.kubernetes.io/name": "wasmfn-node"}), log);
    let logs: Value = client
        .get(format!("{url}/v1/logs?namespace=default&function=hello"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lines = logs["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "only this function's lines: {logs}");
    assert!(lines[0]["line"].as_str().unwrap().contains("hello from the guest"), "{logs}");
    let called: Value = client
        .post(format!("{url}/v1/functions/default/hello/invoke"))
        .header("x-wasmfn-console", "1")
        .json(&json!({"method": "POST", "path": "/greet", "headers": [], "body": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(called["status"], 200, "{called}");
    assert_eq!(called["body"], "POST via wasmfn-node-a /default/hello/greet hi");
    assert_eq!((called["revision"].as_str(), called["node"].as_str()), (Some("hello-1"), Some("wasmfn-node-a")));

    // Charts and counters come from every node's admin API (by the pod proxy, with the admin token), summed.
    api.add_pod("wasmfn-system", "wasmfn-node-b", json!({"app.kubernetes.io/name": "wasmfn-node"}), "");
    api.proxy_answer("/series", 401, json!({"error": "a bearer token is required"}));
    let locked = client.get(format!("{url}/v1/functions/default/hello/series")).send().await.unwrap();
    assert_eq!(locked.status().as_u16(), 401, "the page asks for the token");
    api.clear_proxy_answers();
    let point = json!({"time": 1_000_020, "requests": 3, "errors": 1, "coldStarts": 0, "p50Ms": 1.0, "p99Ms": 5.0, "inFlight": 1});
    api.proxy_answer("/series", 200, json!({"interval": 30.0, "points": [point]}));
    let rev = json!({"name": "hello-1", "requests": 2, "errors": 0, "p50Ms": 1.0, "p99Ms": 3.0, "percent": 100});
    api.proxy_answer("/revisions", 200, json!({"revisions": [rev]}));
    let series: Value = client
        .get(format!("{url}/v1/functions/default/hello/series"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p = &series["points"][0];
    assert_eq!(
        (&p["requests"], &p["errors"], &p["inFlight"], &p["p99Ms"]),
        (&json!(6), &json!(2), &json!(2), &json!(5.0)),
        "{series}"
    );
    assert_eq!(series["nodes"], 2);
    assert!(
        api.patches().iter().any(|(_, pod, q, _)| pod == "wasmfn-node-b" && q.contains("/series token=s3cret")),
        "the token reaches the nodes as x-wasmfn-admin-token"
    );
    let revs: Value =
        client.get(format!("{url}/v1/functions/default/hello/revisions")).send().await.unwrap().json().await.unwrap();
    assert_eq!(revs["revisions"][0]["requests"], 4, "{revs}");

    // RBAC says no: the page gets the API server's 403 and its message.
    api.forbid_writes(true);
    let refused = client
        .put(format!("{url}/v1/console/functions/default/greeter/source"))
        .header("x-wasmfn-console", "1")
        .json(&json!({"files": [{"name": "handler.py", "text": "def handler(e, c):\n    return 2\n"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("cannot patch resource \"functions\""), "{body}");
    // The page shows it where the user acted.
    let (c, _driver) = browser().await;
    c.goto(&format!("{url}/#/new")).await.unwrap();
    find(&c, "#new-name").await.send_keys("denied").await.unwrap();
    find(&c, "#create").await.click().await.unwrap();
    let shown = text_with(&c, "#new-name-error", "forbidden", Duration::from_secs(10)).await;
    assert!(shown.contains("User \"ada\" cannot patch"), "{shown}");
    c.goto(&format!("{url}/")).await.unwrap();
    text_with(&c, "main", "hello", Duration::from_secs(10)).await;
    assert_eq!(find(&c, "#mode").await.text().await.unwrap(), "cluster");
    c.close().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
}
