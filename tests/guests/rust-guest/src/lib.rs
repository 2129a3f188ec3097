//! Test guest: one `wasi:http/incoming-handler` component whose behaviour is chosen by the path,
//! so the runtime's limits (timeout, memory, body size, concurrency) can be exercised.

use std::io::Write;
use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

struct Handler;

static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static KEPT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

wasi::http::proxy::export!(Handler);

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let body = request.consume().expect("body consumed once");
    let mut out = Vec::new();
    {
        let stream = body.stream().expect("body stream");
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(_) => break,
            }
        }
    }
    IncomingBody::finish(body);
    out
}

fn header(request: &IncomingRequest, name: &str) -> Option<String> {
    let values = request.headers().get(name);
    values.first().map(|v| String::from_utf8_lossy(v).into_owned())
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A CloudEvent in binary mode: logs one line the tests read back, then, as the env says, sleeps
/// (`SLEEP_MS`), fails with 500 (or `FAIL_STATUS`) until attempt `FAIL_UNTIL_ATTEMPT` (every attempt with
/// `FAIL_ALWAYS`), or replies
/// with an event of type `REPLY_TYPE`.
fn handle_event(request: IncomingRequest, out: ResponseOutparam) {
    let h = |n: &str| header(&request, n).unwrap_or_default();
    let attempt: u64 = h("x-wasmfn-delivery-attempt").parse().unwrap_or(1);
    let data = String::from_utf8_lossy(&read_body(&request)).into_owned();
    println!(
        "event id={} type={} source={} time={} subject={} attempt={attempt} errorcode={} errordata={} now_ms={} data={data}",
        h("ce-id"),
        h("ce-type"),
        h("ce-source"),
        h("ce-time"),
        h("ce-subject"),
        h("ce-knativeerrorcode"),
        h("ce-knativeerrordata"),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()),
    );
    let _ = std::io::stdout().flush();
    if let Some(ms) = env_num("SLEEP_MS") {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    if std::env::var("FAIL_ALWAYS").is_ok() || env_num("FAIL_UNTIL_ATTEMPT").is_some_and(|n| attempt < n) {
        let status = env_num("FAIL_STATUS").map_or(500, |s| s as u16);
        respond(out, status, b"failing on purpose");
        return;
    }
    if let Ok(ty) = std::env::var("REPLY_TYPE") {
        let headers = Fields::new();
        for (k, v) in [
            ("ce-specversion", "1.0".to_string()),
            ("ce-id", format!("reply-{}", h("ce-id"))),
            ("ce-source", "/guest".to_string()),
            ("ce-type", ty),
            ("content-type", "text/plain".to_string()),
        ] {
            let _ = headers.set(k, &[v.into_bytes()]);
        }
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("response body");
        ResponseOutparam::set(out, Ok(response));
        {
            let stream = outgoing.write().expect("body stream");
            stream.blocking_write_and_flush(format!("reply to {}", h("ce-id")).as_bytes()).expect("write body");
        }
        OutgoingBody::finish(outgoing, None).expect("finish body");
        return;
    }
    respond(out, 200, b"");
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::new();
    let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("response body");
    ResponseOutparam::set(out, Ok(response));
    {
        let stream = outgoing.write().expect("body stream");
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).expect("write body");
        }
    }
    OutgoingBody::finish(outgoing, None).expect("finish body");
}

