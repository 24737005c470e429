//! For supervisors: the audit log (who did what, who looked at whom), filtered by actor,
//! bus or application, newest first with keyset pages; and the quarantine (what HQ set
//! aside, and why). Reading the audit log is itself audited.

use super::{render, shown, tr, when, Me};
use crate::audit::{Entry, Filter};
use crate::console::i18n::Tr;
use crate::console::session::Authed;
use crate::console::{Console, PageError};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use keliling_shared::UnixMillis;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    bus: String,
    #[serde(default)]
    application: String,
    #[serde(default)]
    before: String,
}

pub struct AuditRow {
    pub seq: i64,
    pub when: String,
    pub actor: String,
    pub action: String,
    pub target: Option<(String, String)>,
    pub change: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    t: Tr<'static>,
    me: Option<Me>,
    csrf: String,
    nav: &'static str,
    back: String,
    q: AuditQuery,
    rows: Vec<AuditRow>,
    next: Option<String>,
    chain_ok: bool,
}

const PAGE: usize = 100;

pub async fn page(
    State(c): State<Console>,
    Authed(s): Authed,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    if !s.staff.is_supervisor() {
        return Err(PageError::Forbidden);
    }
    let t = tr(s.staff.language).ok_or_else(|| PageError::Internal("no texts".into()))?;
    let offset = c.config().utc_offset_minutes;
    let nonempty = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_owned());
    let f = Filter {
        actor: nonempty(&q.actor),
        bus_id: nonempty(&q.bus),
        application_id: nonempty(&q.application),
        before: q.before.parse().ok(),
        limit: PAGE,
    };
    let actor = s.staff.username.to_string();
    let detail = [
        ("actor", &q.actor),
        ("bus", &q.bus),
        ("application", &q.application),
    ]
    .iter()
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| format!("{k}={}", v.trim()))
    .collect::<Vec<_>>()
    .join(" ");
    let (rows, chain) = c
        .db(move |db| {
            db.audit(
                &actor,
                &Entry::new("audit_viewed").detail(detail),
                UnixMillis::now(),
            )?;
            Ok::<_, crate::store::HqStoreError>((db.audit_log(&f)?, db.verify_audit()?))
        })
        .await?;
    let next = (rows.len() == PAGE).then(|| {
        let last = rows.last().map_or(0, |r| r.seq);
        format!(
            "/audit?actor={}&bus={}&application={}&before={last}",
            super::queue::urlencode(&q.actor),
            super::queue::urlencode(&q.bus),
            super::queue::urlencode(&q.application)
        )
    });
    let rows = rows
        .into_iter()
        .map(|r| AuditRow {
            seq: r.seq,
            when: when(r.at, offset),
            actor: shown(&r.actor),
            action: t.get(&format!("audit-{}", r.entry.action.replace('_', "-"))),
            target: match (&r.entry.bus_id, &r.entry.application_id) {
                (Some(b), Some(a)) => Some((b.clone(), a.clone())),
                _ => None,
            },
            change: match (&r.entry.from_state, &r.entry.to_state) {
                (Some(f), Some(to)) => format!(
                    "{} → {}",
                    super::detail::state_label(&t, f),
                    super::detail::state_label(&t, to)
                ),
                _ => String::new(),
            },
            detail: shown(&r.entry.detail),
        })
        .collect();
    let page = AuditPage {
        me: Some(Me::of(&s.staff)),
        csrf: s.csrf.clone(),
        nav: "audit",
        back: "/audit".into(),
        q,
        rows,
        next,
        chain_ok: chain.is_none(),
        t,
    };
    Ok(render(&page)?.into_response())
}

pub struct QuarantineRow {
    pub when: String,
    pub bus: String,
    pub topic: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "quarantine.html")]
struct QuarantinePage {
    t: Tr<'static>,
    me: Option<Me>,
    csrf: String,
    nav: &'static str,
    back: String,
    rows: Vec<QuarantineRow>,
}

pub async fn quarantine(
    State(c): State<Console>,
    Authed(s): Authed,
) -> Result<Response, PageError> {
    if !s.staff.is_supervisor() {
        return Err(PageError::Forbidden);
    }
    let t = tr(s.staff.language).ok_or_else(|| PageError::Internal("no texts".into()))?;
    let offset = c.config().utc_offset_minutes;
    let entries = c.db(move |db| db.quarantined(200)).await?;
    let rows = entries
        .into_iter()
        .map(|e| QuarantineRow {
            when: when(e.received_at, offset),
            bus: e
                .claimed_bus
                .map(|b| shown(&b))
                .unwrap_or_else(|| "?".into()),
            topic: shown(&e.topic),
            reason: shown(&e.reason),
        })
        .collect();
    let page = QuarantinePage {
        me: Some(Me::of(&s.staff)),
        csrf: s.csrf.clone(),
        nav: "quarantine",
        back: "/quarantine".into(),
        rows,
        t,
    };
    Ok(render(&page)?.into_response())
}
