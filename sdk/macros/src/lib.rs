//! Attribute macros of `wasmfn-sdk`: `#[http]` and `#[event]`. Use them through `wasmfn_sdk`, which documents them;
//! the expansion refers to `::wasmfn_sdk`.
//!
//! Both keep the marked fn as it is and add:
//! - everywhere, a call-free type check of the fn against the handler signature, so a wrong signature also fails
//!   host builds and tests;
//! - a marker item that makes a second handler in the same module a "defined multiple times" error (handlers in
//!   different modules collide on the component's export symbol instead);
//! - on `wasm32` only, the `wasi:http/incoming-handler` export that serves each request with the fn.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::spanned::Spanned;
use syn::{Error, FnArg, ItemFn};

#[derive(Clone, Copy)]
enum Kind {
    Http,
    Event,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Event => "event",
        }
    }

    fn argument(self) -> &'static str {
        match self {
            Kind::Http => "req: wasmfn_sdk::Request",
            Kind::Event => "event: wasmfn_sdk::CloudEvent",
        }
    }
}

/// Marks the fn `fn(Request) -> impl IntoResponse` that handles every HTTP request (see `wasmfn_sdk::http`).
#[proc_macro_attribute]
pub fn http(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Http, attr.into(), item.into()).into()
}

/// Marks the fn `fn(CloudEvent) -> Result<Option<CloudEvent>, E>` that handles every CloudEvent (see
/// `wasmfn_sdk::event`).
#[proc_macro_attribute]
pub fn event(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Event, attr.into(), item.into()).into()
}

fn expand(kind: Kind, attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let func: ItemFn = match syn::parse2(item) {
        Ok(func) => func,
        Err(e) => {
            let message = format!("#[{}] goes on a fn: {e}", kind.name());
            return Error::new(e.span(), message).to_compile_error();
        }
    };
    if let Err(e) = check(kind, &attr, &func) {
        // Keep the fn so the only error is ours, not a cascade of "cannot find function".
        let e = e.to_compile_error();
        return quote! { #func #e };
    }

    let name = &func.sig.ident;
    let (check, serve) = match kind {
        Kind::Http => (quote!(check_http), quote!(serve_http)),
        Kind::Event => (quote!(check_event), quote!(serve_event)),
    };
    // `Span::call_site()`: a duplicate marker is reported at the second attribute.
    let marker = syn::Ident::new("__wasmfn_sdk_one_handler_per_component", Span::call_site());
    quote! {
        #func

        #[doc(hidden)]
        #[allow(dead_code, non_camel_case_types)]
        struct #marker;

        const _: () = {
            #[allow(dead_code)]
            fn check() {
                ::wasmfn_sdk::__private::#check(#name);
            }
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct Handler;

            impl ::wasmfn_sdk::__private::Guest for Handler {
                fn handle(
                    request: ::wasmfn_sdk::__private::IncomingRequest,
                    out: ::wasmfn_sdk::__private::ResponseOutparam,
                ) {
                    ::wasmfn_sdk::__private::#serve(request, out, #name);
                }
            }

            ::wasmfn_sdk::__private::wasi::http::proxy::export!(Handler);
        };
    }
}

/// Rejects what cannot be a handler, each error spanned at the offending part.
fn check(kind: Kind, attr: &TokenStream2, func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let name = kind.name();
    if !attr.is_empty() {
        return Err(Error::new(attr.span(), format!("#[{name}] takes no arguments")));
    }
    if let Some(other) =
        func.attrs.iter().find(|a| a.path().segments.last().is_some_and(|s| s.ident == "http" || s.ident == "event"))
    {
        return Err(Error::new(other.span(), "a fn can have only one of #[http] and #[event]"));
    }
    if let Some(asyncness) = sig.asyncness {
        return Err(Error::new(
            asyncness.span(),
            format!("#[{name}] handlers are blocking: remove `async` (an instance serves one request at a time)"),
        ));
    }
    if let Some(unsafety) = sig.unsafety {
        return Err(Error::new(unsafety.span(), format!("a #[{name}] handler cannot be `unsafe`")));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(Error::new(sig.generics.span(), format!("a #[{name}] handler cannot be generic")));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(Error::new(variadic.span(), format!("a #[{name}] handler cannot be variadic")));
    }
    if let Some(FnArg::Receiver(receiver)) = sig.inputs.first() {
        return Err(Error::new(receiver.span(), format!("a #[{name}] handler is a free fn, not a method")));
    }
    if sig.inputs.len() != 1 {
        let span = if sig.inputs.is_empty() { sig.paren_token.span.join() } else { sig.inputs.span() };
        return Err(Error::new(
            span,
            format!(
                "a #[{name}] handler takes exactly one argument, `{}`; found {}",
                kind.argument(),
                sig.inputs.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
