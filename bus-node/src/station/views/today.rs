//! Today: the applications taken today with where each stands, drafts waiting to be
//! finished, and HQ's latest decisions (to tell citizens who come back).

use super::{render, start_of_today, when, Layout};
use crate::drafts::DraftSummary;
use crate::lookup::Listed;
use crate::station::auth::Authed;
use crate::station::{PageError, Station};
use crate::store::OutboxState;
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};

/// One line of a list of applications, ready to show.
pub struct Row {
    pub id: String,
    pub short_id: String,
    pub service: String,
    pub captured: String,
    /// Text key of where it stands.
    pub state_key: &'static str,
    /// CSS class of that state.
    pub state_class: &'static str,
}

impl Row {
    pub fn of(st: &Station, l: &Listed, lang: &str) -> Row {
        let (state_key, state_class) = state_of(l);
        let id = l.id.to_string();
        Row {
            short_id: id[id.len() - 8..].to_owned(),
            id,
            service: service_name(st, &l.service, lang),
            captured: when(l.captured_at, st.config().utc_offset_minutes),
            state_key,
            state_class,
        }
    }
}

/// The text key and class of an application's state: HQ's decision when there is one.
pub fn state_of(l: &Listed) -> (&'static str, &'static str) {
    match (l.decision.as_deref(), l.state) {
        (Some("approved"), _) => ("decision-approved", "ok"),
        (Some("rejected"), _) => ("decision-rejected", "bad"),
        (Some(_), _) => ("decision-info_requested", "warn"),
        (None, OutboxState::Queued) => ("state-saved", "wait"),
        (None, OutboxState::RecordAcked) => ("state-sent", "wait"),
        (None, OutboxState::Delivered) => ("state-confirmed", "info"),
        (None, OutboxState::Rejected) => ("state-rejected", "bad"),
    }
}

/// A service's name in the page's language (its code when the catalogue lacks it).
pub fn service_name(st: &Station, code: &str, lang: &str) -> String {
    st.catalogue()
        .services
        .iter()
        .find(|s| s.code.as_str() == code)
        .map(|s| {
            if lang == "en" {
                s.name_en.clone()
            } else {
                s.name.clone()
            }
        })
        .unwrap_or_else(|| code.to_owned())
}

pub struct DraftRow {
    pub id: String,
    pub service: String,
    pub operator: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "today.html")]
struct TodayPage {
    l: Layout,
    rows: Vec<Row>,
    drafts: Vec<DraftRow>,
    decided: Vec<Row>,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    total: usize,
    waiting: usize,
    confirmed: usize,
    decided: usize,
}

pub async fn page(State(st): State<Station>, Authed(s): Authed) -> Result<Response, PageError> {
    let l = Layout::of(&st, &s, "today", "/".into()).await?;
    let since = start_of_today(st.config().utc_offset_minutes);
    let (today, drafts, decided): (Vec<Listed>, Vec<DraftSummary>, Vec<Listed>) = st
        .db(move |store| {
            Ok::<_, crate::store::StoreError>((
                store.captured_since(since, 500)?,
                store.drafts()?,
                store.decided(20)?,
            ))
        })
        .await?;
    let lang = l.t.lang();
    let mut counts = Counts {
        total: today.len(),
        ..Counts::default()
    };
    for a in &today {
        match (a.decision.is_some(), a.state) {
            (true, _) => counts.decided += 1,
            (false, OutboxState::Delivered) => counts.confirmed += 1,
            (false, OutboxState::Queued | OutboxState::RecordAcked) => counts.waiting += 1,
            _ => {}
        }
    }
    let page = TodayPage {
        rows: today.iter().map(|a| Row::of(&st, a, lang)).collect(),
        drafts: drafts
            .iter()
            .map(|d| DraftRow {
                id: d.id.to_string(),
                service: service_name(&st, &d.service, lang),
                operator: d.operator.clone(),
                updated: when(d.updated_at, st.config().utc_offset_minutes),
            })
            .collect(),
        decided: decided.iter().map(|a| Row::of(&st, a, lang)).collect(),
        counts,
        l,
    };
    Ok(render(&page)?.into_response())
}

/// The banner's figures, for the page's script to refresh them while the operator works;
/// `stamp` changes when any application's state does.
/// Read without touching the session: the poll must not keep an unattended screen
/// unlocked (a locked session gets 401, and the page goes to the PIN screen).
pub async fn status_json(
    State(st): State<Station>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    let session = keliling_web::cookies::cookie(&headers, crate::station::auth::SESSION_COOKIE)
        .and_then(|t| {
            st.sessions()
                .peek(&t, crate::station::auth::idle_limit(&st))
        });
    let Some(s) = session else {
        return Ok(axum::http::StatusCode::UNAUTHORIZED.into_response());
    };
    let l = Layout::of(&st, &s, "today", "/".into()).await?;
    let decisions = st.db(|store| store.decision_count()).await?;
    let b = &l.banner;
    let stamp = format!("{}-{}-{}-{}", b.queued, b.waiting, b.rejected, decisions);
    Ok(Json(serde_json::json!({
        "banner": b,
        "link": l.banner_link(),
        "waiting": l.banner_waiting(),
        "stamp": stamp,
    }))
    .into_response())
}
