//! Finding an application: by tracking number (the whole number, or the last 8 characters
//! printed large on the receipt) or by NIK, through the keyed index (no record is opened
//! to search). Searches are posted, not put in the address: a NIK must not stay in the
//! shared tablet's browser history.

use super::today::Row;
use super::{render, Layout};
use crate::station::auth::{check_csrf, Authed};
use crate::station::{PageError, Station};
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keliling_shared::{ApplicationId, Nik};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "find.html")]
struct FindPage {
    l: Layout,
    q: String,
    rows: Vec<Row>,
    searched: bool,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct FindForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    q: String,
}

/// The empty search form.
pub async fn page(State(st): State<Station>, Authed(s): Authed) -> Result<Response, PageError> {
    let l = Layout::of(&st, &s, "find", "/find".into()).await?;
    Ok(render(&FindPage {
        searched: false,
        q: String::new(),
        rows: Vec::new(),
        error: None,
        l,
    })?
    .into_response())
}

pub async fn search(
    State(st): State<Station>,
    Authed(s): Authed,
    Form(q): Form<FindForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &q.csrf)?;
    let l = Layout::of(&st, &s, "find", "/find".into()).await?;
    let query: String = q.q.trim().chars().take(64).collect();
    let mut error = None;
    let mut rows = Vec::new();
    if let Ok(id) = ApplicationId::parse(&query) {
        return Ok(Redirect::to(&format!("/applications/{id}")).into_response());
    }
    let digits: String = query.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.len() == 16 && digits.bytes().all(|b| b.is_ascii_digit()) {
        match Nik::parse(&digits) {
            Ok(nik) => {
                let key = st.index_key();
                let found = st.db(move |store| store.find_by_nik(&key, &nik)).await?;
                rows = found.iter().map(|a| Row::of(&st, a, l.t.lang())).collect();
            }
            Err(_) => error = Some(l.t.get("find-bad-nik")),
        }
    } else if query.len() == 8 && query.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        let tail = query.to_ascii_lowercase();
        let found = st.db(move |store| store.find_by_tail(&tail)).await?;
        rows = found.iter().map(|a| Row::of(&st, a, l.t.lang())).collect();
    } else if !query.is_empty() {
        error = Some(l.t.get("find-what"));
    }
    Ok(render(&FindPage {
        searched: !query.is_empty(),
        q: query,
        rows,
        error,
        l,
    })?
    .into_response())
}
