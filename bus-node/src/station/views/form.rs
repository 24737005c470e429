//! The application form of a draft: the service's fields and its documents as a
//! checklist, checked as the operator types (`check.rs`) and saved to the bus with every
//! change (the page's script sends the form; without it, the buttons do).

use super::today::service_name;
use super::{app_id, render, when, Layout};
use crate::capture::{self, ApprovedPhoto, CaptureInput};
use crate::drafts::Draft;
use crate::station::auth::{check_csrf, Authed, CsrfForm, OpSession};
use crate::station::check::{self, Problem};
use crate::station::{PageError, Station};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::Form;
use keliling_shared::catalogue::FieldKind;
use keliling_shared::decision::Need;
use keliling_shared::{Nik, Service, UnixMillis};
use keliling_web::{cookies, Tr};

pub struct FieldView {
    pub name: String,
    pub label: String,
    pub kind: &'static str,
    pub required: bool,
    pub choices: Vec<String>,
    pub value: String,
}

pub struct DocView {
    pub name: String,
    pub label: String,
    pub required: bool,
    pub seen: bool,
    /// The scan's size, when one was taken ("120 KB").
    pub scanned: Option<String>,
    /// HQ asked for this document (an amendment).
    pub asked: bool,
}

/// What HQ asked for, when the draft is an amendment.
pub struct AmendView {
    pub original: String,
    pub short: String,
    pub message: String,
    pub needs: Vec<String>,
}

/// A message beside a field.
#[derive(Clone, serde::Serialize)]
pub struct Msg {
    pub field: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "form.html")]
pub struct FormPage {
    pub l: Layout,
    pub d: Draft,
    pub service_name: String,
    pub fields: Vec<FieldView>,
    pub docs: Vec<DocView>,
    pub wants_photo: bool,
    pub photo_required: bool,
    pub advice: Vec<String>,
    pub photo_blocked: bool,
    pub amend: Option<AmendView>,
    pub problems: Vec<Msg>,
    pub warnings: Vec<Msg>,
    /// Show every problem (after a save attempt), not only those of fields typed in.
    pub show_all: bool,
    pub error: Option<String>,
    /// "Saved automatically at HH:MM".
    pub saved_note: String,
}

/// A draft whose service HQ's newer catalogue no longer has: it cannot be saved.
#[derive(Template)]
#[template(path = "withdrawn.html")]
pub struct WithdrawnPage {
    pub l: Layout,
    pub id: String,
    pub body: String,
    /// The citizen's name as typed, so the operator knows whose draft it was.
    pub applicant: String,
    pub started: String,
}

impl FormPage {
    pub fn problem(&self, field: &str) -> Option<&str> {
        self.problems
            .iter()
            .find(|m| m.field == field)
            .map(|m| m.text.as_str())
    }
}

fn text_of(t: &Tr<'_>, p: &Problem) -> String {
    let args: Vec<(&str, &dyn std::fmt::Display)> = p
        .args
        .iter()
        .map(|(k, v)| (*k, v as &dyn std::fmt::Display))
        .collect();
    t.with(p.key, &args)
}

/// The draft's problems and warnings in the operator's language; a warning when the NIK
/// already has an application for this service on the bus.
async fn messages(
    st: &Station,
    t: &Tr<'static>,
    d: &Draft,
    svc: &Service,
) -> Result<(Vec<Msg>, Vec<Msg>), PageError> {
    let c = check::check(&d.form, svc);
    let msg = |p: &Problem| Msg {
        field: p.field.clone(),
        text: text_of(t, p),
    };
    let problems = c.problems.iter().map(msg).collect();
    let mut warnings: Vec<Msg> = c.warnings.iter().map(msg).collect();
    if let Ok(nik) = Nik::parse(&d.form.nik) {
        let key = st.index_key();
        let service = d.service.to_string();
        let (own, amends) = (d.id, d.amends);
        let same = st
            .db(move |s| s.find_by_nik(&key, &nik))
            .await?
            .into_iter()
            .filter(|a| a.service == service && a.id != own && Some(a.id) != amends)
            .collect::<Vec<_>>();
        if let Some(first) = same.first() {
            warnings.push(Msg {
                field: "nik".into(),
                text: t.arg("nik-duplicate", "id", &first.id.to_string()),
            });
        }
    }
    Ok((problems, warnings))
}

