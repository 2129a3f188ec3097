//! `native-hello ADDR`: serves `Hello from wasmfn (Rust)! You asked for PATH` (the Rust hello example's
//! answer) over HTTP/1.1 with hyper on a multi-threaded Tokio runtime: what `wasmfn serve` would reach if
//! running the function cost nothing. Prints `listening on http://ADDR` once bound.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let body = format!("Hello from wasmfn (Rust)! You asked for {path}\n");
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(hello);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
