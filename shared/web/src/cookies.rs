//! Cookies, CSRF tokens and the cross-origin check.
//!
//! Cookies are `HttpOnly; SameSite=Strict; Path=/` (and `Secure` under TLS or behind a
//! TLS proxy). Every state-changing form carries its session's CSRF token, compared in
//! constant time; requests from another origin are refused before any handler runs
//! ([`refuse_cross_origin`]).

use axum::extract::{ConnectInfo, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The value of cookie `name`, if the request carries it (at most 128 bytes).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A `Set-Cookie` value; `max_age` in seconds, 0 to clear.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    // Names and values are ours (hex tokens): always a valid header value.
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Equal in constant time (tokens of the same length).
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where a request came from, for an audit log: address and browser, bounded.
pub fn client(headers: &HeaderMap, addr: Option<SocketAddr>) -> String {
    let ua: String = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    match addr {
        Some(a) => format!("{} {ua}", a.ip()),
        None => ua,
    }
}

/// The client's address, when the server knows it.
pub fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

/// Whether the request is htmx-style partial: sent by the page's own script
/// (`X-Requested-With: fetch`), which wants a fragment or JSON, not a whole page.
pub fn is_fetch(headers: &HeaderMap) -> bool {
    headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes() == b"fetch")
}

/// Refuses a state-changing request sent from another site: `Sec-Fetch-Site` says so
/// (every current browser sends it), or `Origin` names another host than `Host`.
pub async fn refuse_cross_origin(req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let h = req.headers();
        let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let cross_site = matches!(site, Some("cross-site") | Some("same-site"));
        let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
        let origin_host = h
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .filter(|o| *o != "null")
            .map(|o| o.split_once("://").map_or(o, |(_, rest)| rest));
        let other_origin = matches!((origin_host, host), (Some(o), Some(h)) if o != h)
            || h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) == Some("null");
        if cross_site || other_origin {
            tracing::warn!(?site, ?origin_host, ?host, "cross-origin form refused");
            return (StatusCode::FORBIDDEN, "cross-origin request refused").into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; kl=abc; b=2"));
        assert_eq!(cookie(&h, "kl").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "k"), None);
        let long = format!("kl={}", "x".repeat(129));
        h.insert(header::COOKIE, HeaderValue::from_str(&long).unwrap());
        assert_eq!(cookie(&h, "kl"), None);
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("a", "ab"));
        let c = set_cookie("kl", "v", true, Some(0));
        assert_eq!(
            c.to_str().unwrap(),
            "kl=v; Path=/; HttpOnly; SameSite=Strict; Secure; Max-Age=0"
        );
    }
}