/// The photo's retake advice in the operator's language.
fn advice_texts(t: &Tr<'_>, d: &Draft) -> Vec<String> {
    use keliling_photo::{Advice, Background};
    let Some(p) = &d.photo else {
        return Vec::new();
    };
    p.photo
        .advice
        .iter()
        .map(|a| match a {
            Advice::TooSmall { .. } => t.get("advice-too-small"),
            Advice::TooDark { .. } => t.get("advice-too-dark"),
            Advice::TooBright { .. } => t.get("advice-too-bright"),
            Advice::Blurred { .. } => t.get("advice-blurred"),
            Advice::WrongBackground { expected } => {
                let colour = t.get(match expected {
                    Background::Red => "colour-red",
                    Background::Blue => "colour-blue",
                    Background::White => "colour-white",
                });
                t.arg("advice-background", "colour", &colour)
            }
        })
        .collect()
}

/// The page of draft `d`.
pub async fn form_page(
    st: &Station,
    s: &OpSession,
    d: Draft,
    show_all: bool,
    error: Option<String>,
) -> Result<FormPage, PageError> {
    let l = Layout::of(st, s, "new", format!("/drafts/{}", d.id)).await?;
    let svc = service_of(st, &d)?;
    let (problems, warnings) = messages(st, &l.t, &d, &svc).await?;
    let fields = svc
        .fields
        .iter()
        .map(|f| FieldView {
            name: f.name.clone(),
            label: f.label.clone(),
            kind: match f.kind {
                FieldKind::Text => "text",
                FieldKind::Digits16 => "digits16",
                FieldKind::Date => "date",
                FieldKind::Choice => "choice",
            },
            required: f.required,
            choices: f.choices.clone(),
            value: d.form.fields.get(&f.name).cloned().unwrap_or_default(),
        })
        .collect();
    let asked = match d.amends {
        Some(orig) => super::amend::needs_of(st, orig).await?.map(|n| (orig, n)),
        None => None,
    };
    let asked_doc = |name: &str| {
        asked.as_ref().is_some_and(|(_, (_, needs))| {
            needs
                .iter()
                .any(|n| matches!(n, Need::Document(x) if x.as_str() == name))
        })
    };
    let docs = svc
        .documents
        .iter()
        .map(|x| DocView {
            name: x.name.clone(),
            label: x.label.clone(),
            required: x.required,
            seen: d.form.documents_seen.contains(&x.name),
            scanned: d
                .documents
                .iter()
                .find(|s| s.name == x.name)
                .map(|s| super::human_bytes(s.bytes.len() as u64)),
            asked: asked_doc(&x.name),
        })
        .collect();
    let amend = asked.map(|(orig, (message, needs))| {
        let o = orig.to_string();
        AmendView {
            short: o[o.len() - 8..].to_owned(),
            original: o,
            message,
            needs: needs
                .iter()
                .map(|n| match n {
                    Need::NewPhoto => l.t.get("need-photo"),
                    Need::Document(doc) => {
                        let label = svc
                            .documents
                            .iter()
                            .find(|x| x.name == doc.as_str())
                            .map_or(doc.as_str(), |x| x.label.as_str());
                        l.t.arg("need-document", "doc", label)
                    }
                })
                .collect(),
        }
    });
    let advice = advice_texts(&l.t, &d);
    Ok(FormPage {
        service_name: service_name(st, d.service.as_str(), l.t.lang()),
        fields,
        docs,
        wants_photo: svc.photo.is_some() || amend.is_some(),
        photo_required: svc.photo.as_ref().is_some_and(|p| p.required),
        amend,
        photo_blocked: d.photo.as_ref().is_some_and(|p| p.photo.must_retake()),
        advice,
        problems,
        warnings,
        show_all,
        error,
        saved_note: l.t.arg(
            "draft-saved-at",
            "time",
            &when(d.updated_at, st.config().utc_offset_minutes),
        ),
        d,
        l,
    })
}

/// The service of draft `d`, from the catalogue in use. One it lacks (HQ's newer
/// catalogue withdrew it) refuses the request: the draft's page says so ([`page`]).
pub fn service_of(st: &Station, d: &Draft) -> Result<Service, PageError> {
    st.catalogue()
        .service(&d.service)
        .cloned()
        .map_err(|e| PageError::BadRequest(e.to_string()))
}

/// After a change to a draft: back to its page at `part` (`photo`, `scans`), or where
/// `change` sent the request (a saved draft goes to its application).
pub fn back_to(changed: Result<(Draft, ()), Response>, part: &str) -> Response {
    match changed {
        Ok((d, ())) => Redirect::to(&format!("/drafts/{}#{part}", d.id)).into_response(),
        Err(r) => r,
    }
}

