//! Login, logout, and the language switch.

use super::{render, tr, Me};
use crate::console::i18n::Tr;
use crate::console::session::{self, Authed, LOGIN_COOKIE, SESSION_COOKIE};
use crate::console::{Console, PageError};
use crate::staff::{Lang, LoginOutcome, Password};
use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keliling_shared::UnixMillis;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: Tr<'static>,
    me: Option<Me>,
    csrf: String,
    nav: &'static str,
    back: String,
    token: String,
    username: String,
    error: Option<String>,
    other_lang: &'static str,
}

#[derive(Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

fn login_page(
    lang: Lang,
    username: String,
    error: Option<String>,
    secure: bool,
    status: StatusCode,
) -> Result<Response, PageError> {
    let t = tr(lang).ok_or_else(|| PageError::Internal("no texts".into()))?;
    let token = crate::staff::random_token();
    let page = LoginPage {
        t,
        me: None,
        csrf: String::new(),
        nav: "login",
        back: String::new(),
        token: token.clone(),
        username,
        error,
        other_lang: match lang {
            Lang::Id => "en",
            Lang::En => "id",
        },
    };
    Ok((
        status,
        [(
            header::SET_COOKIE,
            session::set_cookie(LOGIN_COOKIE, &token, secure, Some(1800)),
        )],
        render(&page)?,
    )
        .into_response())
}

pub async fn page(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Result<Response, PageError> {
    if let Some(token) = session::cookie(&headers, SESSION_COOKIE) {
        let limits = c.limits();
        let live = c
            .db(move |s| s.session(&token, limits, UnixMillis::now()))
            .await?;
        if live.is_some() {
            return Ok(Redirect::to("/applications").into_response());
        }
    }
    let lang = q
        .lang
        .as_deref()
        .and_then(|l| Lang::parse(l).ok())
        .unwrap_or_default();
    login_page(
        lang,
        String::new(),
        None,
        c.secure_cookies(),
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    lang: String,
}

pub async fn submit(
    State(c): State<Console>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same_token(&expected, &f.token) {
        return Err(PageError::Csrf);
    }
    let lang = Lang::parse(&f.lang).unwrap_or_default();
    let client = session::client(&headers, Some(addr));
    let username = f.username.trim().chars().take(64).collect::<String>();
    let password = Password::new(f.password);
    let name = username.clone();
    let cl = client.clone();
    let outcome = c
        .db(move |s| s.check_login(&name, &password, &cl, UnixMillis::now()))
        .await?;
    let t = tr(lang).ok_or_else(|| PageError::Internal("no texts".into()))?;
    match outcome {
        LoginOutcome::Ok(staff) => {
            let staff = *staff;
            let sess = c
                .db(move |s| s.create_session(&staff, &client, UnixMillis::now()))
                .await?;
            let secure = c.secure_cookies();
            let mut res = Redirect::to("/applications").into_response();
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                session::set_cookie(SESSION_COOKIE, &sess.token, secure, None),
            );
            h.append(
                header::SET_COOKIE,
                session::set_cookie(LOGIN_COOKIE, "", secure, Some(0)),
            );
            Ok(res)
        }
        LoginOutcome::Refused => {
            // Slows down guessing from one browser; the lockout stops it.
            tokio::time::sleep(Duration::from_millis(400)).await;
            login_page(
                lang,
                username,
                Some(t.get("login-refused")),
                c.secure_cookies(),
                StatusCode::UNAUTHORIZED,
            )
        }
        LoginOutcome::Locked { until } => {
            let minutes = (until.0.saturating_sub(UnixMillis::now().0) / 60_000).max(1);
            login_page(
                lang,
                username,
                Some(t.n("login-locked", minutes)),
                c.secure_cookies(),
                StatusCode::TOO_MANY_REQUESTS,
            )
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(c): State<Console>,
    Authed(s): Authed,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&s, &f.csrf)?;
    c.db(move |db| db.end_session(&s, UnixMillis::now()))
        .await?;
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, "", c.secure_cookies(), Some(0)),
    );
    Ok(res)
}

#[derive(Deserialize)]
pub struct LanguageForm {
    #[serde(default)]
    csrf: String,
    lang: String,
    #[serde(default)]
    back: String,
}

/// Only a path on this console: never an open redirect.
fn local_path(p: &str) -> &str {
    if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && p.len() < 2048 {
        p
    } else {
        "/applications"
    }
}

pub async fn language(
    State(c): State<Console>,
    Authed(s): Authed,
    Form(f): Form<LanguageForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&s, &f.csrf)?;
    let lang = Lang::parse(&f.lang).map_err(|e| PageError::BadRequest(e.to_string()))?;
    let id = s.staff.id;
    c.db(move |db| db.set_staff_language(id, lang)).await?;
    Ok(Redirect::to(local_path(&f.back)).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn redirects_stay_on_the_console() {
        assert_eq!(super::local_path("/applications?x=1"), "/applications?x=1");
        assert_eq!(super::local_path("//evil.example/"), "/applications");
        assert_eq!(super::local_path("https://evil.example/"), "/applications");
        assert_eq!(super::local_path("/\\evil"), "/applications");
    }
}
