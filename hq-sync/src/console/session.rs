//! Who is asking: the session cookie, the logged-in staff member, CSRF tokens.
//!
//! Cookies are `HttpOnly; SameSite=Strict; Path=/` (and `Secure` under TLS or behind a
//! TLS proxy). Every state-changing form carries the session's CSRF token, compared in
//! constant time; the login form, before there is a session, carries a token that must
//! match its own short-lived cookie (double submit). Requests from another origin are
//! refused before any handler runs ([`refuse_cross_origin`]).

use super::{Console, PageError};
use crate::staff::Session;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keliling_shared::UnixMillis;
use std::net::SocketAddr;

pub const SESSION_COOKIE: &str = "kl_session";
pub const LOGIN_COOKIE: &str = "kl_login";

/// The value of cookie `name`, if the request carries it.
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

/// Refuses a form whose CSRF token is not the session's.
pub fn check_csrf(s: &Session, token: &str) -> Result<(), PageError> {
    if same_token(&s.csrf, token) {
        Ok(())
    } else {
        Err(PageError::Csrf)
    }
}

/// Where a request came from, for the audit log: address and browser, bounded.
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

/// The logged-in staff member of a request; anything else goes to the login page.
pub struct Authed(pub Session);

#[axum::async_trait]
impl FromRequestParts<Console> for Authed {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Authed, PageError> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(PageError::Login);
        };
        let limits = c.limits();
        let found = c
            .db(move |s| s.session(&token, limits, UnixMillis::now()))
            .await?;
        found.map(Authed).ok_or(PageError::Login)
    }
}

/// The client's address, when the server knows it.
pub fn peer(parts: &Parts) -> Option<SocketAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
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