/// Opens draft `id`; a draft already saved goes to its application.
pub async fn load(st: &Station, id: &str) -> Result<Result<Draft, Response>, PageError> {
    let id = app_id(id)?;
    let vault = st.vault();
    let (draft, saved) = st
        .db(move |s| {
            if s.has_application(&id)? {
                // A draft that outlived its save (put_draft refuses to make one).
                s.delete_draft(&id)?;
                return Ok::<_, crate::store::StoreError>((None, true));
            }
            Ok((s.draft(&id, &vault)?, false))
        })
        .await?;
    match (draft, saved) {
        (Some(d), _) => Ok(Ok(d)),
        (None, true) => Ok(Err(
            Redirect::to(&format!("/applications/{id}")).into_response()
        )),
        (None, false) => Err(PageError::NotFound),
    }
}

/// Changes draft `id` in one store transaction (`Store::update_draft`): `f` sees the
/// draft as stored now and its service. A draft already saved goes to its application.
pub async fn change<R: Send + 'static>(
    st: &Station,
    id: &str,
    f: impl FnOnce(&mut Draft, Option<&Service>) -> R + Send + 'static,
) -> Result<Result<(Draft, R), Response>, PageError> {
    let id = app_id(id)?;
    let vault = st.vault();
    let catalogue = st.catalogue();
    let changed = st
        .db(move |s| {
            let saved = s.has_application(&id)?;
            let r = s.update_draft(&id, &vault, |d| {
                let svc = catalogue.service(&d.service).ok();
                f(d, svc)
            })?;
            Ok::<_, crate::store::StoreError>((r, saved))
        })
        .await?;
    match changed {
        (Some(done), _) => Ok(Ok(done)),
        (None, true) => Ok(Err(
            Redirect::to(&format!("/applications/{id}")).into_response()
        )),
        (None, false) => Err(PageError::NotFound),
    }
}

