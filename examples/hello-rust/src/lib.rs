//! A hello-world function: answers every request with a greeting and the path it was asked for.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Hello;

wasi::http::proxy::export!(Hello);

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
        let path = request.path_with_query().unwrap_or_default();
        let body = format!("{greeting} from wasmfn (Rust)! You asked for {path}\n");

        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let outgoing = response.body().expect("response body");
        ResponseOutparam::set(out, Ok(response));
        let stream = outgoing.write().expect("body stream");
        stream.blocking_write_and_flush(body.as_bytes()).expect("write body");
        drop(stream);
        OutgoingBody::finish(outgoing, None).expect("finish body");
    }
}
