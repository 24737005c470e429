//! Who is at the screen: an operator signed in with their PIN.
//!
//! Sessions live in memory only (a restart of `bus-node run` asks for the bus passphrase
//! anyway). A session locks after `[station] idle_lock_mins` without a request, and
//! "switch operator" ends it at once: the next operator taps their name and types their
//! PIN. The cookie is `HttpOnly; SameSite=Strict` (and `Secure` under TLS); every form
//! carries the session's CSRF token.

use super::{PageError, Station};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use keliling_web::cookies;
use keliling_web::secrets::{random_token, token_sha256};
use keliling_web::Lang;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "kl_station";
/// The most sessions kept (tablets and reloads); the idlest go first.
const MAX_SESSIONS: usize = 64;

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct OpSession {
    pub operator_id: i64,
    pub name: String,
    pub csrf: String,
    pub lang: Lang,
    last_seen: Instant,
}

/// The live sessions, by the SHA-256 of their token.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, OpSession>>);

impl Sessions {
    /// Starts a session; returns the cookie's token.
    pub fn start(&self, operator_id: i64, name: String, lang: Lang) -> String {
        let token = random_token();
        let s = OpSession {
            operator_id,
            name,
            csrf: random_token(),
            lang,
            last_seen: Instant::now(),
        };
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= MAX_SESSIONS {
                if let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(k, _)| k.clone())
                {
                    m.remove(&oldest);
                }
            }
            m.insert(token_sha256(&token), s);
        }
        token
    }

    /// The session of `token`, touched, unless it has been idle longer than `idle`.
    pub fn get(&self, token: &str, idle: Duration) -> Option<OpSession> {
        let key = token_sha256(token);
        let mut m = self.0.lock().ok()?;
        let live = m.get(&key).is_some_and(|s| s.last_seen.elapsed() <= idle);
        if !live {
            m.remove(&key);
            return None;
        }
        let s = m.get_mut(&key)?;
        s.last_seen = Instant::now();
        Some(s.clone())
    }

    /// The session of `token` without touching it: the page's own polling (the sync
    /// banner) must not keep an unattended screen unlocked.
    pub fn peek(&self, token: &str, idle: Duration) -> Option<OpSession> {
        let m = self.0.lock().ok()?;
        m.get(&token_sha256(token))
            .filter(|s| s.last_seen.elapsed() <= idle)
            .cloned()
    }

    pub fn end(&self, token: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&token_sha256(token));
        }
    }

    pub fn set_lang(&self, token: &str, lang: Lang) {
        if let Ok(mut m) = self.0.lock() {
            if let Some(s) = m.get_mut(&token_sha256(token)) {
                s.lang = lang;
            }
        }
    }
}

/// The signed-in operator of a request; anything else goes to the PIN screen.
pub struct Authed(pub OpSession);

#[axum::async_trait]
impl FromRequestParts<Station> for Authed {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, st: &Station) -> Result<Authed, PageError> {
        let token = cookies::cookie(&parts.headers, SESSION_COOKIE).ok_or(PageError::Login)?;
        let idle = idle_limit(st);
        let s = st.sessions().get(&token, idle).ok_or(PageError::Login)?;
        // A disabled operator is signed out at their next request.
        let id = s.operator_id;
        if st.db(move |store| store.operator(id)).await?.is_none() {
            st.sessions().end(&token);
            return Err(PageError::Login);
        }
        Ok(Authed(s))
    }
}

/// How long a session may sit untouched: `[station] idle_lock_mins`.
pub fn idle_limit(st: &Station) -> Duration {
    Duration::from_secs(st.config().idle_lock_mins.max(1) * 60)
}

/// A form that carries nothing but its CSRF token (approve, retake, discard, lock, …).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// Refuses a form whose CSRF token is not the session's.
pub fn check_csrf(s: &OpSession, token: &str) -> Result<(), PageError> {
    if cookies::same_token(&s.csrf, token) {
        Ok(())
    } else {
        Err(PageError::Csrf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeking_does_not_keep_a_session_alive() {
        let s = Sessions::default();
        let token = s.start(1, "Maria".into(), Lang::Id);
        std::thread::sleep(Duration::from_millis(30));
        assert!(s.peek(&token, Duration::from_secs(1)).is_some());
        // The peek did not touch it: idle since the start, so past a 20 ms limit.
        assert!(s.get(&token, Duration::from_millis(20)).is_none());
        assert!(
            s.peek(&token, Duration::from_secs(1)).is_none(),
            "expired sessions go"
        );
        let other = s.start(2, "Yosef".into(), Lang::En);
        assert_eq!(
            s.get(&other, Duration::from_secs(1)).map(|o| o.operator_id),
            Some(2)
        );
        s.end(&other);
        assert!(s.get(&other, Duration::from_secs(1)).is_none());
        assert!(s.get("not a token", Duration::from_secs(1)).is_none());
    }
}
