//! An application on the bus: the citizen's receipt (tracking number, service, date,
//! documents received, what happens next, a QR code of the tracking number), printable
//! on 80 mm thermal paper or A4, and where the application stands, with HQ's decision.

use super::today::{service_name, state_of};
use super::{app_id, render, when, Layout};
use crate::station::auth::Authed;
use crate::station::{PageError, Station};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use keliling_shared::decision::{Need, Outcome};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage {
    l: Layout,
    id: String,
    service: String,
    service_code: String,
    name: String,
    nik_masked: String,
    village: String,
    operator: String,
    captured: String,
    documents: Vec<String>,
    has_photo: bool,
    qr_svg: String,
    state_key: &'static str,
    state_class: &'static str,
    decision: Option<DecisionView>,
    just_saved: bool,
    paper: &'static str,
    /// HQ asked for more: the operator may start an amendment.
    can_amend: bool,
    amendments: Vec<super::today::Row>,
    /// The application this one completes.
    amends: Option<String>,
}

struct DecisionView {
    kind_key: &'static str,
    decided: String,
    reason: Option<String>,
    note: Option<String>,
    needs: Vec<String>,
}

#[derive(Deserialize, Default)]
pub struct ReceiptQuery {
    saved: Option<u8>,
    paper: Option<String>,
}

/// The QR code of `text` as an SVG element (drawn here: no script, no image request).
pub fn qr_svg(text: &str) -> Result<String, PageError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| PageError::Internal(format!("QR: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(150, 150)
        .quiet_zone(true)
        .build())
}

pub async fn page(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    Query(q): Query<ReceiptQuery>,
) -> Result<Response, PageError> {
    let id = app_id(&id)?;
    let vault = st.vault();
    let found = st
        .db(move |store| {
            let Some(listed) = store.listed(&id)? else {
                return Ok::<_, crate::store::StoreError>(None);
            };
            let app = store.application(&id, &vault)?;
            let notes = store.record_notes(&id)?;
            let decision = match listed.decision_version {
                Some(v) => store.decision(&id, v, &vault)?,
                None => None,
            };
            let amendments = store.amendments_of(&id)?;
            Ok(app.map(|a| (listed, a, notes, decision, amendments)))
        })
        .await?;
    let Some((listed, app, notes, decision, amendments)) = found else {
        return Err(PageError::NotFound);
    };
    let l = Layout::of(&st, &s, "today", format!("/applications/{id}")).await?;
    let lang = l.t.lang();
    let catalogue = st.catalogue();
    let svc = catalogue.service(&app.service).ok();
    let documents = notes
        .documents_seen
        .iter()
        .map(|d| {
            svc.and_then(|s| s.documents.iter().find(|x| x.name == d.as_str()))
                .map(|x| x.label.clone())
                .unwrap_or_else(|| d.to_string())
        })
        .collect();
    let (state_key, state_class) = state_of(&listed);
    let can_amend = matches!(
        decision.as_ref().map(|d| &d.outcome),
        Some(Outcome::InfoRequested { .. })
    );
    let off = st.config().utc_offset_minutes;
    let decision = decision.map(|d| {
        let (kind_key, reason, note, needs) = match &d.outcome {
            Outcome::Approved { note } => ("decision-approved", None, note.clone(), vec![]),
            Outcome::Rejected { reason, note, .. } => (
                "decision-rejected",
                Some(reason.clone()),
                note.clone(),
                vec![],
            ),
            Outcome::InfoRequested { message, needs } => (
                "decision-info_requested",
                Some(message.clone()),
                None,
                needs
                    .iter()
                    .map(|n| match n {
                        Need::NewPhoto => l.t.get("need-photo"),
                        Need::Document(doc) => {
                            let label = svc
                                .and_then(|s| s.documents.iter().find(|x| x.name == doc.as_str()))
                                .map_or(doc.as_str(), |x| x.label.as_str());
                            l.t.arg("need-document", "doc", label)
                        }
                    })
                    .collect(),
            ),
        };
        DecisionView {
            kind_key,
            decided: when(d.decided_at, off),
            reason: reason.map(|r| r.as_str().to_owned()),
            note: note.map(|n| n.as_str().to_owned()),
            needs,
        }
    });
    let page = ReceiptPage {
        id: id.to_string(),
        service: service_name(&st, app.service.as_str(), lang),
        service_code: app.service.to_string(),
        name: app.applicant.full_name.as_str().to_owned(),
        nik_masked: app.applicant.nik.masked(),
        village: app.stop.village.as_str().to_owned(),
        operator: app.operator.as_str().to_owned(),
        captured: keliling_web::time::date_time(app.captured_at, off),
        documents,
        has_photo: app
            .attachments
            .iter()
            .any(|a| a.kind == keliling_shared::AttachmentKind::IdPhoto),
        qr_svg: qr_svg(&id.to_string())?,
        state_key,
        state_class,
        decision,
        just_saved: q.saved == Some(1),
        paper: if q.paper.as_deref() == Some("a4") {
            "a4"
        } else {
            "thermal"
        },
        can_amend,
        amendments: amendments
            .iter()
            .map(|a| super::today::Row::of(&st, a, lang))
            .collect(),
        amends: notes.amends.map(|a| a.to_string()),
        l,
    };
    Ok(render(&page)?.into_response())
}
