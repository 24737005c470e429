//! One application: every field, the ID photo and scans, warnings, times, the claim, the
//! history. Every view is written to the audit log.

use super::queue::status_key;
use super::{render, shown, suspicious, tr, when, Me};
use crate::audit::Entry;
use crate::console::i18n::Tr;
use crate::console::session::{self, Authed};
use crate::console::{Console, PageError};
use crate::decisions::{Action, DecisionError, DecisionRow, Delivery};
use crate::review::{ClaimOutcome, Detail, QueueStatus};
use crate::staff::Lang;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keliling_shared::decision::{Need, Outcome, ReasonCode};
use keliling_shared::nik::NikWarning;
use keliling_shared::{ApplicationId, BusId, Text, UnixMillis};
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
    photo_advice: Vec<String>,
    /// "Approved by the applicant on the bus's screen, after N retakes".
    photo_approval: Option<String>,
    /// The application this one amends, and those that amend it (same bus).
    amends: Option<String>,
    amendments: Vec<String>,
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
    decisions: Vec<DecisionView>,
    can_decide: bool,
    can_claim: bool,
    can_approve: bool,
    decide_hint: Option<String>,
    reasons: Vec<Choice>,
    needs: Vec<Choice>,
    can_check: bool,
    check_summary: Option<String>,
    notice: Option<String>,
    error: Option<String>,
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

pub struct DecisionView {
    pub version: u32,
    pub kind_key: &'static str,
    pub kind_class: &'static str,
    pub summary: String,
    pub by: String,
    pub at: String,
    pub status_key: &'static str,
    pub delivery_key: &'static str,
    pub delivery_class: &'static str,
    pub delivery_when: String,
}

/// The console texts a decision's refusal may show (`?error=` is only ever one of these).
const ERROR_KEYS: &[&str] = &[
    "decide-not-found",
    "decide-claimed-by-other",
    "decide-claim-first",
    "decide-awaiting-check",
    "decide-supervisor-only",
    "decide-photo-missing",
    "decide-invalid",
    "check-nothing",
    "check-own",
];

/// And the notices after a successful action (`?done=`).
const DONE_KEYS: &[&str] = &[
    "done-decided",
    "done-awaiting-check",
    "done-checked",
    "done-declined",
];

#[derive(Deserialize, Default)]
pub struct Flash {
    #[serde(default)]
    error: String,
    #[serde(default)]
    done: String,
}

