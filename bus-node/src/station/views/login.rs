//! The PIN screen: tap your name, type your PIN. Also locking the screen (switching
//! operator) and the language.

use super::{render, tr, when};
use crate::operators::{Operator, Pin, PinCheck};
use crate::station::auth::{check_csrf, Authed, CsrfForm, SESSION_COOKIE};
use crate::station::{PageError, Station};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keliling_shared::UnixMillis;
use keliling_web::{cookies, Lang, Tr};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: Tr<'static>,
    other_lang: &'static str,
    lead: String,
    operators: Vec<Tile>,
    error: Option<String>,
}

struct Tile {
    id: i64,
    name: String,
    initial: char,
    checked: bool,
}

impl Tile {
    fn of(o: &Operator, chosen: Option<i64>) -> Tile {
        Tile {
            id: o.id,
            name: o.name.as_str().to_owned(),
            initial: o.name.as_str().chars().next().unwrap_or('?'),
            checked: chosen == Some(o.id),
        }
    }
}

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    lang: Option<String>,
    op: Option<i64>,
}

async fn show(
    st: &Station,
    lang: Lang,
    chosen: Option<i64>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let operators = st.db(|s| s.operators(true)).await?;
    let chosen = chosen.or_else(|| (operators.len() == 1).then(|| operators[0].id));
    let t = tr(lang)?;
    Ok(render(&LoginPage {
        lead: t.arg("login-lead", "bus", st.bus_id().as_str()),
        t,
        other_lang: if lang == Lang::Id { "en" } else { "id" },
        operators: operators.iter().map(|o| Tile::of(o, chosen)).collect(),
        error,
    })?
    .into_response())
}

pub async fn page(
    State(st): State<Station>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, PageError> {
    let lang = q
        .lang
        .as_deref()
        .and_then(|l| Lang::parse(l).ok())
        .unwrap_or_default();
    show(&st, lang, q.op, None).await
}

#[derive(Deserialize)]
pub struct LoginForm {
    operator: Option<i64>,
    pin: String,
    #[serde(default)]
    lang: String,
}

pub async fn submit(
    State(st): State<Station>,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    let lang = Lang::parse(&f.lang).unwrap_or_default();
    let t = tr(lang)?;
    let Some(op) = f.operator else {
        return show(&st, lang, None, Some(t.get("login-choose"))).await;
    };
    let Ok(pin) = Pin::parse(&f.pin) else {
        return show(&st, lang, Some(op), Some(t.get("login-pin-format"))).await;
    };
    let check = st
        .db(move |s| s.check_pin(op, &pin, UnixMillis::now()))
        .await?;
    match check {
        PinCheck::Ok(o) => {
            let token = st.sessions().start(o.id, o.name.as_str().to_owned(), lang);
            tracing::info!(operator = %o.name.as_str(), "station: operator signed in");
            Ok((
                [(
                    header::SET_COOKIE,
                    cookies::set_cookie(SESSION_COOKIE, &token, st.secure_cookies(), None),
                )],
                Redirect::to("/"),
            )
                .into_response())
        }
        PinCheck::Wrong { left } => {
            tracing::info!(operator = op, left, "station: wrong PIN");
            show(&st, lang, Some(op), Some(t.n("login-wrong-pin", left))).await
        }
        PinCheck::Locked { until } => {
            let at = when(until, st.config().utc_offset_minutes);
            show(
                &st,
                lang,
                Some(op),
                Some(t.arg("login-locked", "until", &at)),
            )
            .await
        }
    }
}

/// Locks the screen: the session ends, the PIN screen shows.
pub async fn lock(
    State(st): State<Station>,
    Authed(s): Authed,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    if let Some(token) = cookies::cookie(&headers, SESSION_COOKIE) {
        st.sessions().end(&token);
    }
    Ok((
        [(
            header::SET_COOKIE,
            cookies::set_cookie(SESSION_COOKIE, "", st.secure_cookies(), Some(0)),
        )],
        Redirect::to(&format!("/login?lang={}", s.lang.as_str())),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct LangForm {
    csrf: String,
    lang: String,
    #[serde(default)]
    back: String,
}

pub async fn language(
    State(st): State<Station>,
    Authed(s): Authed,
    headers: HeaderMap,
    Form(f): Form<LangForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let lang = Lang::parse(&f.lang).map_err(|e| PageError::BadRequest(e.to_string()))?;
    if let Some(token) = cookies::cookie(&headers, SESSION_COOKIE) {
        st.sessions().set_lang(&token, lang);
    }
    Ok(Redirect::to(local_path(&f.back)).into_response())
}

/// `back` when it is a path of this site, else `/`: never an open redirect (browsers read
/// `\` as `/`), and nothing that is not a valid header value.
fn local_path(back: &str) -> &str {
    let ok = back.starts_with('/')
        && !back.starts_with("//")
        && back.len() <= 200
        && back.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if ok {
        back
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_paths_of_the_station_are_gone_back_to() {
        use super::local_path;
        assert_eq!(local_path("/drafts/abc#photo"), "/drafts/abc#photo");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/%0A\n",
            "/a b",
            "",
        ] {
            assert_eq!(local_path(bad), "/", "{bad:?}");
        }
    }
}