pub async fn page(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let d = match load(&st, &id).await? {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let catalogue = st.catalogue();
    if catalogue.service(&d.service).is_err() {
        let l = Layout::of(&st, &s, "new", format!("/drafts/{}", d.id)).await?;
        let body = l.t.arg2(
            "withdrawn-body",
            "version",
            &catalogue.version.to_string(),
            "service",
            d.service.as_str(),
        );
        let page = WithdrawnPage {
            id: d.id.to_string(),
            body,
            applicant: d.form.full_name.clone(),
            started: when(d.created_at, st.config().utc_offset_minutes),
            l,
        };
        return Ok(render(&page)?.into_response());
    }
    Ok(render(&form_page(&st, &s, d, false, None).await?)?.into_response())
}

/// The form's fields as sent: everything as typed.
type Pairs = Vec<(String, String)>;

fn csrf_of(pairs: &Pairs) -> &str {
    pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Takes the form's values into the draft. Bounded: a field holds at most 1,000
/// characters, and only the fields the service has are kept.
fn apply(d: &mut Draft, svc: &Service, pairs: &Pairs) {
    let clip = |v: &str| v.chars().take(1000).collect::<String>();
    let f = &mut d.form;
    f.documents_seen.clear();
    for (k, v) in pairs {
        match k.as_str() {
            "village" => f.village = clip(v),
            "full_name" => f.full_name = clip(v),
            "nik" => f.nik = clip(v),
            "date_of_birth" => f.date_of_birth = clip(v),
            "sex" => f.sex = clip(v),
            "address" => f.address = clip(v),
            "phone" => f.phone = clip(v),
            k => {
                if let Some(name) = k.strip_prefix("f.") {
                    if svc.fields.iter().any(|x| x.name == name) {
                        f.fields.insert(name.to_owned(), clip(v));
                    }
                } else if let Some(name) = k.strip_prefix("doc.") {
                    if svc.documents.iter().any(|x| x.name == name)
                        && !f.documents_seen.iter().any(|x| x == name)
                    {
                        f.documents_seen.push(name.to_owned());
                    }
                }
            }
        }
    }
    d.updated_at = UnixMillis::now();
}

/// Saves what the operator typed. From the page's script (`X-Requested-With: fetch`): the
/// messages as JSON; from a plain form post: back to the form.
pub async fn autosave(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(pairs): Form<Pairs>,
) -> Result<Response, PageError> {
    check_csrf(&s, csrf_of(&pairs))?;
    let operator = s.name.clone();
    let d = match change(&st, &id, move |d, svc| {
        if let Some(svc) = svc {
            apply(d, svc, &pairs);
        }
        d.operator = operator;
    })
    .await?
    {
        Ok((d, ())) => d,
        Err(r) => return Ok(r),
    };
    if cookies::is_fetch(&headers) {
        let svc = service_of(&st, &d)?;
        let t = super::tr(s.lang)?;
        let (problems, warnings) = messages(&st, &t, &d, &svc).await?;
        let when = when(d.updated_at, st.config().utc_offset_minutes);
        return Ok(Json(serde_json::json!({
            "saved_note": t.arg("draft-saved-at", "time", &when),
            "problems": problems,
            "warnings": warnings,
        }))
        .into_response());
    }
    Ok(Redirect::to(&format!("/drafts/{}", d.id)).into_response())
}

/// Saves the application: the same capture as the CLI's, with the approved photo, the
/// ticked documents and the operator signed in. Problems show on the form; nothing is
/// lost, the draft stays.
pub async fn save(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    Form(pairs): Form<Pairs>,
) -> Result<Response, PageError> {
    check_csrf(&s, csrf_of(&pairs))?;
    // Without the page's script only the token comes: the draft is as autosaved.
    let d = if pairs.len() > 1 {
        change(&st, &id, move |d, svc| {
            if let Some(svc) = svc {
                apply(d, svc, &pairs);
            }
        })
        .await?
        .map(|(d, ())| d)
    } else {
        load(&st, &id).await?
    };
    let d = match d {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let svc = service_of(&st, &d)?;
    let t = super::tr(s.lang)?;
    let checked = check::check(&d.form, &svc);
    // An amendment must bring what HQ asked for.
    let needs = match d.amends {
        Some(orig) => super::amend::needs_of(&st, orig)
            .await?
            .map(|(_, n)| n)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let photo_needed = svc.photo.as_ref().is_some_and(|p| p.required)
        || needs.iter().any(|n| matches!(n, Need::NewPhoto));
    let missing_doc = needs.iter().any(
        |n| matches!(n, Need::Document(x) if !d.documents.iter().any(|s| s.name == x.as_str())),
    );
    let photo_problem = match (&d.photo, photo_needed) {
        (None, true) => Some("photo-required"),
        (Some(p), _) if p.photo.must_retake() => Some("photo-retake-first"),
        (Some(p), _) if !p.approved => Some("photo-not-approved"),
        _ if missing_doc => Some("scan-asked-missing"),
        _ => None,
    };
    if !checked.problems.is_empty() || photo_problem.is_some() {
        let error = photo_problem
            .map(|k| t.get(k))
            .or_else(|| Some(t.get("save-fix-first")));
        return Ok(render(&form_page(&st, &s, d, true, error).await?)?.into_response());
    }
    let f = &d.form;
    let input = CaptureInput {
        id: Some(d.id),
        operator: s.name.clone(),
        village: f.village.clone(),
        service: d.service.to_string(),
        full_name: f.full_name.clone(),
        nik: f.nik.clone(),
        date_of_birth: f.date_of_birth.clone(),
        sex: f.sex.clone(),
        address: f.address.clone(),
        phone: Some(f.phone.clone()).filter(|p| !p.trim().is_empty()),
        fields: f
            .fields
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        approved_photo: d.photo.as_ref().map(|p| ApprovedPhoto {
            photo: p.photo.clone(),
            retakes: d.retakes,
        }),
        documents: d
            .documents
            .iter()
            .map(|x| (x.name.clone(), x.bytes.clone()))
            .collect(),
        documents_seen: f.documents_seen.clone(),
        amends: d.amends,
        index_key: Some(st.index_key()),
        ..CaptureInput::default()
    };
    let village = f.village.clone();
    let catalogue = st.catalogue().clone();
    let settings = st.settings().clone();
    let result = st
        .db(move |store| {
            Ok::<_, crate::store::StoreError>(capture::capture(store, &catalogue, &settings, input))
        })
        .await?;
    match result {
        Ok(receipt) => {
            st.set_village(&village);
            tracing::info!(application = %receipt.application.id, operator = %s.name, "station: application saved");
            Ok(
                Redirect::to(&format!("/applications/{}?saved=1", receipt.application.id))
                    .into_response(),
            )
        }
        Err(capture::CaptureError::Store(crate::store::StoreError::Duplicate(id))) => {
            Ok(Redirect::to(&format!("/applications/{id}")).into_response())
        }
        Err(e) => {
            tracing::info!(error = %e, "station: application not saved");
            let error = Some(t.arg("save-failed", "why", &e.to_string()));
            Ok(render(&form_page(&st, &s, d, true, error).await?)?.into_response())
        }
    }
}

/// Throws the draft away (the citizen left).
pub async fn discard(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let id = app_id(&id)?;
    st.db(move |store| store.delete_draft(&id)).await?;
    Ok(Redirect::to("/").into_response())
}
