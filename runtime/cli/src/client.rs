//! `wasmfn ls`, `wasmfn call`, `wasmfn logs` and `wasmfn delete` against a running `wasmfn up`/`serve`, like
//! Kubeless' `function ls/call/logs/delete`, through the admin API the console uses.

use crate::admin::AdminArgs;
use anyhow::{Context, bail};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

/// `wasmfn ls [--all-namespaces]`.
pub async fn ls(args: &AdminArgs, all: bool, as_json: bool) -> anyhow::Result<()> {
    let body = args.json(Method::GET, "/v1/functions", None).await?;
    let functions: Vec<&Value> = body["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| all || f["namespace"] == args.namespace.as_str())
        .collect();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&functions)?);
        return Ok(());
    }
    let rows: Vec<[String; 7]> = functions
        .iter()
        .map(|f| {
            let status = if f["lastError"].is_string() { "error" } else { "ready" };
            [
                f["namespace"].as_str().unwrap_or("").to_string(),
                f["name"].as_str().unwrap_or("").to_string(),
                f["latestReadyRevision"].as_str().unwrap_or("").to_string(),
                status.to_string(),
                f["requests"].to_string(),
                f["coldStarts"].to_string(),
                f["urls"][0].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    let header = ["NAMESPACE", "NAME", "REVISION", "STATUS", "REQUESTS", "COLD", "URL"];
    crate::admin::print_table(&header, &rows);
    Ok(())
}

/// What `wasmfn call` sends.
pub struct CallArgs<'a> {
    /// The body (or the event's data, JSON when it parses).
    pub data: Option<&'a str>,
    /// Send a CloudEvent of this type (binary mode).
    pub event_type: Option<&'a str>,
    /// The event's source.
    pub event_source: &'a str,
    /// HTTP method (default POST with data, else GET).
    pub method: Option<&'a str>,
    /// Path under the function.
    pub path: &'a str,
    /// `NAME: VALUE` headers.
    pub headers: &'a [String],
}

/// `wasmfn call NAME [--data ..] [--event-type ..]`: prints the body; status, revision and latency to stderr.
pub async fn call(name: &str, args: &AdminArgs, call: CallArgs<'_>) -> anyhow::Result<()> {
    let mut headers = Vec::new();
    for h in call.headers {
        let (k, v) = h.split_once(':').with_context(|| format!("--header `{h}`: expected `NAME: VALUE`"))?;
        headers.push(json!([k.trim(), v.trim()]));
    }
    let method = call.method.unwrap_or(if call.data.is_some() || call.event_type.is_some() { "POST" } else { "GET" });
    let mut body = json!({ "method": method, "path": call.path, "headers": headers });
    match call.event_type {
        Some(kind) => {
            let data = call.data.map(|d| serde_json::from_str(d).unwrap_or_else(|_| json!(d))).unwrap_or(Value::Null);
            body["event"] = json!({ "type": kind, "source": call.event_source, "data": data });
        }
        None => body["body"] = json!(call.data.unwrap_or("")),
    }
    let out = args.call(Method::POST, name, "/invoke", Some(body)).await?;
    tracing::info!(
        status = %out["status"],
        revision = out["revision"].as_str().unwrap_or("?"),
        latency_ms = format!("{:.1}", out["latencyMs"].as_f64().unwrap_or(0.0)),
        request_id = out["requestId"].as_str().unwrap_or("?"),
        "answered"
    );
    println!("{}", out["body"].as_str().unwrap_or(""));
    let status = out["status"].as_u64().unwrap_or(0);
    if !(200..400).contains(&status) {
        bail!("the function answered {status}");
    }
    Ok(())
}

/// `wasmfn logs NAME [-f] [--revision R] [--request ID]`.
pub async fn logs(
    name: &str,
    args: &AdminArgs,
    follow: bool,
    revision: Option<&str>,
    request: Option<&str>,
) -> anyhow::Result<()> {
    let mut query = format!("/v1/logs?namespace={}&function={name}&limit=1000", args.namespace);
    for (key, value) in [("revision", revision), ("request", request)] {
        if let Some(v) = value {
            query.push_str(&format!("&{key}={}", urlencode(v)));
        }
    }
    if !follow {
        let body = args.json(Method::GET, &query, None).await?;
        for line in body["lines"].as_array().into_iter().flatten() {
            print_line(line);
        }
        return Ok(());
    }
    let resp = args.send(Method::GET, &format!("{query}&follow=true"), None).await?;
    if !resp.status().is_success() {
        bail!("the admin API answered {}", resp.status());
    }
    // Server-Sent Events: `data: <json>` lines, events separated by a blank line.
    let mut stream = resp.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk.context("the log stream broke")?);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data:")
                && let Ok(v) = serde_json::from_str::<Value>(data.trim_start())
            {
                print_line(&v);
            }
        }
    }
    Ok(())
}

fn print_line(l: &Value) {
    println!(
        "{} {} {} {}: {}",
        l["time"].as_str().unwrap_or(""),
        l["revision"].as_str().filter(|r| !r.is_empty()).unwrap_or("build"),
        l["requestId"].as_str().filter(|r| !r.is_empty()).unwrap_or("-"),
        l["stream"].as_str().unwrap_or(""),
        l["line"].as_str().unwrap_or("")
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `wasmfn delete NAME`.
pub async fn delete(name: &str, args: &AdminArgs) -> anyhow::Result<()> {
    args.call(Method::DELETE, name, "", None).await?;
    println!("deleted {}/{name}", args.namespace);
    Ok(())
}

/// `wasmfn events [-A]`: the event types the node's brokers have seen, with counts, fields and a sample.
pub async fn events(args: &AdminArgs, all: bool, as_json: bool) -> anyhow::Result<()> {
    let path =
        if all { "/v1/events/types".to_string() } else { format!("/v1/events/types?namespace={}", args.namespace) };
    let body = args.json(Method::GET, &path, None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    println!(
        "{:<12} {:<40} {:<28} {:>7}  {:<24}  FIELDS / SAMPLE",
        "NAMESPACE", "TYPE", "SOURCE", "COUNT", "LAST SEEN"
    );
    for (ns, seen) in body["namespaces"].as_object().into_iter().flatten() {
        for t in seen["types"].as_array().into_iter().flatten() {
            let fields: Vec<String> = t["fields"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("?")))
                .collect();
            let detail = if t["sensitive"] == true {
                "(sensitive: no sample)".to_string()
            } else if !fields.is_empty() {
                fields.join(" ")
            } else {
                t["sample"].as_str().unwrap_or("").chars().take(60).collect()
            };
            println!(
                "{ns:<12} {:<40} {:<28} {:>7}  {:<24}  {detail}",
                t["type"].as_str().unwrap_or(""),
                t["source"].as_str().unwrap_or(""),
                t["count"],
                t["lastSeen"].as_str().unwrap_or("")
            );
        }
        if let Some(n) = seen["untracked"].as_u64().filter(|n| *n > 0) {
            println!("{ns:<12} ({n} events of types past the {} kept)", 1000);
        }
    }
    Ok(())
}
