//! Who is asking: the session cookie, the logged-in staff member, CSRF tokens.
//!
//! Cookies are `HttpOnly; SameSite=Strict; Path=/` (and `Secure` under TLS or behind a
//! TLS proxy). Every state-changing form carries the session's CSRF token, compared in
//! constant time; the login form, before there is a session, carries a token that must
//! match its own short-lived cookie (double submit). Requests from another origin are
//! refused before any handler runs ([`refuse_cross_origin`]).

use super::{Console, PageError};
use crate::staff::Session;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use keliling_shared::UnixMillis;
pub use keliling_web::cookies::{
    client, cookie, peer, refuse_cross_origin, same_token, set_cookie,
};

pub const SESSION_COOKIE: &str = "kl_session";
pub const LOGIN_COOKIE: &str = "kl_login";

/// Refuses a form whose CSRF token is not the session's.
pub fn check_csrf(s: &Session, token: &str) -> Result<(), PageError> {
    if same_token(&s.csrf, token) {
        Ok(())
    } else {
        Err(PageError::Csrf)
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
