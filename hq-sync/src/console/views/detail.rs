//! One application: every field, the ID photo and scans, warnings, times, the claim, the
//! history. Every view is written to the audit log.

use super::queue::status_key;
use super::{render, shown, suspicious, tr, when, Me};
use crate::audit::Entry;
use crate::console::i18n::Tr;
use crate::console::session::{self, Authed};
use crate::console::{Console, PageError};
use crate::review::{ClaimOutcome, Detail};
use crate::staff::Lang;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keliling_shared::nik::NikWarning;
use keliling_shared::{ApplicationId, BusId, UnixMillis};
use serde::Deserialize;

/// Clock skew beyond which the bus's times are flagged.
const SKEW_FLAG_MS: i64 = 5 * 60 * 1000;

pub struct Field {
    pub label: String,
    pub value: String,
    pub flagged: bool,
}

pub struct Attachment {
    pub label: String,
    /// Where the stored file is served, once HQ holds it.
    pub src: Option<String>,
    pub is_image: bool,
    /// While it is still on its way.
    pub waiting: Option<String>,
    pub size: String,
}

pub struct HistoryRow {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub change: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "detail.html")]
struct DetailPage {
    t: Tr<'static>,
    me: Option<Me>,
    csrf: String,
    nav: &'static str,
    back: String,
    base: String,
    name: String,
    name_flagged: bool,
    tracking: String,
    bus: String,
    status: &'static str,
    service: String,
    agency: String,
    applicant: Vec<Field>,
    fields: Vec<Field>,
    nik_warnings: Vec<String>,
    photo: Option<Attachment>,
    documents: Vec<Attachment>,
    captured: String,
    received: String,
    completed: Option<String>,
    skew: Option<String>,
    skew_flagged: bool,
    claim_holder: Option<String>,
    claim_until: String,
    i_hold_claim: bool,
    collisions: Vec<String>,
    history: Vec<HistoryRow>,
}

fn parse_ids(bus: &str, id: &str) -> Result<(BusId, ApplicationId), PageError> {
    let bus = BusId::parse(bus).map_err(|_| PageError::NotFound)?;
    let id = ApplicationId::parse(id).map_err(|_| PageError::NotFound)?;
    Ok((bus, id))
}

fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.0} KiB", (bytes as f64 / 1024.0).ceil())
    }
}

fn warning_text(t: &Tr<'_>, w: &NikWarning) -> String {
    match w {
        NikWarning::BirthDateMismatch {
            nik_day,
            nik_month,
            nik_year2,
        } => t.with(
            "warn-nik-birth-date",
            &[(
                "date",
                &format!("{nik_day:02}-{nik_month:02}-..{nik_year2:02}"),
            )],
        ),
        NikWarning::SexMismatch { nik_sex } => t.with(
            "warn-nik-sex",
            &[(
                "sex",
                &t.get(match nik_sex {
                    keliling_shared::Sex::Male => "sex-male",
                    keliling_shared::Sex::Female => "sex-female",
                }),
            )],
        ),
    }
}

