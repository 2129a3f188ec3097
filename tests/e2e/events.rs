//! Eventing on a real node: the broker (binary, structured and batched events, every filter operator,
//! replies, malformed input), delivery (retries with backoff, dead letters, drops), cron and a real
//! `nats-server -js` fed by a third-party client (async-nats), across a node crash.
//!
//! The Rust test guest logs one `event id=… attempt=… now_ms=…` line per delivery; the node logs guest output
//! with the function's name, which is what these tests read back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use wasmfn_tests::eventually;
use wasmfn_tests::guests::rust_guest;
use wasmfn_tests::nats::NatsProc;
use wasmfn_tests::node::{NodeProc, manifest, use_binary};

fn dir() -> tempfile::TempDir {
    use_binary(env!("CARGO_BIN_EXE_wasmfn"));
    tempfile::tempdir().unwrap()
}

/// A function running the test guest with `env` and one trigger (flow-style YAML after `name: t, `).
fn function(name: &str, env: &[(&str, &str)], trigger: Option<&str>) -> String {
    let mut spec = String::new();
    if !env.is_empty() {
        spec += "  env:\n";
        for (k, v) in env {
            spec += &format!("    - {{name: {k}, value: \"{v}\"}}\n");
        }
    }
    if let Some(t) = trigger {
        spec += &format!("  triggers:\n    - {{name: t, {t}}}\n");
    }
    manifest(name, &rust_guest(), &spec)
}

/// One delivery as the guest logged it.
#[derive(Debug, Clone)]
struct Seen {
    function: String,
    fields: BTreeMap<String, String>,
    data: String,
}

impl Seen {
    fn get(&self, k: &str) -> &str {
        self.fields.get(k).map_or("", String::as_str)
    }
    fn id(&self) -> &str {
        self.get("id")
    }
}

