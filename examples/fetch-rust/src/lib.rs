//! Calls out over HTTP (`wasi:http/outgoing-handler`): fetches `?url=` (default: the `UPSTREAM` variable) and
//! reports the upstream's status, content type and body size.

use wasmfn_sdk::{Error, IntoResponse, Json, Request, Result, StatusCode, client, header};

#[wasmfn_sdk::http]
fn fetch(req: Request) -> Result<impl IntoResponse> {
    let query = req.uri().query().unwrap_or("");
    let url = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("url="))
        .map(str::to_string)
        .or_else(|| wasmfn_sdk::env::var("UPSTREAM"))
        .ok_or_else(|| Error::with_status(StatusCode::BAD_REQUEST, "give ?url= or set UPSTREAM"))?;
    let started = std::time::Instant::now();
    let upstream = client::get(&url)?;
    let content_type = upstream.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    Ok(Json(serde_json::json!({
        "url": url,
        "status": upstream.status().as_u16(),
        "contentType": content_type,
        "bytes": upstream.body().len(),
        "body": upstream.body().text().unwrap_or(""),
        "millis": started.elapsed().as_millis() as u64,
    })))
}
