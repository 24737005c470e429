//! The review queue: filters, counts per status, keyset pages.

use super::{masked_nik, render, shown, suspicious, tr, when, Me};
use crate::audit::Entry;
use crate::console::i18n::Tr;
use crate::console::session::Authed;
use crate::console::{Console, PageError};
use crate::review::{Cursor, Order, QueueFilter, QueueStatus, Search};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::response::Response;
use keliling_shared::{BusId, ServiceCode, UnixMillis};
use serde::Deserialize;

/// The queue's query string, as typed: every value is parsed before use, and kept as
/// typed so the form shows it back.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub bus: String,
    #[serde(default)]
    pub village: String,
    #[serde(default)]
    pub agency: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub warnings: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub order: String,
    #[serde(default)]
    pub after: String,
}

impl QueueQuery {
    /// The query string of these filters with `status` (and no cursor).
    fn with_status(&self, status: &str) -> String {
        let pairs = [
            ("status", status),
            ("bus", &self.bus),
            ("village", &self.village),
            ("agency", &self.agency),
            ("service", &self.service),
            ("from", &self.from),
            ("to", &self.to),
            ("warnings", &self.warnings),
            ("q", &self.q),
            ("order", &self.order),
        ];
        let mut s = String::new();
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            if !s.is_empty() {
                s.push('&');
            }
            s.push_str(k);
            s.push('=');
            s.push_str(&urlencode(v));
        }
        s
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A day (`YYYY-MM-DD`) as HQ-local midnight.
fn day_start(s: &str, offset_minutes: i32) -> Option<UnixMillis> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s.trim(), &fmt).ok()?;
    let secs = d.midnight().assume_utc().unix_timestamp() - i64::from(offset_minutes) * 60;
    Some(UnixMillis(secs.saturating_mul(1000)))
}

pub struct Row {
    pub href: String,
    pub tracking: String,
    pub name: String,
    pub name_flagged: bool,
    pub nik: String,
    pub service: String,
    pub village: String,
    pub bus: String,
    pub received: String,
    pub status: &'static str,
    pub warnings: bool,
    pub claimed_by: Option<String>,
}

pub struct Tab {
    pub key: &'static str,
    pub status: &'static str,
    pub count: u64,
    pub href: String,
    pub active: bool,
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    t: Tr<'static>,
    me: Option<Me>,
    csrf: String,
    nav: &'static str,
    q: QueueQuery,
    tabs: Vec<Tab>,
    total: u64,
    rows: Vec<Row>,
    buses: Vec<Choice>,
    villages: Vec<Choice>,
    agencies: Vec<Choice>,
    services: Vec<Choice>,
    next: Option<String>,
    first: Option<String>,
    notice: Option<String>,
    back: String,
    /// The export link's query, for supervisors only.
    csv_query: Option<String>,
}