impl Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let full = request.path_with_query().unwrap_or_default();
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        match path {
            "/echo" => {
                let body = read_body(&request);
                respond(out, 200, &body);
            }
            "/path" => respond(out, 200, full.as_bytes()),
            "/env" => {
                let name = query_param(query, "name").unwrap_or("GREETING");
                let value = std::env::var(name).unwrap_or_default();
                respond(out, 200, value.as_bytes());
            }
            "/sleep" => {
                let ms: u64 = query_param(query, "ms").and_then(|v| v.parse().ok()).unwrap_or(100);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                respond(out, 200, b"slept");
            }
            "/partial" => {
                // Sends the head and a first chunk, then spins: the timeout hits mid-body.
                let response = OutgoingResponse::new(Fields::new());
                let outgoing = response.body().expect("response body");
                ResponseOutparam::set(out, Ok(response));
                let stream = outgoing.write().expect("body stream");
                stream.blocking_write_and_flush(b"partial").expect("write body");
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/fetch" => {
                // Outgoing HTTP: GET http(s)://<authority><path> and report the status or the error.
                let authority = query_param(query, "authority").unwrap_or("127.0.0.1");
                let target = query_param(query, "path").unwrap_or("/");
                let scheme = if query_param(query, "scheme") == Some("https") { Scheme::Https } else { Scheme::Http };
                let outgoing = OutgoingRequest::new(Fields::new());
                outgoing.set_scheme(Some(&scheme)).expect("scheme");
                outgoing.set_authority(Some(authority)).expect("authority");
                outgoing.set_path_with_query(Some(target)).expect("path");
                let answer = match outgoing_handler::handle(outgoing, None) {
                    Ok(pending) => {
                        pending.subscribe().block();
                        match pending.get() {
                            Some(Ok(Ok(resp))) => Ok(format!("status {}", resp.status())),
                            Some(Ok(Err(e))) => Err(format!("{e:?}")),
                            other => Err(format!("{other:?}")),
                        }
                    }
                    Err(e) => Err(format!("{e:?}")),
                };
                match answer {
                    Ok(text) => respond(out, 200, text.as_bytes()),
                    Err(text) => respond(out, 502, text.as_bytes()),
                }
            }
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/log" => {
                let lines: u32 = query_param(query, "lines").and_then(|v| v.parse().ok()).unwrap_or(1);
                let mut stdout = std::io::stdout();
                for i in 0..lines {
                    let _ = writeln!(stdout, "guest line {i}");
                }
                let _ = stdout.flush();
                eprintln!("guest stderr line");
                respond(out, 200, b"logged");
            }
            // Module-level state: what a reused instance keeps between requests (`scaling.reuse`).
            "/count" => {
                let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                respond(out, 200, format!("{n}").as_bytes());
            }
            "/trap" => panic!("trapping on purpose"),
            // Returns keeping the outparam unset and its handle alive, as StarlingMonkey does on a second call.
            "/noresponse" => std::mem::forget(out),
            "/grow" => {
                let mb: usize = query_param(query, "mb").and_then(|v| v.parse().ok()).unwrap_or(1);
                let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
                kept.push(vec![1u8; mb << 20]);
                respond(out, 200, format!("kept {} MiB", kept.iter().map(|v| v.len() >> 20).sum::<usize>()).as_bytes());
            }
            // Grows its memory, then waits holding it: a JS handler awaiting a slow fetch, say.
            "/hold" => {
                let mb: usize = query_param(query, "mb").and_then(|v| v.parse().ok()).unwrap_or(1);
                let ms: u64 = query_param(query, "ms").and_then(|v| v.parse().ok()).unwrap_or(100);
                let held = vec![1u8; mb << 20];
                std::thread::sleep(std::time::Duration::from_millis(ms));
                let body = read_body(&request);
                let text = format!("held {} MiB, read {} bytes", std::hint::black_box(&held).len() >> 20, body.len());
                respond(out, 200, text.as_bytes());
            }
            "/status" => {
                let code: u16 = query_param(query, "code").and_then(|v| v.parse().ok()).unwrap_or(500);
                respond(out, code, b"status");
            }
            _ if header(&request, "ce-id").is_some() => handle_event(request, out),
            _ => {
                let version = std::env::var("VERSION").unwrap_or_else(|_| "v0".into());
                let greeting = format!("hello from rust {version}\n");
                // A revision configured to fail (rollback tests) answers every request with this status.
                let status = std::env::var("STATUS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
                respond(out, status, greeting.as_bytes());
            }
        }
    }
}