fn seen(logs: &str) -> Vec<Seen> {
    logs.lines()
        .filter_map(|l| {
            let rest = l.split("wasmfn::guest: event ").nth(1)?;
            let (msg, tail) = rest.rsplit_once(" function=")?;
            let function = tail.split_whitespace().next()?.trim_start_matches("default/").to_string();
            let (head, data) = msg.split_once(" data=")?;
            let fields = head.split(' ').filter_map(|t| t.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
            Some(Seen { function, fields, data: data.to_string() })
        })
        .collect()
}

fn broker(node: &NodeProc) -> String {
    format!("http://{}/_events/default", node.ingress)
}

/// Sums every series of a counter.
async fn total(node: &NodeProc, name: &str, needle: &str) -> f64 {
    node.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn post(node: &NodeProc, content_type: &str, body: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = node.client.post(broker(node)).header("content-type", content_type).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_filters_before_dispatch_in_every_format_and_publishes_replies() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    let functions = [
        (
            "orders",
            vec![],
            "events: {filter: {all: [{exact: {type: com.example.order}}, {not: {prefix: {source: /internal}}}]}}",
        ),
        ("images", vec![], "events: {filter: {suffix: {subject: .jpg}}}"),
        ("anyf", vec![], "events: {filter: {any: [{exact: {type: a}}, {prefix: {type: b.}}]}}"),
        ("tenant", vec![], "events: {filter: {exact: {tenant: acme}}}"),
        ("replier", vec![("REPLY_TYPE", "answer")], "events: {filter: {exact: {type: ask}}}"),
        ("answers", vec![], "events: {filter: {exact: {type: answer}}}"),
    ];
    for (name, env, trigger) in &functions {
        node.deploy_ok(&function(name, env, Some(trigger))).await;
    }
    node.deploy_ok(&function("quiet", &[], None)).await;

    let binary = [("ce-specversion", "1.0"), ("ce-id", "b1"), ("ce-source", "/shop"), ("ce-type", "com.example.order")];
    let (status, body) = post(&node, "text/plain", "one order", &binary).await;
    assert_eq!((status, &body["deliveries"]), (202, &serde_json::json!(1)), "{body}");
    let internal = r#"{"specversion":"1.0","id":"s1","source":"/internal/x","type":"com.example.order"}"#;
    let (status, body) = post(&node, "application/cloudevents+json", internal, &[]).await;
    assert_eq!((status, &body["deliveries"]), (202, &serde_json::json!(0)), "filtered out before dispatch: {body}");
    let photo =
        r#"{"specversion":"1.0","id":"s2","source":"/x","type":"b.created","subject":"photo.jpg","data":{"k":1}}"#;
    let (status, body) = post(&node, "application/cloudevents+json; charset=utf-8", photo, &[]).await;
    assert_eq!((status, &body["deliveries"]), (202, &serde_json::json!(2)), "{body}");
    let batch = r#"[{"specversion":"1.0","id":"k1","source":"/x","type":"a"},
                    {"specversion":"1.0","id":"k2","source":"/x","type":"c","tenant":"acme"},
                    {"specversion":"1.0","id":"k3","source":"/x","type":"ask"}]"#;
    let (status, body) = post(&node, "application/cloudevents-batch+json", batch, &[]).await;
    assert_eq!(
        (status, &body["accepted"], &body["deliveries"]),
        (202, &serde_json::json!(3), &serde_json::json!(3)),
        "{body}"
    );

    let want: BTreeSet<(String, String)> = [
        ("orders", "b1"),
        ("images", "s2"),
        ("anyf", "s2"),
        ("anyf", "k1"),
        ("tenant", "k2"),
        ("replier", "k3"),
        ("answers", "reply-k3"),
    ]
    .iter()
    .map(|(f, i)| (f.to_string(), i.to_string()))
    .collect();
    let got = eventually(Duration::from_secs(30), "every matching delivery", || async {
        let got: BTreeSet<(String, String)> =
            seen(&node.logs()).iter().map(|s| (s.function.clone(), s.id().to_string())).collect();
        (got.len() >= want.len() && total(&node, "wasmfn_events_delivered_total", "").await >= 7.0).then_some(got)
    })
    .await;
    assert_eq!(got, want);
    assert_eq!(
        total(&node, "wasmfn_events_received_total", "").await,
        7.0,
        "no trigger took an event it does not match"
    );
    let all = seen(&node.logs());
    let b1 = all.iter().find(|s| s.id() == "b1").unwrap();
    assert_eq!((b1.get("type"), b1.get("source"), b1.data.as_str()), ("com.example.order", "/shop", "one order"));
    let reply = all.iter().find(|s| s.id() == "reply-k3").unwrap();
    assert_eq!((reply.get("type"), reply.data.as_str()), ("answer", "reply to k3"));
    assert_eq!(total(&node, "wasmfn_events_delivered_total", "function=\"anyf\"").await, 2.0);

    // Malformed input: 400 with a message, nothing delivered.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        ("text/plain", "hello", &[], "not a CloudEvent"),
        ("text/plain", "x", &[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/x")], "not a CloudEvent"),
        ("application/cloudevents+json", "{not json", &[], "not a CloudEvent"),
        ("application/cloudevents-batch+json", "[]", &[], "holds no event"),
        ("application/cloudevents-batch+json", r#"[{"id":"1"}]"#, &[], "invalid batch"),
    ];
    for (ct, body, headers, message) in cases {
        let (status, answer) = post(&node, ct, body, headers).await;
        assert_eq!(status, 400, "{ct} {body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(message), "{answer}");
    }
    let status = node.client.get(broker(&node)).send().await.unwrap().status().as_u16();
    assert_eq!(status, 405);
    let resp = node
        .client
        .post(format!("http://{}/_events/nowhere", node.ingress))
        .header("content-type", "application/cloudevents+json")
        .body(internal)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404, "a namespace without functions");
    assert_eq!(total(&node, "wasmfn_events_received_total", "").await, 7.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_deliveries_are_retried_with_backoff_then_dead_lettered_or_dropped_with_the_reason() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    let flaky = "events: {filter: {exact: {type: flaky}}}, delivery: {retry: 5, backoffDelay: 50ms}";
    node.deploy_ok(&function("flaky", &[("FAIL_UNTIL_ATTEMPT", "3")], Some(flaky))).await;
    let broken = "events: {filter: {exact: {type: broken}}}, delivery: {retry: 2, backoffPolicy: linear, backoffDelay: 20ms, deadLetterSink: {function: dlq}}";
    node.deploy_ok(&function("broken", &[("FAIL_ALWAYS", "1")], Some(broken))).await;
    node.deploy_ok(&function("dlq", &[], None)).await;
    let nosink = "events: {filter: {exact: {type: nosink}}}, delivery: {retry: 1, backoffDelay: 10ms}";
    node.deploy_ok(&function("nosink", &[("FAIL_ALWAYS", "1")], Some(nosink))).await;
    let rejects = "events: {filter: {exact: {type: rejected}}}, delivery: {retry: 5, backoffDelay: 10ms}";
    node.deploy_ok(&function("rejects", &[("FAIL_ALWAYS", "1"), ("FAIL_STATUS", "400")], Some(rejects))).await;
    let slowpoke = "events: {filter: {exact: {type: slow}}}, delivery: {retry: 1, backoffDelay: 10ms, timeout: 300ms, deadLetterSink: {function: dlq}}";
    node.deploy_ok(&function("slowpoke", &[("SLEEP_MS", "5000")], Some(slowpoke))).await;

    for (id, ty) in [("f1", "flaky"), ("x1", "broken"), ("n1", "nosink"), ("r1", "rejected"), ("t1", "slow")] {
        let headers = [("ce-specversion", "1.0"), ("ce-id", id), ("ce-source", "/test"), ("ce-type", ty)];
        let (status, body) = post(&node, "text/plain", "payload", &headers).await;
        assert_eq!(status, 202, "{body}");
    }
    let count = |all: &[Seen], f: &str| all.iter().filter(|s| s.function == f).count();
    let all = eventually(Duration::from_secs(60), "every delivery settled in the logs", || async {
        let logs = node.logs();
        let all = seen(&logs);
        let settled = count(&all, "flaky") == 3
            && count(&all, "dlq") == 2
            && logs.matches("event dropped: every attempt failed").count() == 2;
        settled.then_some(all)
    })
    .await;
    let attempts = |f: &str| -> Vec<(u64, u128)> {
        let mut a: Vec<(u64, u128)> = all
            .iter()
            .filter(|s| s.function == f)
            .map(|s| (s.get("attempt").parse().unwrap(), s.get("now_ms").parse().unwrap()))
            .collect();
        a.sort();
        a
    };

    // Knative's exponential backoff: 50 ms × 2 before the 2nd attempt, × 4 before the 3rd, which succeeds.
    let f = attempts("flaky");
    assert_eq!(f.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3], "{f:?}");
    assert!(f[1].1 - f[0].1 >= 100 && f[2].1 - f[1].1 >= 200, "backoff too short: {f:?}");
    assert_eq!(total(&node, "wasmfn_events_retried_total", "function=\"flaky\"").await, 2.0);
    assert_eq!(total(&node, "wasmfn_events_delivered_total", "function=\"flaky\"").await, 1.0);

    // Three attempts, then the dead letter carries the reason in Knative's extensions.
    assert_eq!(attempts("broken").len(), 3);
    let dead = all.iter().find(|s| s.function == "dlq" && s.id() == "x1").expect("the dead letter reached dlq");
    assert_eq!(dead.get("errorcode"), "500");
    assert_eq!(dead.get("errordata"), "ZmFpbGluZyBvbiBwdXJwb3Nl", "base64 of the function's answer");
    assert_eq!(dead.data, "payload");
    assert_eq!(total(&node, "wasmfn_events_dead_lettered_total", "function=\"broken\"").await, 1.0);

    // A per-attempt timeout stops the guest: two attempts, then a 504 dead letter.
    assert_eq!(attempts("slowpoke").len(), 2);
    let timed_out =
        all.iter().find(|s| s.function == "dlq" && s.id() == "t1").expect("the timed-out event reached dlq");
    assert_eq!(timed_out.get("errorcode"), "504");

    // No sink: logged and counted, not silent. A 4xx other than 404/408/409/429 is not retried.
    assert_eq!(attempts("nosink").len(), 2);
    assert_eq!(total(&node, "wasmfn_events_dropped_total", "function=\"nosink\"").await, 1.0);
    assert_eq!(attempts("rejects").len(), 1, "a 400 would fail the same way again");
    assert_eq!(total(&node, "wasmfn_events_dropped_total", "function=\"rejects\"").await, 1.0);
}

fn epoch_secs(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}")).timestamp()
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_triggers_fire_on_schedule_without_overlapping_runs() {
    let d = dir();
    let node = Arc::new(NodeProc::start(d.path(), ""));
    // Six fields: every second (the seconds field keeps the test short; five fields are minutes).
    let every_second = r#"cron: {schedule: "* * * * * *", data: '{"n":1}', allowOverlap: true}"#;
    node.deploy_ok(&function("tick", &[], Some(every_second))).await;
    node.deploy_ok(&function("slow", &[("SLEEP_MS", "2500")], Some(r#"cron: {schedule: "* * * * * *"}"#))).await;

    let ticks = eventually(Duration::from_secs(30), "4 cron runs", || async {
        let t: Vec<Seen> = seen(&node.logs()).into_iter().filter(|s| s.function == "tick").collect();
        (t.len() >= 4).then_some(t)
    })
    .await;
    let times: Vec<i64> = ticks.iter().map(|s| epoch_secs(s.get("time"))).collect();
    // One event per scheduled second, in order, never twice (a node too busy to wake in time may skip one).
    assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
    assert!(times[times.len() - 1] - times[0] <= 2 * (times.len() as i64 - 1), "too many runs missed: {times:?}");
    for s in &ticks {
        assert_eq!(s.get("type"), "dev.wasmfn.cron");
        assert_eq!(s.get("source"), "/apis/wasmfn.dev/v1alpha1/namespaces/default/functions/tick/triggers/t");
        assert_eq!(s.data, r#"{"n":1}"#);
    }

    let slow = eventually(Duration::from_secs(30), "2 runs of the slow function", || async {
        let t: Vec<Seen> = seen(&node.logs()).into_iter().filter(|s| s.function == "slow").collect();
        (t.len() >= 2).then_some(t)
    })
    .await;
    let times: Vec<i64> = slow.iter().map(|s| epoch_secs(s.get("time"))).collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 3), "a run started while the previous one ran: {times:?}");
    assert!(total(&node, "wasmfn_events_skipped_total", "function=\"slow\"").await >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_messages_are_delivered_at_least_once_across_a_node_crash() {
    let d = dir();
    let nats_dir = tempfile::tempdir().unwrap();
    let nats = NatsProc::start(nats_dir.path());
    let trigger = format!(
        r#"nats: {{url: "{}", subject: "orders.>", stream: ORDERS}}, delivery: {{retry: 3, backoffDelay: 10ms}}"#,
        nats.url
    );
    // NATS servers are named by tenants, so they pass the egress policy: loopback only when allowed.
    let refused_dir = tempfile::tempdir().unwrap();
    let refused = NodeProc::start(refused_dir.path(), "");
    refused.deploy_ok(&function("consumer", &[], Some(&trigger))).await;
    refused.wait_for_log("which the node's egress policy refuses", Duration::from_secs(30)).await;
    drop(refused);
    let mut node = NodeProc::start(d.path(), "egress-allow = [\"127.0.0.1/32\"]\n");
    node.deploy_ok(&function("consumer", &[("SLEEP_MS", "200")], Some(&trigger))).await;
    node.wait_for_log("reading NATS JetStream", Duration::from_secs(30)).await;

    // A third-party client publishes into the stream and waits for JetStream's acknowledgements.
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    const N: usize = 100;
    for i in 1..=N {
        js.publish(format!("orders.{i}"), format!("order {i}").into()).await.unwrap().await.unwrap();
    }

    eventually(Duration::from_secs(60), "a third of the stream delivered", || async {
        (seen(&node.logs()).len() >= N / 3).then_some(())
    })
    .await;
    node.kill();
    let first = seen(&node.logs());
    assert!(first.len() < N, "the crash should come mid-stream");
    let node = NodeProc::start(d.path(), "egress-allow = [\"127.0.0.1/32\"]\n");
    let second = eventually(Duration::from_secs(90), "every message after the restart", || async {
        let second = seen(&node.logs());
        let ids: BTreeSet<String> = first.iter().chain(&second).map(|s| s.id().to_string()).collect();
        (ids.len() >= N).then_some(second)
    })
    .await;

    let all_ids: BTreeSet<String> = (1..=N).map(|i| format!("ORDERS-{i}")).collect();
    let ids: BTreeSet<String> = first.iter().chain(&second).map(|s| s.id().to_string()).collect();
    assert_eq!(ids, all_ids, "no message lost");
    // Duplicates only where a redelivery is expected: messages the crashed node had taken but not acknowledged.
    let firsts: BTreeSet<&str> = first.iter().map(|s| s.id()).collect();
    let mut twice_in_second = BTreeSet::new();
    for s in &second {
        assert!(twice_in_second.insert(s.id()), "{} delivered twice by the same node", s.id());
    }
    let redelivered: Vec<&str> = second.iter().map(|s| s.id()).filter(|id| firsts.contains(id)).collect();
    assert!(redelivered.len() <= 32, "more redeliveries than messages in flight: {redelivered:?}");
    let m7 = first.iter().chain(&second).find(|s| s.id() == "ORDERS-7").unwrap();
    assert_eq!(
        (m7.get("type"), m7.get("subject"), m7.data.as_str()),
        ("dev.wasmfn.nats.message", "orders.7", "order 7")
    );

    // The durable consumer keeps its filter: a changed subject is reported, not silently ignored.
    let moved = trigger.replace("orders.>", "orders.new.>");
    node.deploy_ok(&function("consumer", &[("SLEEP_MS", "200")], Some(&moved))).await;
    node.wait_for_log("reads `orders.>`, not `orders.new.>`", Duration::from_secs(30)).await;
    drop(nats);
}

/// The hop count is the node's: an event from outside that claims `wasmfnhops: -1000000000` (which made a
/// reply loop endless) or `15` (which would cut a chain short) starts at 0 like any other, and a function that
/// replies to its own events runs exactly once plus 16 replies.
#[tokio::test(flavor = "multi_thread")]
async fn forged_hop_counts_neither_lengthen_nor_shorten_a_reply_chain() {
    let d = dir();
    let node = NodeProc::start(d.path(), "");
    node.deploy_ok(&function("looper", &[("REPLY_TYPE", "loop")], Some("events: {filter: {exact: {type: loop}}}")))
        .await;
    for (id, forged) in [("neg", "-1000000000"), ("high", "15")] {
        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", id),
            ("ce-source", "/test"),
            ("ce-type", "loop"),
            ("ce-wasmfnhops", forged),
        ];
        let (status, body) = post(&node, "text/plain", "go", &headers).await;
        assert_eq!(status, 202, "{body}");
    }
    let chain = |all: &[Seen], id: &str| all.iter().filter(|s| s.function == "looper" && s.id().ends_with(id)).count();
    eventually(Duration::from_secs(60), "both chains stopped at the limit", || async {
        let logs = node.logs();
        (logs.matches("replies in a row (a loop?)").count() == 2).then_some(())
    })
    .await;
    let all = seen(&node.logs());
    assert_eq!((chain(&all, "neg"), chain(&all, "high")), (17, 17), "the original and 16 replies each");
}
