//! A hello-world function: answers every request with a greeting and the path it was asked for.

use wasmfn_sdk::{IntoResponse, Request};

#[wasmfn_sdk::http]
fn hello(req: Request) -> impl IntoResponse {
    let greeting = wasmfn_sdk::env::var("GREETING").unwrap_or_else(|| "Hello".into());
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{greeting} from wasmfn (Rust)! You asked for {path}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_with_the_path() {
        let req = wasmfn_sdk::http::Request::get("/x?y=1").body("".into()).unwrap();
        let resp = hello(req).into_response();
        assert_eq!(resp.body().text().unwrap(), "Hello from wasmfn (Rust)! You asked for /x?y=1\n");
    }
}
