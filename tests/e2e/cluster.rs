//! Cluster mode (`wasmfn serve --kubernetes`) against a scripted API server's watch streams (these machines have
//! no Kubernetes API server), with real components in a real registry: add, modify, delete, bookmark, a
//! disconnect followed by a relist, status reports per node, and a restart while the API server is down.

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use wasmfn_tests::build::{Run, wasmfn_env};
use wasmfn_tests::eventually;
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::kube::{FakeApi, function};
use wasmfn_tests::node::{NodeProc, Options, manifest, use_binary};
use wasmfn_tests::registry::RegistryProc;

const WAIT: Duration = Duration::from_secs(30);

/// Pushes `file` to `reference` and returns it pinned to the manifest digest.
fn push_pinned(file: &Path, reference: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["push", file.to_str().unwrap(), reference, "--insecure"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "push failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let digest = stdout.split_whitespace().find(|w| w.starts_with("sha256:")).unwrap();
    format!("{}@{digest}", reference.rsplit_once(':').unwrap().0)
}

fn cluster_node(data: &Path, kubeconfig: &Path, reg: &RegistryProc) -> NodeProc {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    NodeProc::start_with(
        data,
        Options {
            config: format!("[registry]\ninsecure = [\"{}\"]\n", reg.addr),
            env: vec![("KUBECONFIG".into(), kubeconfig.display().to_string())],
            args: vec!["--kubernetes".into(), "--node-name".into(), "node-a".into()],
            ..Default::default()
        },
    )
}

/// The body at `/default/<name>/env?name=GREETING`, or the status code when it is not 200.
async fn greeting(node: &NodeProc, name: &str) -> Result<String, u16> {
    let (status, _, body) = node.get(&node.url("default", name, "/env?name=GREETING")).await;
    if status == 200 { Ok(body) } else { Err(status) }
}

async fn wait_greeting(node: &NodeProc, name: &str, expected: Result<&str, u16>) {
    let what = format!("{name} to answer {expected:?}");
    eventually(WAIT, &what, || async {
        (greeting(node, name).await.as_deref().map_err(|e| *e) == expected).then_some(())
    })
    .await;
}

/// This node's latest report for `name`.
fn report(api: &FakeApi, name: &str) -> Option<Value> {
    let patches = api.patches();
    let (_, _, query, body) = patches.iter().rev().find(|(_, n, _, _)| n == name)?;
    assert!(query.contains("fieldManager=wasmfn-node-node-a") && query.contains("force=true"), "{query}");
    Some(body["status"]["nodes"][0].clone())
}

async fn wait_report(api: &FakeApi, name: &str, check: impl Fn(&Value) -> bool) -> Value {
    let what = format!("a status report for {name}");
    eventually(WAIT, &what, || async { report(api, name).filter(|r| check(r)) }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_node_follows_the_watch_stream_and_reports_per_node_status() {
    let reg = RegistryProc::start(None);
    let image = push_pinned(&rust_guest(), &format!("{}/fns/guest:v1", reg.addr));
    let api = FakeApi::start().await;
    api.apply(function("hello", 1, Some(&image), &[("GREETING", "one")]));
    api.apply(function("pending", 1, None, &[("GREETING", "built")]));
    let dir = tempfile::tempdir().unwrap();
    let node = cluster_node(&dir.path().join("data"), &api.kubeconfig(dir.path()), &reg);

    // The initial list: served once it has an image, and reported under the node's own field manager.
    wait_greeting(&node, "hello", Ok("one")).await;
    let r = wait_report(&api, "hello", |r| r["ready"] == true).await;
    assert_eq!((r["node"].as_str(), r["image"].as_str()), (Some("node-a"), Some(image.as_str())));
    assert_eq!((r["revision"].as_str(), r["observedGeneration"].as_i64()), (Some("hello-1"), Some(1)));
    assert_eq!(greeting(&node, "pending").await, Err(404), "no image recorded yet");
    assert!(report(&api, "pending").is_none());

    // ADDED, and MODIFIED when the operator records the build.
    api.apply(function("second", 1, Some(&image), &[("GREETING", "two")]));
    wait_greeting(&node, "second", Ok("two")).await;
    api.apply(function("pending", 1, Some(&image), &[("GREETING", "built")]));
    wait_greeting(&node, "pending", Ok("built")).await;

    // A new generation becomes a new revision.
    api.apply(function("hello", 2, Some(&image), &[("GREETING", "uno")]));
    wait_greeting(&node, "hello", Ok("uno")).await;
    wait_report(&api, "hello", |r| r["revision"] == "hello-2" && r["observedGeneration"] == 2).await;

    // A BOOKMARK changes nothing, and events after it still arrive.
    api.bookmark();
    api.apply(function("second", 2, Some(&image), &[("GREETING", "deux")]));
    wait_greeting(&node, "second", Ok("deux")).await;

    // DELETED.
    api.delete("second");
    wait_greeting(&node, "second", Err(404)).await;

    // An image that is not in the registry: reported not ready with the reason; the old revision serves.
    let missing = format!("{}/fns/guest@sha256:{}", reg.addr, "0".repeat(64));
    api.apply(function("hello", 3, Some(&missing), &[("GREETING", "uno")]));
    let r = wait_report(&api, "hello", |r| r["ready"] == false).await;
    assert!(r["message"].as_str().unwrap().contains("guest"), "{r}");
    assert_eq!(r["revision"], "hello-2");
    assert_eq!(greeting(&node, "hello").await, Ok("uno".into()));
    api.apply(function("hello", 4, Some(&image), &[("GREETING", "uno")]));
    wait_report(&api, "hello", |r| r["ready"] == true && r["observedGeneration"] == 4).await;

    // A function deployed through the admin API is not the cluster's: a cluster Function of the same name does
    // not replace it (the node says why), deleting that Function does not remove it, and a relist leaves it.
    node.deploy_ok(&manifest("local", &rust_guest(), "  env: [{name: GREETING, value: local}]\n")).await;
    api.apply(function("local", 1, Some(&image), &[("GREETING", "cluster")]));
    let r = wait_report(&api, "local", |r| r["ready"] == false).await;
    assert!(r["message"].as_str().unwrap().contains("admin API"), "{r}");
    api.delete("local");
    assert_eq!(greeting(&node, "local").await, Ok("local".into()));

    // An object the types reject (written for a newer CRD) is skipped; the watch goes on.
    let mut broken = function("broken", 1, Some(&image), &[]);
    broken["spec"]["scaling"]["maxQueue"] = serde_json::json!("lots");
    api.apply(broken);
    api.apply(function("fourth", 1, Some(&image), &[("GREETING", "four")]));
    wait_greeting(&node, "fourth", Ok("four")).await;
    node.wait_for_log("a Function that does not parse", WAIT).await;

    // Disconnected: changes made meanwhile are missed, the watch has expired (410), so the node lists again
    // and catches up, removing what was deleted.
    let (lists, _) = api.requests();
    api.disconnect(true);
    api.delete_quietly("pending");
    api.apply_quietly(function("third", 1, Some(&image), &[("GREETING", "three")]));
    wait_greeting(&node, "third", Ok("three")).await;
    wait_greeting(&node, "pending", Err(404)).await;
    assert!(api.requests().0 > lists, "a relist happened");
    assert_eq!(greeting(&node, "hello").await, Ok("uno".into()));
    assert_eq!(greeting(&node, "local").await, Ok("local".into()));
    node.wait_for_log("in sync with the cluster's Functions", WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_restarted_while_the_api_server_is_down_serves_its_table() {
    let reg = RegistryProc::start(None);
    let image = push_pinned(&rust_guest(), &format!("{}/fns/guest:v1", reg.addr));
    let mut api = FakeApi::start().await;
    api.apply(function("hello", 1, Some(&image), &[("GREETING", "persisted")]));
    let dir = tempfile::tempdir().unwrap();
    let (data, kubeconfig) = (dir.path().join("data"), api.kubeconfig(dir.path()));
    let mut node = cluster_node(&data, &kubeconfig, &reg);
    wait_greeting(&node, "hello", Ok("persisted")).await;
    node.stop();

    // The API server goes down (and the function is deleted meanwhile); the node restarts and serves what it
    // had, while its watch retries.
    let mut objects = api.stop().await;
    objects.retain(|o| o["metadata"]["name"] != "hello");
    objects.push(function("after", 1, Some(&image), &[("GREETING", "after")]));
    let node = cluster_node(&data, &kubeconfig, &reg);
    assert_eq!(greeting(&node, "hello").await, Ok("persisted".into()));
    node.wait_for_log("watching Functions failed", WAIT).await;
    assert_eq!(greeting(&node, "hello").await, Ok("persisted".into()));

    // The API server is back: the watch resumes with a list, and the table follows it.
    let api = FakeApi::start_on(api.addr, objects).await;
    wait_greeting(&node, "after", Ok("after")).await;
    wait_greeting(&node, "hello", Err(404)).await;
    wait_report(&api, "after", |r| r["ready"] == true).await;
}

/// Runs `wasmfn ARGS` against the fake API server's kubeconfig, off the runtime threads that serve it.
async fn wasmfn_kube(kubeconfig: &Path, args: &[&str]) -> Run {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    let kubeconfig = kubeconfig.display().to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Run::from(wasmfn_env(&args, &[("KUBECONFIG", &kubeconfig)]))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_pushes_applies_and_waits_then_get_and_logs_read_the_cluster() {
    let reg = RegistryProc::start(None);
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let folder = dir.path().join("hello");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(rust_guest(), folder.join("hello.wasm")).unwrap();
    std::fs::write(
        folder.join("function.yaml"),
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: {name: hello}\nspec:\n  component: hello.wasm\n  env: [{name: GREETING, value: hi}]\n",
    )
    .unwrap();
    let folder_arg = folder.to_str().unwrap();

    // Built here without a registry to push to: a clear error, nothing applied.
    let run = wasmfn_kube(&kubeconfig, &["deploy", folder_arg]).await;
    assert!(!run.ok && run.stderr.contains("--registry"), "{}", run.stderr);
    assert!(api.get("hello").is_none());

    // Pushed, then applied with the pinned image; --wait returns once a node reports it Ready.
    let registry = format!("{}/fns", reg.addr);
    let deploy = {
        let kubeconfig = kubeconfig.clone();
        let args = ["deploy", folder_arg, "--registry", &registry, "--insecure", "--wait", "30s"].map(String::from);
        tokio::spawn(async move { wasmfn_kube(&kubeconfig, &args.each_ref().map(String::as_str)).await })
    };
    let applied = eventually(WAIT, "the function applied", || async { api.get("hello") }).await;
    let image = applied["spec"]["image"].as_str().unwrap().to_string();
    assert!(image.starts_with(&format!("{registry}/default/hello@sha256:")), "{image}");
    assert!(applied["spec"].get("component").is_none() && applied["spec"].get("build").is_none(), "{applied}");
    assert_eq!(applied["spec"]["env"][0]["value"], "hi");
    let (_, _, query, _) = api.patches().into_iter().find(|(_, n, _, _)| n == "hello").unwrap();
    assert!(query.contains("fieldManager=wasmfn-cli"), "{query}");
    assert!(!deploy.is_finished(), "--wait waits for Ready");
    let ready = serde_json::json!({
        "url": "http://hello.default.fn.test/", "latestRevision": "hello-1", "readyNodes": "1/1",
        "observedGeneration": 1, "image": image,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "message": "1 node(s) serve it"}],
    });
    api.set_status("hello", ready);
    let run = deploy.await.unwrap();
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("ready: http://hello.default.fn.test/"), "{}", run.stdout);

    // A failed condition ends the wait with its reason.
    std::fs::write(
        folder.join("function.yaml"),
        "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\nmetadata: {name: hello}\nspec:\n  image: r.test/x:1\n",
    )
    .unwrap();
    let failing = {
        let kubeconfig = kubeconfig.clone();
        let args = ["deploy", folder_arg, "--wait", "30s"].map(String::from);
        tokio::spawn(async move { wasmfn_kube(&kubeconfig, &args.each_ref().map(String::as_str)).await })
    };
    eventually(WAIT, "generation 2", || async { api.get("hello").filter(|f| f["metadata"]["generation"] == 2) }).await;
    api.set_status(
        "hello",
        serde_json::json!({"observedGeneration": 2, "conditions": [
            {"type": "Ready", "status": "False", "reason": "ImageUnavailable", "message": "r.test/x:1: not found"}]}),
    );
    let run = failing.await.unwrap();
    assert!(!run.ok && run.stderr.contains("ImageUnavailable: r.test/x:1: not found"), "{}", run.stderr);

    // get: the table and the objects.
    let run = wasmfn_kube(&kubeconfig, &["get"]).await;
    assert!(run.ok, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("READY") && lines[0].contains("URL"), "{}", run.stdout);
    assert!(lines[1].starts_with("hello") && lines[1].contains("False") && lines[1].contains("ImageUnavailable"));
    let run = wasmfn_kube(&kubeconfig, &["get", "hello", "-o", "json"]).await;
    let objects: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(objects[0]["metadata"]["generation"], 2);
    let run = wasmfn_kube(&kubeconfig, &["get", "nope"]).await;
    assert!(!run.ok && run.stderr.contains("default/nope"), "{}", run.stderr);

    // logs: the build's log, then the nodes' lines about this function only.
    let mut status = api.get("hello").unwrap()["status"].clone();
    status["build"] = serde_json::json!({"sourceHash": "h", "job": "hello-build-1"});
    api.set_status("hello", status);
    api.add_pod(
        "default",
        "hello-build-1-x",
        serde_json::json!({"job-name": "hello-build-1"}),
        "Compiling hello\nbuilt\n",
    );
    let node_log = "INFO function=default/hello request_id=1 stdout: hi there\nINFO function=default/other: not mine\n";
    api.add_pod(
        "wasmfn-system",
        "wasmfn-node-a",
        serde_json::json!({"app.kubernetes.io/name": "wasmfn-node"}),
        node_log,
    );
    let run = wasmfn_kube(&kubeconfig, &["logs", "hello", "--cluster"]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("[build hello-build-1] Compiling hello"), "{}", run.stdout);
    assert!(run.stdout.contains("[wasmfn-node-a] INFO function=default/hello request_id=1 stdout: hi there"));
    assert!(!run.stdout.contains("not mine"), "{}", run.stdout);
}