fn outcome_summary(t: &Tr<'_>, o: &Outcome, svc: Option<&keliling_shared::Service>) -> String {
    match o {
        Outcome::Approved { note } => note.as_ref().map(|n| shown(n.as_str())).unwrap_or_default(),
        Outcome::Rejected { code, reason, note } => {
            let mut s = format!("{} [{code}]", shown(reason.as_str()));
            if let Some(n) = note {
                s.push_str(" — ");
                s.push_str(&shown(n.as_str()));
            }
            s
        }
        Outcome::InfoRequested { message, needs } => {
            let mut s = shown(message.as_str());
            let list: Vec<String> = needs
                .iter()
                .map(|n| match n {
                    Need::NewPhoto => t.get("need-photo"),
                    Need::Document(d) => svc
                        .and_then(|x| x.documents.iter().find(|f| f.name == d.as_str()))
                        .map(|f| f.label.clone())
                        .unwrap_or_else(|| d.as_str().to_owned()),
                })
                .collect();
            if !list.is_empty() {
                s.push_str(" — ");
                s.push_str(&t.arg("decision-needs", "list", &list.join(", ")));
            }
            s
        }
    }
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

/// The photo station's retake advice, as HQ's reviewers read it.
fn advice_text(t: &Tr<'_>, a: &keliling_shared::wire::PhotoAdvice) -> String {
    use keliling_shared::wire::{BackgroundNote, PhotoAdvice};
    match a {
        PhotoAdvice::TooSmall {
            width,
            height,
            min_width,
            min_height,
        } => t.arg2(
            "advice-too-small",
            "size",
            &format!("{width} x {height}"),
            "min",
            &format!("{min_width} x {min_height}"),
        ),
        PhotoAdvice::TooDark => t.get("advice-too-dark"),
        PhotoAdvice::TooBright => t.get("advice-too-bright"),
        PhotoAdvice::Blurred => t.get("advice-blurred"),
        PhotoAdvice::WrongBackground { expected } => t.arg(
            "advice-wrong-background",
            "colour",
            &t.get(match expected {
                BackgroundNote::Red => "colour-red",
                BackgroundNote::Blue => "colour-blue",
                BackgroundNote::White => "colour-white",
            }),
        ),
    }
}

/// A review or delivery state as staff read it.
pub fn state_label(t: &Tr<'_>, s: &str) -> String {
    match s {
        "pending" | "approved" | "rejected" | "info_requested" | "awaiting_check"
        | "waiting_photo" => t.get(&format!("status-{s}")),
        "held" | "waiting" | "sent" | "confirmed" | "superseded" => t.get(&format!("delivery-{s}")),
        other => other.to_owned(),
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
    Query(flash): Query<Flash>,
) -> Result<Response, PageError> {
    let (bus, id) = parse_ids(&bus, &id)?;
    let staff = s.staff.clone();
    let visible = c.visible_services(&staff);
    let actor = staff.username.to_string();
    let (b, i) = (bus.clone(), id);
    let detail: Option<(Detail, Vec<DecisionRow>)> = c
        .db(move |db| {
            let now = UnixMillis::now();
            // The access check comes first: another agency's application is "not found".
            if !db.is_visible(&b, &i, &visible)? {
                return Ok(None);
            }
            db.audit(
                &actor,
                &Entry::application("viewed", b.as_str(), &i.to_string()),
                now,
            )?;
            let Some(d) = db.detail(&b, &i, now)? else {
                return Ok(None);
            };
            let decisions = db.decisions_of(&b, &i)?;
            Ok::<_, crate::store::HqStoreError>(Some((d, decisions)))
        })
        .await?;
    let (d, decision_rows) = detail.ok_or(PageError::NotFound)?;
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
                (Some(f), Some(to)) => format!("{} → {}", state_label(&t, f), state_label(&t, to)),
                _ => String::new(),
            },
            detail: shown(&r.entry.detail),
        })
        .collect();
    let holds = d.claim.as_ref().is_some_and(|c| c.staff_id == staff.id);
    let claimed_by_other = d.claim.as_ref().is_some_and(|c| c.staff_id != staff.id);
    let supervisor = staff.is_supervisor();
    let (can_decide, decide_hint) = match d.status {
        QueueStatus::AwaitingCheck => (false, Some(t.get("decide-awaiting-check"))),
        _ if claimed_by_other => (false, Some(t.get("decide-claimed-by-other"))),
        QueueStatus::Pending | QueueStatus::WaitingPhoto if holds || supervisor => (true, None),
        QueueStatus::Pending | QueueStatus::WaitingPhoto => {
            (false, Some(t.get("decide-claim-first")))
        }
        _ if supervisor => (true, Some(t.get("decide-override-hint"))),
        _ => (false, Some(t.get("decide-supervisor-only"))),
    };
    let reasons = svc
        .map(|x| {
            cat.reject_reasons(x)
                .map(|r| Choice {
                    value: r.code.clone(),
                    label: if en {
                        r.label_en.clone()
                    } else {
                        r.label.clone()
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    let mut needs = vec![Choice {
        value: "photo".into(),
        label: t.get("need-photo"),
    }];
    if let Some(x) = svc {
        needs.extend(x.documents.iter().map(|doc| Choice {
            value: format!("doc:{}", doc.name),
            label: doc.label.clone(),
        }));
    }
    let pending_check = decision_rows
        .iter()
        .rev()
        .find(|r| r.status == "awaiting_check");
    let can_check = pending_check.is_some_and(|r| r.maker_id != staff.id)
        && d.status == QueueStatus::AwaitingCheck;
    let check_summary = pending_check.map(|r| {
        t.arg2(
            "check-summary",
            "name",
            &r.decided_by,
            "what",
            &outcome_summary(&t, &r.outcome, svc),
        )
    });
    let decisions = decision_rows
        .iter()
        .rev()
        .map(|r| {
            let (delivery_key, delivery_class, delivery_when) = match r.delivery {
                Delivery::Held => ("delivery-held", "held", String::new()),
                Delivery::Waiting => ("delivery-waiting", "waiting", String::new()),
                Delivery::Sent => (
                    "delivery-sent",
                    "sent",
                    r.sent_at.map(|x| when(x, offset)).unwrap_or_default(),
                ),
                Delivery::Confirmed => (
                    "delivery-confirmed",
                    "confirmed",
                    r.confirmed_at.map(|x| when(x, offset)).unwrap_or_default(),
                ),
                Delivery::Superseded => ("delivery-superseded", "superseded", String::new()),
            };
            DecisionView {
                version: r.version,
                kind_key: match r.outcome {
                    Outcome::Approved { .. } => "status-approved",
                    Outcome::Rejected { .. } => "status-rejected",
                    Outcome::InfoRequested { .. } => "status-info_requested",
                },
                kind_class: r.outcome.kind(),
                summary: outcome_summary(&t, &r.outcome, svc),
                by: match &r.checked_by {
                    Some(c) => t.arg2("decision-by-checked", "maker", &r.decided_by, "checker", c),
                    None => r.decided_by.clone(),
                },
                at: when(r.decided_at, offset),
                status_key: match r.status.as_str() {
                    "awaiting_check" => "decision-status-awaiting-check",
                    "declined" => "decision-status-declined",
                    _ => "decision-status-final",
                },
                delivery_key,
                delivery_class,
                delivery_when,
            }
        })
        .collect();
    let notice = DONE_KEYS
        .iter()
        .find(|k| **k == flash.done)
        .map(|k| t.get(k));
    let error = ERROR_KEYS
        .iter()
        .find(|k| **k == flash.error)
        .map(|k| t.get(k));
    let undecided = matches!(d.status, QueueStatus::Pending | QueueStatus::WaitingPhoto);
    let photo_advice = d
        .notes
        .photo_advice
        .iter()
        .map(|a| advice_text(&t, a))
        .collect();
    let photo_approval = d
        .notes
        .photo_approval
        .map(|a| t.n("photo-approved-on-bus", u64::from(a.retakes)));
    let page = DetailPage {
        photo_advice,
        photo_approval,
        amends: d.notes.amends.map(|a| a.to_string()),
        amendments: d.amendments.iter().map(|a| a.to_string()).collect(),
        decisions,
        can_decide,
        can_claim: undecided || supervisor,
        can_approve: d.status != QueueStatus::WaitingPhoto,
        decide_hint,
        reasons,
        needs,
        can_check,
        check_summary,
        notice,
        error,
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
    let visible = c.visible_services(&staff);
    let (b, i) = (bus.clone(), id);
    let out = c
        .db(move |db| {
            // The access check comes first: another agency's application is "not found".
            if !db.is_visible(&b, &i, &visible)? {
                return Ok(ClaimOutcome::NotFound);
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

/// The decision form: `action` is approve, reject or request_info; `need` repeats.
fn parse_action(form: &[(String, String)]) -> Result<Action, &'static str> {
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    };
    let text = |v: &str| -> Result<Option<Text>, &'static str> {
        if v.is_empty() {
            Ok(None)
        } else {
            Text::parse(v).map(Some).map_err(|_| "decide-invalid")
        }
    };
    match get("action") {
        "approve" => Ok(Action::Approve {
            note: text(get("note"))?,
        }),
        "reject" => Ok(Action::Reject {
            code: ReasonCode::parse(get("reason")).map_err(|_| "decide-invalid")?,
            note: text(get("note"))?,
        }),
        "request_info" => {
            let message = text(get("message"))?.ok_or("decide-invalid")?;
            let mut needs = Vec::new();
            for (_, v) in form.iter().filter(|(n, _)| n == "need") {
                let need = match v.strip_prefix("doc:") {
                    Some(d) => Need::Document(
                        keliling_shared::application::FieldName::parse(d)
                            .map_err(|_| "decide-invalid")?,
                    ),
                    None if v == "photo" => Need::NewPhoto,
                    None => return Err("decide-invalid"),
                };
                if !needs.contains(&need) {
                    needs.push(need);
                }
            }
            if needs.len() > keliling_shared::decision::MAX_NEEDS {
                return Err("decide-invalid");
            }
            Ok(Action::RequestInfo { message, needs })
        }
        _ => Err("decide-invalid"),
    }
}

fn back_to(bus: &BusId, id: &ApplicationId, query: &str) -> Response {
    Redirect::to(&format!("/applications/{bus}/{id}?{query}")).into_response()
}

pub async fn decide(
    State(c): State<Console>,
    Authed(s): Authed,
    Path((bus, id)): Path<(String, String)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let csrf = form
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    session::check_csrf(&s, csrf)?;
    let (bus, id) = parse_ids(&bus, &id)?;
    let action = match parse_action(&form) {
        Ok(a) => a,
        Err(key) => return Ok(back_to(&bus, &id, &format!("error={key}"))),
    };
    let staff = s.staff.clone();
    let catalogue = c.catalogue().clone();
    let (b, i) = (bus.clone(), id);
    let r = c
        .db(move |db| {
            Ok::<_, crate::store::HqStoreError>(db.decide(
                &b,
                &i,
                &action,
                &staff,
                &catalogue,
                UnixMillis::now(),
            ))
        })
        .await?;
    Ok(match r {
        Ok(_) => {
            // Where the application stands now says whether it waits for a second person.
            let (b, i) = (bus.clone(), id);
            let state = c.db(move |db| db.application_review_state(&b, &i)).await?;
            let done = if state.as_deref() == Some("awaiting_check") {
                "done-awaiting-check"
            } else {
                "done-decided"
            };
            back_to(&bus, &id, &format!("done={done}"))
        }
        Err(DecisionError::Refused(key)) => back_to(&bus, &id, &format!("error={key}")),
        Err(DecisionError::Invalid(why)) => {
            tracing::info!(%why, "console: decision refused");
            back_to(&bus, &id, "error=decide-invalid")
        }
        Err(DecisionError::Store(e)) => return Err(PageError::Internal(e.to_string())),
    })
}

#[derive(Deserialize)]
pub struct CheckForm {
    #[serde(default)]
    csrf: String,
    verdict: String,
}

pub async fn check(
    State(c): State<Console>,
    Authed(s): Authed,
    Path((bus, id)): Path<(String, String)>,
    Form(f): Form<CheckForm>,
) -> Result<Response, PageError> {
    session::check_csrf(&s, &f.csrf)?;
    let (bus, id) = parse_ids(&bus, &id)?;
    let confirm = match f.verdict.as_str() {
        "confirm" => true,
        "decline" => false,
        _ => return Err(PageError::BadRequest("verdict".into())),
    };
    let staff = s.staff.clone();
    let catalogue = c.catalogue().clone();
    let (b, i) = (bus.clone(), id);
    let r = c
        .db(move |db| {
            Ok::<_, crate::store::HqStoreError>(db.check_decision(
                &b,
                &i,
                confirm,
                &staff,
                &catalogue,
                UnixMillis::now(),
            ))
        })
        .await?;
    Ok(match r {
        Ok(()) if confirm => back_to(&bus, &id, "done=done-checked"),
        Ok(()) => back_to(&bus, &id, "done=done-declined"),
        Err(DecisionError::Refused(key)) => back_to(&bus, &id, &format!("error={key}")),
        Err(DecisionError::Invalid(_)) => back_to(&bus, &id, "error=decide-invalid"),
        Err(DecisionError::Store(e)) => return Err(PageError::Internal(e.to_string())),
    })
}
