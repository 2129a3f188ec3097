//! Host unit tests: responses, bodies, errors, CloudEvents, the handler macros.

use crate::{
    AttributesReader, Body, CloudEvent, Data, Error, EventBuilder, EventBuilderV10, IntoResponse, Json, Request,
    Response, Result, StatusCode, event, header,
};
use bytes::Bytes;
use serde_json::{Value, json};

fn content_type(response: &Response) -> Option<&str> {
    response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap())
}

fn json_body(response: &Response) -> Value {
    response.body().json().unwrap()
}

#[test]
fn into_response_content_types() {
    let cases: [(Response, u16, Option<&str>, &[u8]); 9] = [
        ("hi".into_response(), 200, Some("text/plain; charset=utf-8"), b"hi"),
        (String::from("hi").into_response(), 200, Some("text/plain; charset=utf-8"), b"hi"),
        (vec![1u8, 2].into_response(), 200, Some("application/octet-stream"), &[1, 2]),
        (Bytes::from_static(b"b").into_response(), 200, Some("application/octet-stream"), b"b"),
        (Body::from("raw").into_response(), 200, None, b"raw"),
        (().into_response(), 200, None, b""),
        (StatusCode::NO_CONTENT.into_response(), 204, None, b""),
        (Json(json!({"a": 1})).into_response(), 200, Some("application/json"), br#"{"a":1}"#),
        (http::Response::new("built").into_response(), 200, None, b"built"),
    ];
    for (response, status, ty, body) in cases {
        assert_eq!(response.status(), status);
        assert_eq!(content_type(&response), ty);
        assert_eq!(response.body().as_bytes(), body);
    }
}

#[test]
fn into_response_tuples() {
    let response = (StatusCode::CREATED, Json(json!([]))).into_response();
    assert_eq!((response.status(), content_type(&response)), (StatusCode::CREATED, Some("application/json")));

    let response =
        (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "text/html"), (header::ETAG, "\"v1\"")], "<p>").into_response();
    assert_eq!(response.status(), 202);
    assert_eq!(content_type(&response), Some("text/html"));
    assert_eq!(response.headers()["etag"], "\"v1\"");

    let response = ([("x-trace", "abc")], "ok").into_response();
    assert_eq!((response.status(), response.headers()["x-trace"].to_str().unwrap()), (StatusCode::OK, "abc"));

    let response = ([("bad header", "v")], "ok").into_response();
    assert_eq!(response.status(), 500);
    assert!(json_body(&response)["error"].as_str().unwrap().contains("invalid response header name"));
}

#[test]
fn into_response_results_and_errors() {
    let ok: Result<&str> = Ok("fine");
    assert_eq!(ok.into_response().status(), 200);

    let err: Result<&str> = Err(Error::with_status(StatusCode::NOT_FOUND, "no such order"));
    let response = err.into_response();
    assert_eq!((response.status(), content_type(&response)), (StatusCode::NOT_FOUND, Some("application/json")));
    assert_eq!(json_body(&response), json!({"error": "no such order"}));

    let custom: std::result::Result<(), (StatusCode, &str)> = Err((StatusCode::CONFLICT, "taken"));
    assert_eq!(custom.into_response().status(), 409);

    // A map with non-string keys cannot be JSON.
    let unserializable = Json(std::collections::HashMap::from([((1, 2), 3)]));
    assert_eq!(unserializable.into_response().status(), 500);
}

#[test]
fn error_conversion_and_status() {
    fn parse(text: &str) -> Result<u8> {
        Ok(text.parse()?)
    }
    let err = parse("300").unwrap_err();
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(err.to_string(), "number too large to fit in target type");
    assert_eq!(Error::new("boom").status(), 500);
    assert_eq!(Error::with_status(StatusCode::BAD_REQUEST, "bad").status(), 400);

    // The source chain is part of the message.
    #[derive(Debug)]
    struct Config(std::num::ParseIntError);
    impl std::fmt::Display for Config {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bad config")
        }
    }
    impl std::error::Error for Config {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let err = Error::from(Config("x".parse::<u8>().unwrap_err()));
    assert_eq!(err.to_string(), "bad config: invalid digit found in string");
}