pub async fn page(
    State(c): State<Console>,
    Authed(s): Authed,
    Query(q): Query<QueueQuery>,
) -> Result<Response, PageError> {
    let staff = s.staff.clone();
    let t = tr(staff.language).ok_or_else(|| PageError::Internal("no texts".into()))?;
    let offset = c.config().utc_offset_minutes;
    let cat = c.catalogue();
    let mut notice = None;

    let (f, bad_date) = filter_of(&c, &c.visible_services(&staff), &q, 50);
    if bad_date {
        notice = Some(t.get("queue-bad-date"));
    }
    let actor = staff.username.to_string();
    let (page, counts, buses, villages) = c
        .db(move |db| {
            let now = UnixMillis::now();
            if let Some(Search::Nik(n)) = &f.search {
                // Who looked for whom: every NIK search is in the audit log.
                db.audit(&actor, &Entry::new("nik_searched").detail(n.as_str()), now)?;
            }
            let page = db.queue(&f, now)?;
            let counts = db.queue_counts(&f)?;
            let buses = db.bus_ids()?;
            let villages = db.villages(200)?;
            Ok::<_, crate::store::HqStoreError>((page, counts, buses, villages))
        })
        .await?;

    let active = QueueStatus::parse(&q.status);
    let mut tabs = vec![Tab {
        key: "status-all",
        status: "",
        count: counts.values().sum(),
        href: format!("/applications?{}", q.with_status("")),
        active: active.is_none(),
    }];
    for st in QueueStatus::ALL {
        tabs.push(Tab {
            key: status_key(st),
            status: st.as_str(),
            count: counts.get(&st).copied().unwrap_or(0),
            href: format!("/applications?{}", q.with_status(st.as_str())),
            active: active == Some(st),
        });
    }
    let total = match active {
        Some(st) => counts.get(&st).copied().unwrap_or(0),
        None => counts.values().sum(),
    };
    let service_name = |code: &str| {
        cat.services
            .iter()
            .find(|s| s.code.as_str() == code)
            .map(|s| match staff.language {
                crate::staff::Lang::Id => s.name.clone(),
                crate::staff::Lang::En => s.name_en.clone(),
            })
            .unwrap_or_else(|| code.to_owned())
    };
    let rows = page
        .rows
        .iter()
        .map(|r| Row {
            href: format!("/applications/{}/{}", r.bus_id, r.id),
            tracking: r.id.to_string(),
            name: shown(&r.applicant_name),
            name_flagged: suspicious(&r.applicant_name),
            nik: masked_nik(&r.nik),
            service: service_name(&r.service),
            village: shown(&r.village),
            bus: r.bus_id.to_string(),
            received: when(r.hq_received_at, offset),
            status: status_key(r.status),
            warnings: r.has_warnings,
            claimed_by: r.claimed_by.clone(),
        })
        .collect();
    let base = q.with_status(&q.status);
    let next = page.next.as_ref().map(|cur| {
        format!(
            "/applications?{}{}after={}",
            base,
            if base.is_empty() { "" } else { "&" },
            urlencode(&cur.to_string())
        )
    });
    let first = (!q.after.is_empty()).then(|| format!("/applications?{base}"));
    let choice = |value: String, label: String, current: &str| Choice {
        selected: value == current,
        value,
        label,
    };
    let visible_agencies: Vec<Choice> = cat
        .agencies
        .iter()
        .filter(|a| staff.in_agency(&a.code))
        .map(|a| {
            let label = match staff.language {
                crate::staff::Lang::Id => a.name.clone(),
                crate::staff::Lang::En => a.name_en.clone(),
            };
            choice(a.code.clone(), label, &q.agency)
        })
        .collect();
    let visible_services: Vec<Choice> = c
        .visible_services(&staff)
        .iter()
        .map(|code| choice(code.to_string(), service_name(code.as_str()), &q.service))
        .collect();
    let back = format!("/applications?{}", q.with_status(&q.status));
    let csv_query = staff.is_supervisor().then(|| q.with_status(&q.status));
    let page = QueuePage {
        csv_query,
        me: Some(Me::of(&staff)),
        csrf: s.csrf.clone(),
        nav: "queue",
        tabs,
        total,
        rows,
        buses: buses
            .into_iter()
            .map(|b| choice(b.clone(), b, &q.bus))
            .collect(),
        villages: villages
            .into_iter()
            .map(|v| choice(v.clone(), shown(&v), &q.village))
            .collect(),
        agencies: visible_agencies,
        services: visible_services,
        next,
        first,
        notice,
        back,
        q,
        t,
    };
    Ok(render(&page)?.into_response())
}

/// The filter a query string asks for, within `visible` (the services the asker may
/// see); true when a date was given but is not one. Shared by the queue page, its CSV
/// export and the JSON API, so all three select alike.
pub fn filter_of(
    c: &Console,
    visible: &[ServiceCode],
    q: &QueueQuery,
    limit: usize,
) -> (QueueFilter, bool) {
    let cat = c.catalogue();
    let offset = c.config().utc_offset_minutes;
    let mut services = visible.to_vec();
    if !q.agency.is_empty() {
        services.retain(|code| {
            cat.services
                .iter()
                .any(|s| &s.code == code && s.agency == q.agency)
        });
    }
    if !q.service.is_empty() {
        services.retain(|code| code.as_str() == q.service);
    }
    let f = QueueFilter {
        services,
        status: QueueStatus::parse(&q.status),
        bus: BusId::parse(&q.bus).ok(),
        village: (!q.village.is_empty()).then(|| q.village.clone()),
        received_from: day_start(&q.from, offset),
        received_before: day_start(&q.to, offset)
            .map(|d| UnixMillis(d.0.saturating_add(86_400_000))),
        warnings_only: q.warnings == "1",
        search: Search::parse(&q.q),
        order: if q.order == "oldest" {
            Order::Oldest
        } else {
            Order::Newest
        },
        after: q.after.parse::<Cursor>().ok(),
        limit,
    };
    let bad_date = (!q.from.is_empty() && f.received_from.is_none())
        || (!q.to.is_empty() && f.received_before.is_none());
    (f, bad_date)
}

