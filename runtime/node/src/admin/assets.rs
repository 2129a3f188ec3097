//! The console's page, embedded in the binary (no CDN, works offline): `/` and `/console/*`. Public like the
//! probes: it holds no data and no secret; everything it shows comes from the admin API, which checks the token
//! and refuses cross-site calls.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// `(path, content type, bytes)` of every asset.
const ASSETS: &[(&str, &str, &str)] = &[
    ("/console/app.js", "text/javascript", include_str!("../../../../console/static/app.js")),
    ("/console/function.js", "text/javascript", include_str!("../../../../console/static/function.js")),
    ("/console/triggers.js", "text/javascript", include_str!("../../../../console/static/triggers.js")),
    ("/console/settings.js", "text/javascript", include_str!("../../../../console/static/settings.js")),
    ("/console/app.css", "text/css", include_str!("../../../../console/static/app.css")),
    ("/console/vendor.js", "text/javascript", include_str!("../../../../console/dist/vendor.js")),
    ("/console/uPlot.min.css", "text/css", include_str!("../../../../console/dist/uPlot.min.css")),
];

const INDEX: &str = include_str!("../../../../console/static/index.html");

/// Only the page's own files; CodeMirror adds `<style>` elements, hence inline styles.
const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// The page's routes.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }));
    for (path, content_type, body) in ASSETS {
        router = router.route(path, get(move || async move { asset(content_type, body) }));
    }
    router
}