#[test]
fn body_text_and_json_errors() {
    assert_eq!(Body::from("héllo").text().unwrap(), "héllo");
    let err = Body::from(vec![0xc3, 0x28]).text().unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().starts_with("body is not UTF-8"), "{err}");

    #[derive(serde::Deserialize, Debug)]
    struct Order {
        #[allow(dead_code)]
        qty: u32,
    }
    let err = Body::from(r#"{"qty": "x"}"#).json::<Order>().unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().starts_with("invalid JSON body: invalid type"), "{err}");
    assert!(Body::from(()).json::<Order>().unwrap_err().to_string().contains("EOF"));
    assert_eq!(Body::from(&b"ab"[..]).len(), 2);
}

fn binary_request(headers: &[(&str, &str)], body: &'static str) -> Request {
    let mut builder = http::Request::builder().method("POST").uri("/");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap()
}

const REQUIRED: [(&str, &str); 4] =
    [("ce-specversion", "1.0"), ("ce-id", "42"), ("ce-source", "/orders"), ("ce-type", "com.example.order")];

#[test]
fn binary_mode_event() {
    let mut headers = REQUIRED.to_vec();
    headers.extend([
        ("ce-time", "2024-05-01T12:00:00Z"),
        ("ce-subject", "caf%C3%A9%20au%20lait"),
        ("ce-traceparent", "00-abc-01"),
        ("content-type", "application/json"),
    ]);
    let event = event::from_request(binary_request(&headers, r#"{"qty":2}"#)).unwrap();
    assert_eq!((event.id(), event.source().as_str(), event.ty()), ("42", "/orders", "com.example.order"));
    assert_eq!(event.subject(), Some("café au lait"));
    assert_eq!(event.time().unwrap().to_rfc3339(), "2024-05-01T12:00:00+00:00");
    assert_eq!(event.datacontenttype(), Some("application/json"));
    assert_eq!(event.extension("traceparent").unwrap().to_string(), "00-abc-01");
    assert_eq!(event::data_json::<Value>(&event).unwrap(), json!({"qty": 2}));
}

#[test]
fn structured_mode_event() {
    let body = r#"{"specversion":"1.0","id":"7","source":"https://example.com/s","type":"t",
        "datacontenttype":"application/json","data":{"n":1},"myext":"x"}"#;
    let request = binary_request(&[("content-type", "application/cloudevents+json; charset=utf-8")], body);
    let event = event::from_request(request).unwrap();
    assert_eq!((event.id(), event.ty()), ("7", "t"));
    assert!(matches!(event.data(), Some(Data::Json(_))));
    assert_eq!(event::data_json::<Value>(&event).unwrap(), json!({"n": 1}));
    assert_eq!(event.extension("myext").unwrap().to_string(), "x");
}

fn rejection(request: Request) -> String {
    let err = event::from_request(request).unwrap_err();
    assert_eq!(err.status(), 400);
    err.to_string()
}

#[test]
fn invalid_events_are_400s_naming_the_problem() {
    for missing in ["ce-id", "ce-source", "ce-type"] {
        let headers: Vec<_> = REQUIRED.into_iter().filter(|(name, _)| *name != missing).collect();
        assert_eq!(rejection(binary_request(&headers, "")), format!("invalid CloudEvent: missing {missing}"));
    }
    assert!(rejection(binary_request(&[], "{}")).starts_with("not a CloudEvent: expected ce-specversion"));

    let mut headers = REQUIRED.to_vec();
    headers[0] = ("ce-specversion", "9.9");
    assert_eq!(rejection(binary_request(&headers, "")), "invalid CloudEvent: Invalid specversion 9.9");

    let mut headers = REQUIRED.to_vec();
    headers.push(("ce-time", "yesterday"));
    assert!(rejection(binary_request(&headers, "")).starts_with("invalid CloudEvent: time is not an RFC 3339"));

    let structured = [("content-type", "application/cloudevents+json")];
    let message = rejection(binary_request(&structured, r#"{"specversion":"1.0","source":"/s","type":"t"}"#));
    assert_eq!(message, "invalid CloudEvent: missing field `id`");
    let message = rejection(binary_request(&structured, "not json"));
    assert_eq!(message, "invalid CloudEvent: expected ident at line 1 column 2");

    let batch = [("content-type", "application/cloudevents-batch+json")];
    assert!(rejection(binary_request(&batch, "[]")).contains("batched"));

    let event = EventBuilderV10::new().id("1").source("/s").ty("t").build().unwrap();
    assert_eq!(event::data_json::<Value>(&event).unwrap_err().status(), 400);
}

#[test]
fn reply_is_binary_mode() {
    let reply = EventBuilderV10::new()
        .id("r-1")
        .source("/replies")
        .ty("com.example.reply")
        .subject("naïve \"quote\"")
        .extension("attempt", 2)
        .data("application/json", json!({"ok": true}))
        .build()
        .unwrap();
    let response = event::into_response(reply.clone());
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["ce-specversion"], "1.0");
    assert_eq!(headers["ce-id"], "r-1");
    assert_eq!(headers["ce-source"], "/replies");
    assert_eq!(headers["ce-type"], "com.example.reply");
    assert_eq!(headers["ce-subject"], "na%C3%AFve%20%22quote%22");
    assert_eq!(headers["ce-attempt"], "2");
    assert_eq!(content_type(&response), Some("application/json"));
    assert_eq!(json_body(&response), json!({"ok": true}));

    // Parsing the reply's headers and body gives the event back.
    let (parts, body) = response.into_parts();
    let mut request = Request::new(body);
    *request.headers_mut() = parts.headers;
    let parsed = event::from_request(request).unwrap();
    assert_eq!((parsed.id(), parsed.subject()), (reply.id(), reply.subject()));

    // JSON data without a datacontenttype is sent as application/json.
    let mut untyped = EventBuilderV10::new().id("1").source("/s").ty("t").build().unwrap();
    untyped.set_data_unchecked(json!([1]));
    assert_eq!(content_type(&event::into_response(untyped)), Some("application/json"));
}

#[test]
fn event_handle_maps_results() {
    let request = || binary_request(&REQUIRED, "");
    let echo = |event: CloudEvent| -> Result<Option<CloudEvent>> { Ok(Some(event)) };
    let response = event::handle(request(), echo);
    assert_eq!((response.status(), response.headers()["ce-id"].to_str().unwrap()), (StatusCode::OK, "42"));

    let accept = |_: CloudEvent| -> Result<Option<CloudEvent>> { Ok(None) };
    let response = event::handle(request(), accept);
    assert_eq!((response.status(), response.body().len()), (StatusCode::ACCEPTED, 0));

    let fail = |_: CloudEvent| -> Result<Option<CloudEvent>, std::fmt::Error> { Err(std::fmt::Error) };
    let response = event::handle(request(), fail);
    assert_eq!(response.status(), 500);
    assert_eq!(json_body(&response), json!({"error": "an error occurred when formatting an argument"}));

    let reject = |_: CloudEvent| -> Result<Option<CloudEvent>> {
        Err(Error::with_status(StatusCode::UNPROCESSABLE_ENTITY, "no"))
    };
    assert_eq!(event::handle(request(), reject).status(), 422);

    let response = event::handle(binary_request(&[], ""), accept);
    assert_eq!(response.status(), 400);
    assert!(json_body(&response)["error"].as_str().unwrap().starts_with("not a CloudEvent"));
}

/// The macros leave the fn callable as is.
mod handlers {
    use crate::{CloudEvent, IntoResponse, Json, Request, Result};

    #[crate::http]
    pub fn handle(req: Request) -> impl IntoResponse {
        Json(serde_json::json!({ "path": req.uri().path() }))
    }

    pub mod events {
        use super::*;

        #[crate::event]
        pub fn on_event(event: CloudEvent) -> Result<Option<CloudEvent>> {
            Ok(Some(event))
        }
    }
}

#[test]
fn macro_handlers_stay_callable() {
    let response =
        handlers::handle(http::Request::builder().uri("/a/b?c=1").body(Body::empty()).unwrap()).into_response();
    assert_eq!(json_body(&response), json!({"path": "/a/b"}));
    let response = event::handle(binary_request(&REQUIRED, "hi"), handlers::events::on_event);
    assert_eq!(response.body().as_bytes(), b"hi");
}

#[test]
fn function_info_defaults() {
    // The test process has no WASMFN_* variables.
    let info = crate::function();
    assert_eq!((info.name.as_str(), info.namespace.as_str(), info.memory_limit.as_str()), ("", "default", "128Mi"));
    assert_eq!(info.timeout, std::time::Duration::from_secs(300));
    assert_eq!(crate::env::var("WASMFN_SURELY_UNSET"), None);
}

#[test]
fn client_refuses_on_the_host() {
    let err = crate::client::get("http://127.0.0.1:1/").unwrap_err();
    assert!(err.to_string().contains("only works inside a wasmfn function"), "{err}");
    assert!(crate::client::get("not a url\n").unwrap_err().to_string().starts_with("invalid URL"));
}