pub async fn page(
    State(c): State<Console>,
    Authed(s): Authed,
    Path((bus, id)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (bus, id) = parse_ids(&bus, &id)?;
    let staff = s.staff.clone();
    let visible: Vec<String> = c
        .visible_services(&staff)
        .iter()
        .map(|s| s.to_string())
        .collect();
    let actor = staff.username.to_string();
    let (b, i) = (bus.clone(), id);
    let detail: Option<Detail> = c
        .db(move |db| {
            let now = UnixMillis::now();
            // The access check comes first: another agency's application is "not found".
            match db.application_service(&b, &i)? {
                Some(svc) if visible.contains(&svc) => {}
                _ => return Ok(None),
            }
            db.audit(
                &actor,
                &Entry::application("viewed", b.as_str(), &i.to_string()),
                now,
            )?;
            db.detail(&b, &i, now)
        })
        .await?;
    let d = detail.ok_or(PageError::NotFound)?;
    let t = tr(staff.language).ok_or_else(|| PageError::Internal("no texts".into()))?;
    let offset = c.config().utc_offset_minutes;
    let cat = c.catalogue();
    let svc = cat.services.iter().find(|x| x.code == d.app.service);
    let en = staff.language == Lang::En;
    let service = svc
        .map(|x| {
            if en {
                x.name_en.clone()
            } else {
                x.name.clone()
            }
        })
        .unwrap_or_else(|| d.app.service.to_string());
    let agency = svc
        .and_then(|x| cat.agencies.iter().find(|a| a.code == x.agency))
        .map(|a| {
            if en {
                a.name_en.clone()
            } else {
                a.name.clone()
            }
        })
        .unwrap_or_default();
    let a = &d.app.applicant;
    let field = |label: String, value: &str| Field {
        label,
        flagged: suspicious(value),
        value: shown(value),
    };
    let fmt_date = time::macros::format_description!("[year]-[month]-[day]");
    let mut applicant = vec![
        field(t.get("field-full-name"), a.full_name.as_str()),
        field(t.get("field-nik"), a.nik.as_str()),
        field(
            t.get("field-date-of-birth"),
            &a.date_of_birth.format(&fmt_date).unwrap_or_default(),
        ),
        field(
            t.get("field-sex"),
            &t.get(match a.sex {
                keliling_shared::Sex::Male => "sex-male",
                keliling_shared::Sex::Female => "sex-female",
            }),
        ),
        field(t.get("field-address"), a.address.as_str()),
    ];
    if let Some(p) = &a.phone {
        applicant.push(field(t.get("field-phone"), p.as_str()));
    }
    applicant.push(field(t.get("field-village"), d.app.stop.village.as_str()));
    if let Some(g) = &d.app.stop.gps {
        applicant.push(field(
            t.get("field-gps"),
            &format!("{:.5}, {:.5}", g.lat(), g.lon()),
        ));
    }
    applicant.push(field(t.get("field-operator"), d.app.operator.as_str()));
    let fields = d
        .app
        .fields
        .iter()
        .map(|(k, v)| {
            let label = svc
                .and_then(|x| x.fields.iter().find(|f| f.name == k.as_str()))
                .map(|f| f.label.clone())
                .unwrap_or_else(|| k.as_str().to_owned());
            field(label, v.as_str())
        })
        .collect();
    let base = format!("/applications/{}/{}", d.app.bus_id, d.app.id);
    let attachment = |b: &crate::review::BlobState| Attachment {
        label: match b.kind.strip_prefix("doc:") {
            Some(doc) => svc
                .and_then(|x| x.documents.iter().find(|f| f.name == doc))
                .map(|f| f.label.clone())
                .unwrap_or_else(|| doc.to_owned()),
            None => t.get("attachment-photo"),
        },
        src: b
            .stored
            .then(|| format!("{base}/blobs/{}", b.sha256.to_hex())),
        is_image: b.media_type.starts_with("image/"),
        waiting: (!b.stored).then(|| match b.chunks {
            Some((have, of)) => t.of("attachment-chunks", u64::from(have), u64::from(of)),
            None => t.get("attachment-on-bus"),
        }),
        size: size(b.size),
    };
    let photo = d
        .blobs
        .iter()
        .find(|b| b.kind == "id_photo")
        .map(attachment);
    let documents = d
        .blobs
        .iter()
        .filter(|b| b.kind != "id_photo")
        .map(attachment)
        .collect();
    let skew_flagged = d.clock_skew_ms.is_some_and(|s| s.abs() > SKEW_FLAG_MS);
    let skew = d.clock_skew_ms.map(|ms| {
        if ms.abs() < 60_000 {
            t.get("skew-in-sync")
        } else {
            let mins = ms as f64 / 60_000.0;
            t.with("skew-minutes", &[("minutes", &format!("{mins:+.0}"))])
        }
    });
    let history = d
        .history
        .iter()
        .map(|r| HistoryRow {
            when: when(r.at, offset),
            actor: r.actor.clone(),
            action: t.get(&format!("audit-{}", r.entry.action.replace('_', "-"))),
            change: match (&r.entry.from_state, &r.entry.to_state) {
                (Some(f), Some(to)) => format!("{f} → {to}"),
                _ => String::new(),
            },
            detail: shown(&r.entry.detail),
        })
        .collect();
    let page = DetailPage {
        me: Some(Me::of(&staff)),
        csrf: s.csrf.clone(),
        nav: "queue",
        back: "/applications".into(),
        name: shown(a.full_name.as_str()),
        name_flagged: suspicious(a.full_name.as_str()),
        tracking: d.app.id.to_string(),
        bus: d.app.bus_id.to_string(),
        status: status_key(d.status),
        service,
        agency,
        applicant,
        fields,
        nik_warnings: d
            .app
            .warnings()
            .iter()
            .map(|w| warning_text(&t, w))
            .collect(),
        photo,
        documents,
        captured: when(d.app.captured_at, offset),
        received: when(d.hq_received_at, offset),
        completed: d.completed_at.map(|x| when(x, offset)),
        skew,
        skew_flagged,
        claim_holder: d.claim.as_ref().map(|c| c.display_name.clone()),
        claim_until: d
            .claim
            .as_ref()
            .map(|c| when(c.until, offset))
            .unwrap_or_default(),
        i_hold_claim: d.claim.as_ref().is_some_and(|c| c.staff_id == staff.id),
        collisions: d.collisions.clone(),
        history,
        base,
        t,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn claim(
    State(c): State<Console>,
    Authed(s): Authed,
    Path((bus, id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&s, &f.csrf)?;
    let (bus, id) = parse_ids(&bus, &id)?;
    let staff = s.staff.clone();
    let visible: Vec<String> = c
        .visible_services(&staff)
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (b, i) = (bus.clone(), id);
    let out = c
        .db(move |db| {
            match db.application_service(&b, &i)? {
                Some(svc) if visible.contains(&svc) => {}
                _ => return Ok(ClaimOutcome::NotFound),
            }
            db.claim_application(&b, &i, &staff, UnixMillis::now())
        })
        .await?;
    match out {
        ClaimOutcome::NotFound => Err(PageError::NotFound),
        // Held by someone else: the page shows who.
        ClaimOutcome::Claimed { .. } | ClaimOutcome::HeldBy(_) => {
            Ok(Redirect::to(&format!("/applications/{bus}/{id}")).into_response())
        }
    }
}

pub async fn release(
    State(c): State<Console>,
    Authed(s): Authed,
    Path((bus, id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&s, &f.csrf)?;
    let (bus, id) = parse_ids(&bus, &id)?;
    let staff = s.staff.clone();
    let (b, i) = (bus.clone(), id);
    c.db(move |db| db.release_claim(&b, &i, &staff, UnixMillis::now()))
        .await?;
    Ok(Redirect::to(&format!("/applications/{bus}/{id}")).into_response())
}
