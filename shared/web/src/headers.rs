//! Security headers on every response, as one layer (never per page, so no page can
//! forget them).
//!
//! - A strict CSP: only the site's own scripts, styles and images; no inline script,
//!   no framing, forms only to the site itself.
//! - `nosniff`, no referrer outside the site, no caching of pages that carry personal data.
//! - A permissions policy per site (the bus station may use the tablet's camera, the
//!   console nothing).
//! - HSTS when served over TLS.

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

pub const PAGE_CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// For photos and scans served on their own: nothing in them may run, even if a browser
/// were made to render one as a document.
pub const BLOB_CSP: &str = "sandbox; default-src 'none'; img-src 'self'; frame-ancestors 'none'";

/// For pages whose script talks to the site (autosave, the sync banner): [`PAGE_CSP`]
/// and `connect-src 'self'`.
pub const PAGE_CSP_CONNECT: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What differs between the sites.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The pages' `Content-Security-Policy` (a response may set its own).
    pub csp: &'static str,
    /// `Permissions-Policy`, e.g. `camera=(), microphone=(), geolocation=()`.
    pub permissions: &'static str,
}

impl Policy {
    /// [`PAGE_CSP`]; no camera, microphone or location.
    pub const NOTHING: Policy = Policy {
        csp: PAGE_CSP,
        permissions: "camera=(), microphone=(), geolocation=()",
    };
}

/// The layer: `axum::middleware::from_fn_with_state(policy, headers)`.
pub async fn headers(State(policy): State<Policy>, req: Request, next: Next) -> Response {
    let tls = req
        .extensions()
        .get::<crate::serve::Transport>()
        .is_some_and(|t| t.tls);
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // How long the server took, for operators and the benchmarks (`keliling-bench
    // --only console`): handler start to response, store work included.
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        h.insert("server-timing", v);
    }
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(policy.csp),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on form posts, and the
    // cross-origin check could no longer tell our own forms from a sandboxed attacker.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static(policy.permissions),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}