/// The most rows one CSV export holds.
pub const MAX_EXPORT_ROWS: usize = 100_000;

/// A CSV cell: quoted, and a leading `= + - @` (a formula to a spreadsheet) neutralised.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The filtered queue as CSV (no photos), for supervisors. NIKs are whole only for a role
/// that may see them ([`crate::staff::Staff::may_see_full_nik`]), masked otherwise; every
/// export is in the audit log with its filter and size.
pub async fn export_csv(
    State(c): State<Console>,
    Authed(s): Authed,
    Query(q): Query<QueueQuery>,
) -> Result<Response, PageError> {
    let staff = s.staff.clone();
    // Exports are a supervisor's (the role that may take data out of the console).
    if !staff.is_supervisor() {
        return Err(PageError::Forbidden);
    }
    let (mut f, _) = filter_of(&c, &c.visible_services(&staff), &q, crate::review::MAX_PAGE);
    f.after = None;
    let offset = c.config().utc_offset_minutes;
    let actor = staff.username.to_string();
    let detail = format!("csv {}", q.with_status(&q.status));
    let rows = c
        .db(move |db| {
            let now = UnixMillis::now();
            let mut rows = Vec::new();
            loop {
                let page = db.queue(&f, now)?;
                rows.extend(page.rows);
                match page.next {
                    Some(next) if rows.len() < MAX_EXPORT_ROWS => f.after = Some(next),
                    _ => break,
                }
            }
            rows.truncate(MAX_EXPORT_ROWS);
            db.audit(
                &actor,
                &Entry::new("exported").detail(format!("{detail}: {} rows", rows.len())),
                now,
            )?;
            Ok::<_, crate::store::HqStoreError>(rows)
        })
        .await?;
    let mut out = String::from(
        "tracking_number,bus,received_at,captured_at,service,village,applicant_name,nik,status,nik_warnings\r\n",
    );
    for r in &rows {
        let nik = if staff.may_see_full_nik() {
            r.nik.clone()
        } else {
            masked_nik(&r.nik)
        };
        let line = [
            r.id.to_string(),
            r.bus_id.to_string(),
            when(r.hq_received_at, offset),
            when(r.captured_at, offset),
            r.service.clone(),
            r.village.clone(),
            r.applicant_name.clone(),
            nik,
            r.status.as_str().to_owned(),
            if r.has_warnings { "yes" } else { "no" }.to_owned(),
        ]
        .iter()
        .map(|c| csv_cell(c))
        .collect::<Vec<_>>()
        .join(",");
        out.push_str(&line);
        out.push_str("\r\n");
    }
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"keliling-{}.csv\"",
                    when(UnixMillis::now(), offset).replace([' ', ':'], "-")
                ),
            ),
        ],
        out,
    )
        .into_response())
}

/// The text key of a status's name.
pub fn status_key(s: QueueStatus) -> &'static str {
    match s {
        QueueStatus::WaitingPhoto => "status-waiting_photo",
        QueueStatus::Pending => "status-pending",
        QueueStatus::AwaitingCheck => "status-awaiting_check",
        QueueStatus::InfoRequested => "status-info_requested",
        QueueStatus::Approved => "status-approved",
        QueueStatus::Rejected => "status-rejected",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_text_in_both_languages() {
        let i = crate::console::i18n::I18n::new(&crate::console::CATALOGUES).unwrap();
        for lang in crate::staff::Lang::ALL {
            let keys = i.keys(lang);
            for st in QueueStatus::ALL {
                assert!(
                    keys.iter().any(|k| k == status_key(st)),
                    "{}",
                    status_key(st)
                );
            }
        }
    }

    #[test]
    fn dates_and_links() {
        assert_eq!(
            day_start("1970-01-02", 7 * 60),
            Some(UnixMillis((86_400 - 7 * 3600) * 1000))
        );
        assert_eq!(day_start("2026-13-01", 0), None);
        let q = QueueQuery {
            q: "Siti & <b>".into(),
            ..QueueQuery::default()
        };
        assert_eq!(
            q.with_status("pending"),
            "status=pending&q=Siti%20%26%20%3Cb%3E"
        );
    }
}
