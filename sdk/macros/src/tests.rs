//! The expansion and its diagnostics, checked on token streams.

use super::{Kind, expand};
use quote::quote;

fn error_of(kind: Kind, attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
    let out = expand(kind, attr, item).to_string();
    let start = out.find("compile_error").unwrap_or_else(|| panic!("no error in {out}"));
    out[start..].to_string()
}

#[test]
fn expands_to_the_fn_a_type_check_and_a_wasm_export() {
    let out = expand(
        Kind::Http,
        quote!(),
        quote!(
            fn handle(req: Request) -> &'static str {
                "hi"
            }
        ),
    )
    .to_string();
    assert!(out.starts_with("fn handle"), "the fn stays first and untouched: {out}");
    assert!(out.contains(":: wasmfn_sdk :: __private :: check_http (handle)"), "{out}");
    assert!(out.contains("# [cfg (target_arch = \"wasm32\")]"), "{out}");
    assert!(out.contains(":: wasmfn_sdk :: __private :: serve_http (request , out , handle)"), "{out}");
    assert!(out.contains("struct __wasmfn_sdk_one_handler_per_component"), "{out}");

    let out = expand(
        Kind::Event,
        quote!(),
        quote!(
            fn on(e: CloudEvent) -> Result<Option<CloudEvent>> {
                Ok(None)
            }
        ),
    );
    assert!(out.to_string().contains("serve_event (request , out , on)"));
}

#[test]
fn rejects_what_cannot_be_a_handler() {
    let cases = [
        (
            Kind::Http,
            quote!(),
            quote!(
                async fn h(req: Request) -> () {}
            ),
            "handlers are blocking: remove `async`",
        ),
        (
            Kind::Http,
            quote!(),
            quote!(
                fn h() -> () {}
            ),
            "takes exactly one argument, `req: wasmfn_sdk::Request`; found 0",
        ),
        (
            Kind::Event,
            quote!(),
            quote!(
                fn h(a: CloudEvent, b: u8) {}
            ),
            "`event: wasmfn_sdk::CloudEvent`; found 2",
        ),
        (
            Kind::Http,
            quote!(),
            quote!(
                fn h<B>(req: http::Request<B>) {}
            ),
            "cannot be generic",
        ),
        (
            Kind::Http,
            quote!(),
            quote!(
                unsafe fn h(req: Request) {}
            ),
            "cannot be `unsafe`",
        ),
        (
            Kind::Http,
            quote!(path = "/x"),
            quote!(
                fn h(req: Request) {}
            ),
            "#[http] takes no arguments",
        ),
        (
            Kind::Http,
            quote!(),
            quote!(
                #[wasmfn_sdk::event]
                fn h(req: Request) {}
            ),
            "only one of #[http] and #[event]",
        ),
        (
            Kind::Event,
            quote!(),
            quote!(
                struct S;
            ),
            "#[event] goes on a fn",
        ),
    ];
    for (kind, attr, item, expected) in cases {
        let error = error_of(kind, attr, item);
        assert!(error.contains(expected), "{expected:?} not in {error}");
    }
}

#[test]
fn keeps_the_fn_next_to_the_error() {
    let out = expand(
        Kind::Http,
        quote!(),
        quote!(
            async fn h(req: Request) {}
        ),
    )
    .to_string();
    assert!(out.starts_with("async fn h"), "{out}");
    assert!(!out.contains("check_http"), "{out}");
}
