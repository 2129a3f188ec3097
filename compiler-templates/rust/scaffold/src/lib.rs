//! A wasmfn function: greets the `name` from the query string or the JSON body.

use serde::{Deserialize, Serialize};
use wasmfn_sdk::{IntoResponse, Json, Request};

#[derive(Deserialize, Default)]
struct Greeting {
    name: Option<String>,
}

#[derive(Serialize)]
struct Reply {
    message: String,
    function: String,
}

#[wasmfn_sdk::http]
fn handle(req: Request) -> impl IntoResponse {
    let from_query = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("name=")));
    let from_body = req.body().json::<Greeting>().ok().and_then(|g| g.name);
    let name = from_query.map(str::to_string).or(from_body).unwrap_or_else(|| "world".into());
    Json(Reply { message: format!("Hello, {name}!"), function: wasmfn_sdk::function().name })
}
