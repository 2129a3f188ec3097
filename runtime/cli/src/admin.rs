//! `wasmfn revisions`, `wasmfn traffic` and `wasmfn rollback`: clients of a running node's admin API (`ls`,
//! `call`, `logs` and `delete` are in `client.rs`).

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The file in `wasmfn up`'s data folder that holds its admin API's URL while it runs.
pub const ADMIN_FILE: &str = "admin.url";

/// Which node and namespace.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The node's admin API (`wasmfn up` and `wasmfn serve` print it at start). Default: the running
    /// `wasmfn up`'s, else `http://127.0.0.1:8081`.
    #[arg(long, env = "WASMFN_ADMIN")]
    admin: Option<String>,
    /// The data folder of the `wasmfn up` to reach (when it is not the default one).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// The function's namespace.
    #[arg(long, short, default_value = "default")]
    pub(crate) namespace: String,
}

impl AdminArgs {
    pub(crate) fn admin_url(&self) -> String {
        if let Some(a) = &self.admin {
            return a.clone();
        }
        let dir = self.data_dir.clone().unwrap_or_else(crate::paths::default_data_dir);
        let recorded = std::fs::read_to_string(dir.join(ADMIN_FILE));
        recorded.ok().map(|u| u.trim().to_string()).unwrap_or_else(|| "http://127.0.0.1:8081".into())
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        name: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.json(method, &format!("/v1/functions/{}/{name}{path}", self.namespace), body).await
    }

    /// A request to `path` (from `/v1/…`) of the admin API, with the token of `WASMFN_ADMIN_TOKEN`.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.admin_url().trim_end_matches('/'));
        let client = reqwest::Client::builder().no_proxy().build()?;
        let mut req = client.request(method, &url);
        if let Ok(token) = std::env::var("WASMFN_ADMIN_TOKEN") {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.with_context(|| format!("cannot reach the node's admin API at {url}"))
    }

    /// [`send`](Self::send), answering the JSON body, or an error with the API's message.
    pub(crate) async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"].as_str().map_or_else(|| body.to_string(), str::to_string);
            bail!("{message} ({status})");
        }
        Ok(body)
    }
}

/// Parses `REV=PERCENT` (`@latest` for the latest revision) and `--tag REV=TAG` into traffic targets; with no
/// `REV=PERCENT`, the tags go onto `current` (the function's `spec.traffic`).
fn targets(splits: &[String], tags: &[String], current: &Value) -> anyhow::Result<Vec<Value>> {
    let target = |rev: &str| -> Value {
        match rev {
            "@latest" | "latest" => json!({ "latestRevision": true }),
            r => json!({ "revisionName": r }),
        }
    };
    let mut out: Vec<Value> = Vec::new();
    if splits.is_empty() {
        out = match current.as_array() {
            Some(t) if !t.is_empty() => t.clone(),
            _ => vec![json!({ "latestRevision": true, "percent": 100 })],
        };
        // A tag set again moves to its new revision.
        for t in &mut out {
            if let Some(o) = t.as_object_mut()
                && o.get("tag")
                    .and_then(Value::as_str)
                    .is_some_and(|tag| tags.iter().any(|s| s.ends_with(&format!("={tag}"))))
            {
                o.remove("tag");
            }
        }
    }
    for s in splits {
        let (rev, percent) = s.split_once('=').with_context(|| format!("`{s}`: expected REVISION=PERCENT"))?;
        let percent: u32 =
            percent.trim_end_matches('%').parse().with_context(|| format!("`{s}`: `{percent}` is not a percent"))?;
        let mut t = target(rev);
        t["percent"] = percent.into();
        out.push(t);
    }
    for s in tags {
        let (rev, tag) = s.split_once('=').with_context(|| format!("--tag `{s}`: expected REVISION=TAG"))?;
        let wanted = target(rev);
        let same =
            |t: &Value| t["revisionName"] == wanted["revisionName"] && t["latestRevision"] == wanted["latestRevision"];
        match out.iter_mut().find(|t| same(t) && t.get("tag").is_none()) {
            Some(t) => t["tag"] = tag.into(),
            None => {
                let mut t = wanted;
                t["percent"] = 0.into();
                t["tag"] = tag.into();
                out.push(t);
            }
        }
    }
    Ok(out)
}

fn print_traffic(info: &Value) {
    for t in info["traffic"].as_array().into_iter().flatten() {
        let latest = if t["latestRevision"] == true { " (latest)" } else { "" };
        let tag = match (t["tag"].as_str(), t["url"].as_str()) {
            (Some(tag), Some(url)) => format!("  tag {tag}: {url}"),
            _ => String::new(),
        };
        let percent = t["percent"].as_u64().unwrap_or(0);
        println!("{percent:>4}%  {}{latest}{tag}", t["revisionName"].as_str().unwrap_or("?"));
    }
    print_rollout(info);
}

