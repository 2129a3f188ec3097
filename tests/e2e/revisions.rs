//! Revisions, traffic splits, tags, gradual rollouts and rollbacks, on a real node process with the Rust test
//! guest (its `VERSION` env var tells revisions apart; `STATUS` makes one fail).

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wasmfn_tests::eventually;
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::load::{Load, Sample};
use wasmfn_tests::node::{NodeProc, binary, manifest, use_binary};

fn dir() -> tempfile::TempDir {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    tempfile::tempdir().unwrap()
}

/// A manifest of `name` whose guest answers "hello from rust `version`", with more env vars and spec lines.
fn version_env(name: &str, version: &str, env: &[(&str, &str)], extra: &str) -> String {
    let mut spec = format!("  env:\n    - name: VERSION\n      value: {version}\n");
    for (k, v) in env {
        spec += &format!("    - name: {k}\n      value: \"{v}\"\n");
    }
    manifest(name, &rust_guest(), &(spec + extra))
}

fn version(name: &str, version: &str, extra: &str) -> String {
    version_env(name, version, &[], extra)
}

/// Runs the `wasmfn` CLI against the node's admin API: (success, stdout, stderr).
fn cli(node: &NodeProc, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env("WASMFN_ADMIN", format!("http://{}", node.admin))
        .output()
        .expect("run wasmfn");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

async fn function(node: &NodeProc, name: &str) -> Value {
    let (status, body) = node.admin_get(&format!("/v1/functions/default/{name}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn revisions(node: &NodeProc, name: &str) -> Vec<Value> {
    let (status, body) = node.admin_get(&format!("/v1/functions/default/{name}/revisions")).await;
    assert_eq!(status, 200, "{body}");
    body["revisions"].as_array().unwrap().clone()
}

async fn put_traffic(node: &NodeProc, name: &str, traffic: Value) -> (u16, Value) {
    let resp = node
        .client
        .put(node.admin_url(&format!("/v1/functions/default/{name}/traffic")))
        .json(&json!({ "traffic": traffic }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// Sends `n` requests, `concurrency` at a time; counts answers by (status, revision).
async fn count(
    node: &Arc<NodeProc>,
    url: &str,
    host: Option<&str>,
    n: usize,
    concurrency: usize,
) -> BTreeMap<(u16, String), usize> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (node, next, url, host) = (node.clone(), next.clone(), url.to_string(), host.map(str::to_string));
        workers.push(tokio::spawn(async move {
            let mut seen = BTreeMap::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let mut req = node.client.get(&url);
                if let Some(h) = &host {
                    req = req.header("host", h);
                }
                let r = req.send().await.expect("request failed");
                let rev = r.headers()["x-wasmfn-revision"].to_str().unwrap().to_string();
                *seen.entry((r.status().as_u16(), rev)).or_insert(0) += 1;
            }
            seen
        }));
    }
    let mut all = BTreeMap::new();
    for w in workers {
        for (k, v) in w.await.unwrap() {
            *all.entry(k).or_insert(0) += v;
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn a_90_10_split_lands_within_bounds_and_revisions_count_what_they_served() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    node.deploy_ok(&version("split", "v1", "")).await;
    let body = node.deploy_ok(&version("split", "v2", "")).await;
    assert_eq!(body["function"]["revision"], "split-2");

    let (ok, out, err) = cli(&node, &["traffic", "split", "split-1=90", "split-2=10"]);
    assert!(ok, "{err}");
    assert!(out.contains("90%  split-1") && out.contains("10%  split-2"), "{out}");

    let counts = count(&node, &node.url("default", "split", "/"), None, 2000, 16).await;
    let v1 = counts.get(&(200, "split-1".into())).copied().unwrap_or(0);
    let v2 = counts.get(&(200, "split-2".into())).copied().unwrap_or(0);
    assert_eq!(v1 + v2, 2000, "{counts:?}");
    // 10% of 2000 is 200 with a standard deviation of 13.4; ±60 is ±4.5σ.
    assert!((140..=260).contains(&v2), "split-2 got {v2} of 2000: {counts:?}");

    let revs = revisions(&node, "split").await;
    let by_name: BTreeMap<&str, &Value> = revs.iter().map(|r| (r["name"].as_str().unwrap(), r)).collect();
    assert_eq!(by_name["split-1"]["requests"], v1);
    assert_eq!(by_name["split-2"]["requests"], v2);
    assert_eq!((by_name["split-1"]["percent"].as_u64(), by_name["split-2"]["percent"].as_u64()), (Some(90), Some(10)));
    for r in &revs {
        assert_eq!(r["errors"], 0);
        let (p50, p99) = (r["p50Ms"].as_f64().unwrap(), r["p99Ms"].as_f64().unwrap());
        assert!(p50 > 0.0 && p50 <= p99, "{r}");
        assert!(r["digest"].as_str().unwrap().starts_with("sha256:"));
    }
    let (ok, out, err) = cli(&node, &["revisions", "split"]);
    assert!(ok, "{err}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    let row: Vec<&str> =
        out.lines().find(|l| l.starts_with("split-2 ")).unwrap_or_else(|| panic!("{out}")).split_whitespace().collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(
        (col("TRAFFIC"), col("TAGS"), col("REQUESTS"), col("ERRORS")),
        ("10%", "-", v2.to_string().as_str(), "0"),
        "{out}"
    );
    assert!(row.last() == Some(&"latest,ready"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tagged_route_hits_only_its_revision() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), "domain = \"fn.test\"\n"));
    node.deploy_ok(&version("tags", "v1", "")).await;
    node.deploy_ok(&version("tags", "v2", "")).await;
    let (status, info) = put_traffic(
        &node,
        "tags",
        json!([
            {"revisionName": "tags-1", "percent": 100, "tag": "stable"},
            {"latestRevision": true, "percent": 0, "tag": "canary"},
        ]),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    let canary = info["traffic"].as_array().unwrap().iter().find(|t| t["tag"] == "canary").unwrap().clone();
    assert_eq!(canary["revisionName"], "tags-2");
    assert!(canary["url"].as_str().unwrap().starts_with("http://canary-tags.default.fn.test:"), "{canary}");

    let base = format!("http://{}/", node.ingress);
    let cases = [
        (base.clone(), Some("canary-tags.default.fn.test"), "tags-2"),
        (node.url("default", "canary-tags", "/"), None, "tags-2"),
        (base.clone(), Some("stable-tags.default.fn.test"), "tags-1"),
        (node.url("default", "tags", "/"), None, "tags-1"),
        (base, Some("tags.default.fn.test"), "tags-1"),
    ];
    for (url, host, want) in cases {
        let counts = count(&node, &url, host, 200, 4).await;
        assert_eq!(counts, BTreeMap::from([((200, want.to_string()), 200)]), "{url} {host:?}");
    }
    let (status, _, body) = node.get(&node.url("default", "nosuch-tags", "/")).await;
    assert_eq!(status, 404, "{body}");

    // `--tag` alone adds a tag to the current split.
    let (ok, out, err) = cli(&node, &["traffic", "tags", "--tag", "tags-2=preview"]);
    assert!(ok, "{err}");
    assert!(out.contains("tag preview: http://preview-tags.default.fn.test:"), "{out}");
    let counts = count(&node, &format!("http://{}/", node.ingress), Some("preview-tags.default.fn.test"), 20, 2).await;
    assert_eq!(counts, BTreeMap::from([((200, "tags-2".to_string()), 20)]));
    let counts = count(&node, &node.url("default", "stable-tags", "/"), None, 20, 2).await;
    assert_eq!(counts, BTreeMap::from([((200, "tags-1".to_string()), 20)]), "the other tags stay");

    // A function may not take a tagged name, and a tag may not take a function's name.
    let (status, body) = node.deploy(&version("canary-tags", "v1", "")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("tagged name of tags's tag `canary`"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_under_load_with_a_gradual_rollout_loses_no_request() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    let rollout = "  rollout: {steps: 3, duration: 6s, maxErrorRate: 0.5, minRequests: 20}\n";
    node.deploy_ok(&version("roll", "v1", rollout)).await;

    let load = Load::start(&node, &node.url("default", "roll", "/"), 8);
    node.wait_for_requests("roll", 200.0).await;
    let deployed = node.deploy_ok(&version("roll", "v2", rollout)).await;
    assert_eq!(deployed["function"]["rollout"]["state"], "Progressing", "{deployed}");
    assert_eq!(deployed["function"]["latestReadyRevision"], "roll-1");
    let shares = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let done = eventually(Duration::from_secs(60), "the rollout to succeed", || {
        let (node, shares) = (node.clone(), shares.clone());
        async move {
            let f = function(&node, "roll").await;
            shares.lock().unwrap().insert(f["rollout"]["percent"].as_u64().unwrap());
            let state = f["rollout"]["state"].as_str().unwrap().to_string();
            assert!(state == "Progressing" || state == "Succeeded", "the rollout ended {state}: {f}");
            (state == "Succeeded").then_some(f)
        }
    })
    .await;
    let shares = shares.lock().unwrap().clone();
    let succeeded = Instant::now();
    assert_eq!(done["latestReadyRevision"], "roll-2", "{done}");
    assert_eq!(done["traffic"], json!([{"revisionName": "roll-2", "percent": 100, "latestRevision": true}]));
    // The share grew in steps of a third (polling may miss one, not all).
    assert!(shares.len() >= 2 && shares.iter().all(|p| [33, 66, 100].contains(p)), "shares seen: {shares:?}");
    node.wait_for_requests("roll", 200.0).await;
    let all = load.stop().await;
    let failed: Vec<&Sample> = all.iter().filter(|s| s.status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        all.len(),
        &failed[..failed.len().min(5)]
    );
    for Sample { revision, body, .. } in &all {
        let rev = revision.as_deref().unwrap_or("");
        let v = if rev == "roll-1" { "v1" } else { "v2" };
        assert_eq!(body, &format!("hello from rust {v}\n"), "{rev} answered with another revision's body");
    }
    let on = |s: &Sample, rev: &str| s.revision.as_deref() == Some(rev);
    let v2_before = all.iter().filter(|s| s.started < succeeded && on(s, "roll-2")).count();
    let v1_after = all.iter().filter(|s| s.started > succeeded && on(s, "roll-1")).count();
    assert!(v2_before > 0, "the new revision got no traffic during the rollout");
    assert_eq!(v1_after, 0, "the old revision answered after the rollout succeeded");
    assert!(node.logs().contains("rollout step"), "{}", node.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revision_answering_500_is_rolled_back_automatically() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    let rollout = "  rollout: {steps: 2, duration: 10m, maxErrorRate: 0.1, minRequests: 10}\n";
    node.deploy_ok(&version("rb", "v1", rollout)).await;
    let deployed = node.deploy_ok(&version_env("rb", "v2", &[("STATUS", "500")], rollout)).await;
    assert_eq!(deployed["function"]["rollout"]["percent"], 50, "{deployed}");

    let rolled = eventually(Duration::from_secs(60), "an automatic rollback", || {
        let node = node.clone();
        async move {
            count(&node, &node.url("default", "rb", "/"), None, 10, 2).await;
            let f = function(&node, "rb").await;
            (f["rollout"]["state"] == "RolledBack").then_some(f)
        }
    })
    .await;
    let reason = rolled["rollout"]["reason"].as_str().unwrap();
    assert!(reason.contains("rb-2") && reason.contains("5xx") && reason.contains("maxErrorRate of 10.0%"), "{reason}");
    assert_eq!(rolled["latestReadyRevision"], "rb-1");
    assert_eq!(rolled["revision"], "rb-2");
    let logs = node.wait_for_log("rollout rolled back automatically", Duration::from_secs(5)).await;
    assert!(logs.contains(reason), "the log line carries the reason: {logs}");

    let counts = count(&node, &node.url("default", "rb", "/"), None, 200, 4).await;
    assert_eq!(counts, BTreeMap::from([((200, "rb-1".to_string()), 200)]));
    let revs = revisions(&node, "rb").await;
    assert_eq!(revs[0]["name"], "rb-2");
    assert_eq!(revs[0]["percent"], 0);
    assert_eq!(revs[0]["failure"].as_str(), Some(reason));
    let errors = revs[0]["errors"].as_u64().unwrap();
    assert!(errors >= 10 && errors == revs[0]["requests"].as_u64().unwrap(), "{}", revs[0]);
    assert_eq!(node.metric("wasmfn_rollouts_total", &["function=\"rb\"", "outcome=\"rolled-back\""]).await, 1.0);

    // A fixed revision without a rollout takes over at once; a manual rollback skips the failed revision.
    node.deploy_ok(&version("rb", "v3", "")).await;
    let counts = count(&node, &node.url("default", "rb", "/"), None, 20, 2).await;
    assert_eq!(counts, BTreeMap::from([((200, "rb-3".to_string()), 20)]));
    let (ok, out, err) = cli(&node, &["rollback", "rb"]);
    assert!(ok, "{err}");
    assert!(out.contains("rb-1 now serves the latest traffic"), "{out}");
    let counts = count(&node, &node.url("default", "rb", "/"), None, 20, 2).await;
    assert_eq!(counts, BTreeMap::from([((200, "rb-1".to_string()), 20)]));
    let (ok, _, err) = cli(&node, &["rollback", "rb"]);
    assert!(!ok && err.contains("no earlier revision to roll back to"), "{err}");
    let (ok, _, err) = cli(&node, &["rollback", "rb", "--to", "rb-3"]);
    assert!(ok, "{err}");
    assert_eq!(function(&node, "rb").await["latestReadyRevision"], "rb-3");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_traffic_is_rejected_with_a_message_and_changes_nothing() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    node.deploy_ok(&version("inv", "v1", "")).await;
    node.deploy_ok(&version("inv", "v2", "")).await;
    let before = function(&node, "inv").await;

    let cases = [
        ("    - {revisionName: inv-1, percent: 80}\n    - {latestRevision: true, percent: 10}\n", "add up to 90"),
        ("    - {revisionName: inv-9, percent: 100}\n", "revision `inv-9` does not exist; inv has inv-1, inv-2"),
        (
            "    - {revisionName: inv-1, percent: 50, tag: x}\n    - {latestRevision: true, percent: 50, tag: x}\n",
            "tag `x` is used twice",
        ),
    ];
    for (traffic, message) in cases {
        // With a new configuration (a revision to create) and with the current one (a routing change).
        for v in ["v3", "v2"] {
            let (status, body) = node.deploy(&version("inv", v, &format!("  traffic:\n{traffic}"))).await;
            assert_eq!(status, 422, "{body}");
            let e = body["error"].as_str().unwrap();
            assert!(e.contains("spec.traffic") && e.contains(message), "{e}");
            assert!(!e.contains("inv-3"), "a rejected deploy's revision is not offered: {e}");
        }
    }
    let (status, body) = put_traffic(&node, "inv", json!([{"revisionName": "inv-1", "percent": 99}])).await;
    assert!(status == 422 && body["error"].as_str().unwrap().contains("add up to 99"), "{body}");
    let (ok, _, err) = cli(&node, &["traffic", "inv", "inv-1=50", "inv-7=50"]);
    assert!(!ok && err.contains("revision `inv-7` does not exist"), "{err}");
    let (ok, _, err) =
        cli(&node, &["traffic", "inv", "inv-1=50", "@latest=50", "--tag", "inv-1=a", "--tag", "@latest=a"]);
    assert!(!ok && err.contains("tag `a` is used twice"), "{err}");
    let (ok, _, err) = cli(&node, &["traffic", "nosuch", "@latest=100"]);
    assert!(!ok && err.contains("function default/nosuch not found"), "{err}");

    let after = function(&node, "inv").await;
    assert_eq!((&after["traffic"], &after["revision"]), (&before["traffic"], &before["revision"]));
    let counts = count(&node, &node.url("default", "inv", "/"), None, 20, 2).await;
    assert_eq!(counts, BTreeMap::from([((200, "inv-2".to_string()), 20)]));
}

#[tokio::test(flavor = "multi_thread")]
async fn revisions_and_their_counters_survive_a_restart_and_history_is_bounded() {
    let d = dir();
    let config = "revision-history = 3\n";
    let node = NodeProc::start(d.path(), config);
    let traffic =
        "  traffic:\n    - {revisionName: keep-1, percent: 50}\n    - {latestRevision: true, percent: 50, tag: next}\n";
    for v in 1..=5 {
        // A routing-only change makes no revision: the same config with another split.
        node.deploy_ok(&version("keep", &format!("v{v}"), traffic)).await;
    }
    let body = node
        .deploy_ok(&version(
            "keep",
            "v5",
            &traffic.replacen("percent: 50", "percent: 40", 1).replacen("percent: 50", "percent: 60", 1),
        ))
        .await;
    assert_eq!(body["function"]["traffic"][0]["percent"], 40);
    node.deploy_ok(&version("keep", "v5", traffic)).await;
    let node_arc = Arc::new(node);
    let counts = count(&node_arc, &node_arc.url("default", "keep", "/"), None, 100, 4).await;
    assert_eq!(counts.keys().map(|(_, r)| r.as_str()).collect::<Vec<_>>(), ["keep-1", "keep-5"], "{counts:?}");
    let before = revisions(&node_arc, "keep").await;
    let names: Vec<&str> = before.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["keep-5", "keep-4", "keep-3", "keep-1"], "the newest 3 and the one the traffic names");
    let served: u64 = before.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert_eq!(served, 100);

    let mut node = Arc::try_unwrap(node_arc).ok().unwrap();
    assert!(node.stop().success());
    let node = NodeProc::start(d.path(), config);
    let after = revisions(&node, "keep").await;
    assert_eq!(after, before, "revisions and counters after the restart");
    let f = function(&node, "keep").await;
    assert_eq!(f["traffic"][1]["tag"], "next");
    let body = node.deploy_ok(&version("keep", "v6", traffic)).await;
    assert_eq!(body["function"]["revision"], "keep-6", "names are not reused after a restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deploys_each_make_one_revision_and_the_spec_matches_what_serves() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    node.deploy_ok(&version("race", "v0", "")).await;
    let mut deploys = Vec::new();
    for v in 1..=6 {
        let node = node.clone();
        // Half of them change only the routing of v0's configuration, half make a new one.
        let m = if v % 2 == 0 {
            version("race", &format!("v{v}"), "")
        } else {
            version("race", "v0", &format!("  routes: [{{path: /r{v}}}]\n"))
        };
        deploys.push(tokio::spawn(async move { node.deploy(&m).await }));
    }
    for d in deploys {
        let (status, body) = d.await.unwrap();
        assert!(status == 200 || status == 201, "{body}");
    }
    let f = function(&node, "race").await;
    let want = f["spec"]["env"][0]["value"].as_str().unwrap().to_string();
    let (_, _, body) = node.get(&node.url("default", "race", "/")).await;
    assert_eq!(body, format!("hello from rust {want}\n"), "the applied spec and the serving revision disagree: {f}");
    let names: Vec<String> =
        revisions(&node, "race").await.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    // v0, the three new configurations, and v0 again for each routing change that followed one of them.
    assert!((4..=7).contains(&names.len()), "{names:?}");
    assert_eq!(names[0], f["revision"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_can_be_promoted_or_stopped_on_request() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    let rollout = "  rollout: {steps: 10, duration: 1h}\n";
    node.deploy_ok(&version("pr", "v1", rollout)).await;
    node.deploy_ok(&version("pr", "v2", rollout)).await;
    let (ok, out, err) = cli(&node, &["rollback", "pr", "--to", "pr-2"]);
    assert!(ok, "{err}");
    assert!(out.contains("pr-2 now serves the latest traffic"), "{out}");
    let f = function(&node, "pr").await;
    assert_eq!(
        (f["rollout"]["state"].as_str(), f["rollout"]["reason"].as_str()),
        (Some("Succeeded"), Some("pr-2 promoted on request"))
    );

    let deployed = node.deploy_ok(&version("pr", "v3", rollout)).await;
    assert_eq!(deployed["function"]["rollout"]["percent"], 10);
    let (ok, _, err) = cli(&node, &["rollback", "pr"]);
    assert!(ok, "{err}");
    let f = function(&node, "pr").await;
    assert_eq!(f["rollout"]["state"], "RolledBack");
    assert_eq!(f["latestReadyRevision"], "pr-2");
    let counts = count(&node, &node.url("default", "pr", "/"), None, 20, 2).await;
    assert_eq!(counts, BTreeMap::from([((200, "pr-2".to_string()), 20)]));
    // Applying the stopped configuration again changes nothing, and says why.
    let (status, body) = node.deploy(&version("pr", "v3", rollout)).await;
    assert_eq!(status, 200, "{body}");
    let note = body["note"].as_str().unwrap();
    assert!(note.contains("pr-3 is out of service") && note.contains("wasmfn rollback --to pr-3"), "{note}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_from_before_revisions_is_restored() {
    let d = dir();
    let mut node = NodeProc::start(d.path(), "");
    let (status, up) = node.upload(std::fs::read(rust_guest()).unwrap()).await;
    assert_eq!(status, 201, "{up}");
    assert!(node.stop().success());
    // The format of functions.json before revisions were kept: one record per function.
    let legacy = json!({"functions": [{
        "generation": 3,
        "created": "2026-11-01T10:00:00Z",
        "function": {
            "apiVersion": "wasmfn.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": "old", "namespace": "default"},
            "spec": {"component": up["digest"], "env": [{"name": "VERSION", "value": "legacy"}], "routes": [{"path": "/old"}]}
        }
    }]});
    std::fs::write(d.path().join("functions.json"), legacy.to_string()).unwrap();
    let node = NodeProc::start(d.path(), "");
    let (status, headers, body) = node.get(&format!("http://{}/old/", node.ingress)).await;
    assert_eq!((status, body.as_str()), (200, "hello from rust legacy\n"));
    assert_eq!(headers["x-wasmfn-revision"], "old-3");
    let revs = revisions(&node, "old").await;
    assert_eq!((revs.len(), revs[0]["created"].as_str()), (1, Some("2026-11-01T10:00:00Z")));
    let body = node.deploy_ok(&version("old", "new", "")).await;
    assert_eq!(body["function"]["revision"], "old-4");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_finds_a_running_wasmfn_up() {
    let d = dir();
    let file = d.path().join("hello.yaml");
    std::fs::write(&file, version("uphello", "v1", "")).unwrap();
    let data = d.path().join("data");
    let opts = wasmfn_tests::node::Options { up: Some(vec![file.display().to_string()]), ..Default::default() };
    let node = NodeProc::start_with(&data, opts);
    let out = Command::new(binary())
        .args(["revisions", "uphello", "--data-dir", data.to_str().unwrap()])
        .env_remove("WASMFN_ADMIN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.starts_with("uphello-1 ")), "{stdout}");
    drop(node);
}

/// Rollouts judge the revision, not the crowd: a flood past `maxConcurrency`/`maxQueue` gets 503s from
/// admission, which say nothing about the canary and must not roll it back.
#[tokio::test(flavor = "multi_thread")]
async fn a_canary_flooded_past_its_queue_is_not_rolled_back() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    let extra = "  rollout: {steps: 2, duration: 10m, maxErrorRate: 0.1, minRequests: 10}\n  scaling:\n    maxConcurrency: 1\n    maxQueue: 1\n    queueTimeout: 20ms\n";
    node.deploy_ok(&version("fl", "v1", extra)).await;
    let deployed = node.deploy_ok(&version("fl", "v2", extra)).await;
    assert_eq!(deployed["function"]["rollout"]["percent"], 50, "{deployed}");

    let seen = count(&node, &node.url("default", "fl", "/sleep?ms=100"), None, 60, 12).await;
    let refused = seen.get(&(503, "fl-2".to_string())).copied().unwrap_or(0);
    assert!(refused >= 10, "the flood reached the canary past its queue: {seen:?}");

    let canary = revisions(&node, "fl").await.into_iter().find(|r| r["name"] == "fl-2").unwrap();
    let served = seen.get(&(200, "fl-2".to_string())).copied().unwrap_or(0) as u64;
    assert_eq!(canary["errors"], 0, "admission 503s are not the revision's errors: {canary}");
    assert_eq!(canary["requests"].as_u64(), Some(served), "only what the revision served counts: {canary}");
    let f = function(&node, "fl").await;
    assert_ne!(f["rollout"]["state"], "RolledBack", "{f}");
    // The 503s still show in the metrics.
    assert!(node.metric("wasmfn_requests_total", &["function=\"fl\"", "code=\"503\""]).await >= refused as f64);
}
