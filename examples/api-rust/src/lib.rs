//! A JSON API: `POST /todos` with `{"title": "...", "done": false}` validates the todo and echoes it back with an
//! id; `GET /` describes the API. Bad JSON or a missing title is a 400 with a message.

use serde::{Deserialize, Serialize};
use wasmfn_sdk::{Error, IntoResponse, Json, Method, Request, Result, StatusCode};

#[derive(Deserialize)]
struct NewTodo {
    title: String,
    #[serde(default)]
    done: bool,
}

#[derive(Serialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
    function: String,
}

#[wasmfn_sdk::http]
fn api(req: Request) -> Result<wasmfn_sdk::Response> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => {
            Ok(Json(serde_json::json!({ "usage": "POST /todos {\"title\": \"...\"}" })).into_response())
        }
        (&Method::POST, "/todos") => {
            let new: NewTodo = req.body().json()?;
            if new.title.trim().is_empty() {
                return Err(Error::with_status(StatusCode::BAD_REQUEST, "title must not be empty"));
            }
            // A stable id from the title, so the example needs no storage.
            let id = new.title.bytes().fold(1469598103934665603u64, |h, b| (h ^ b as u64).wrapping_mul(1099511628211));
            let todo = Todo { id, title: new.title, done: new.done, function: wasmfn_sdk::function().name };
            Ok((StatusCode::CREATED, Json(todo)).into_response())
        }
        _ => Err(Error::with_status(
            StatusCode::NOT_FOUND,
            format!("no route for {} {}", req.method(), req.uri().path()),
        )),
    }
}