fn print_rollout(info: &Value) {
    let r = &info["rollout"];
    if let Some(state) = r["state"].as_str() {
        let (from, to) = (r["from"].as_str().unwrap_or("?"), r["to"].as_str().unwrap_or("?"));
        let reason = r["reason"].as_str().map(|x| format!(": {x}")).unwrap_or_default();
        println!("rollout {from} → {to}: {state}, {}% after step {}/{}{reason}", r["percent"], r["step"], r["steps"]);
    }
}

/// Prints `rows` under `header`, each column as wide as its widest cell.
pub(crate) fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let widths: Vec<usize> =
        (0..N).map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header);
    for r in rows {
        line(&r.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

/// `wasmfn revisions NAME`.
pub async fn revisions(name: &str, args: &AdminArgs, as_json: bool) -> anyhow::Result<()> {
    let body = args.call(reqwest::Method::GET, name, "/revisions", None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let ms = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x}ms"));
    let rows: Vec<[String; 9]> = (body["revisions"].as_array().into_iter().flatten())
        .map(|r| {
            let mut state = Vec::new();
            if r["latest"] == true {
                state.push("latest");
            }
            if r["ready"] == true {
                state.push("ready");
            }
            if r.get("failure").is_some() {
                state.push("failed");
            }
            let tags: Vec<&str> = r["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let digest = r["digest"].as_str().unwrap_or("");
            [
                r["name"].as_str().unwrap_or("?").to_string(),
                format!("{}%", r["percent"]),
                if tags.is_empty() { "-".into() } else { tags.join(",") },
                r["requests"].to_string(),
                r["errors"].to_string(),
                ms(&r["p50Ms"]),
                ms(&r["p99Ms"]),
                r["created"].as_str().unwrap_or("").to_string(),
                format!("{} {}", digest.get(..19).unwrap_or(digest), state.join(",")),
            ]
        })
        .collect();
    let header = ["REVISION", "TRAFFIC", "TAGS", "REQUESTS", "ERRORS", "P50", "P99", "CREATED", "DIGEST"];
    print_table(&header, &rows);
    for r in body["revisions"].as_array().into_iter().flatten() {
        if let Some(f) = r["failure"].as_str() {
            println!("{} failed: {f}", r["name"].as_str().unwrap_or("?"));
        }
    }
    Ok(())
}

/// `wasmfn traffic NAME [REV=PERCENT...] [--tag REV=TAG...]`; without splits or tags, shows the traffic.
pub async fn traffic(name: &str, splits: &[String], tags: &[String], args: &AdminArgs) -> anyhow::Result<()> {
    let info = if splits.is_empty() && tags.is_empty() {
        args.call(reqwest::Method::GET, name, "", None).await?
    } else {
        let current = if splits.is_empty() {
            args.call(reqwest::Method::GET, name, "", None).await?["spec"]["traffic"].take()
        } else {
            Value::Null
        };
        let body = json!({ "traffic": targets(splits, tags, &current)? });
        args.call(reqwest::Method::PUT, name, "/traffic", Some(body)).await?
    };
    print_traffic(&info);
    Ok(())
}

/// `wasmfn rollback NAME [--to REV]`.
pub async fn rollback(name: &str, to: Option<&str>, args: &AdminArgs) -> anyhow::Result<()> {
    let body = json!({ "revision": to });
    let info = args.call(reqwest::Method::POST, name, "/rollback", Some(body)).await?;
    println!("{} now serves the latest traffic of {name}", info["latestReadyRevision"].as_str().unwrap_or("?"));
    print_traffic(&info);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_tags() {
        let splits = ["hello-2=90".to_string(), "@latest=10%".into()];
        let t = targets(&splits, &["hello-3=canary".into(), "@latest=next".into()], &Value::Null).unwrap();
        assert_eq!(
            Value::Array(t),
            json!([
                {"revisionName": "hello-2", "percent": 90},
                {"latestRevision": true, "percent": 10, "tag": "next"},
                {"revisionName": "hello-3", "percent": 0, "tag": "canary"},
            ])
        );
        let err = |split: &str| targets(&[split.into()], &[], &Value::Null).unwrap_err().to_string();
        assert!(err("hello-2").contains("REVISION=PERCENT"));
        assert!(err("hello-2=ninety").contains("not a percent"));

        // Tags alone go onto the current split; a tag set again moves.
        let current = json!([{"revisionName": "hello-2", "percent": 90, "tag": "canary"}, {"latestRevision": true, "percent": 10}]);
        let t = targets(&[], &["hello-3=canary".into()], &current).unwrap();
        assert_eq!(
            Value::Array(t),
            json!([
                {"revisionName": "hello-2", "percent": 90},
                {"latestRevision": true, "percent": 10},
                {"revisionName": "hello-3", "percent": 0, "tag": "canary"},
            ])
        );
        let t = targets(&[], &["@latest=next".into()], &Value::Null).unwrap();
        assert_eq!(Value::Array(t), json!([{"latestRevision": true, "percent": 100, "tag": "next"}]));
    }
}
