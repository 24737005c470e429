//! The ID photo of a draft: from the tablet's camera or a file, made into the service's
//! ID photo by the bus (the same pipeline as the CLI), shown with its retake advice, and
//! accepted by the citizen on screen before the application can be saved (Dukcapil's rule
//! for KTP-el photos: the applicant sees and accepts the photo). Retakes are counted.

use super::form::{back_to, change, form_page, load, service_of};
use super::render;
use crate::capture;
use crate::drafts::DraftPhoto;
use crate::station::auth::{check_csrf, Authed, CsrfForm};
use crate::station::check::parse_date;
use crate::station::{PageError, Station};
use axum::extract::{Multipart, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

/// A multipart upload: the CSRF token, a document name (scans), the file.
#[derive(Default)]
struct Upload {
    csrf: String,
    name: String,
    file: Option<axum::body::Bytes>,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, PageError> {
    let bad = |e: axum::extract::multipart::MultipartError| PageError::BadRequest(e.to_string());
    let mut u = Upload::default();
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("csrf") => u.csrf = field.text().await.map_err(bad)?,
            Some("name") => u.name = field.text().await.map_err(bad)?.chars().take(64).collect(),
            Some("photo") | Some("file") => u.file = Some(field.bytes().await.map_err(bad)?),
            _ => {}
        }
    }
    Ok(u)
}

/// Receives the camera file (`photo` in a multipart form, with the CSRF token first).
pub async fn upload(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    multipart: Multipart,
) -> Result<Response, PageError> {
    let up = read_upload(multipart).await?;
    check_csrf(&s, &up.csrf)?;
    let bytes = up.file;
    let d = match load(&st, &id).await? {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let t = super::tr(s.lang)?;
    let bytes = match bytes.filter(|b| !b.is_empty()) {
        Some(b) => b,
        None => {
            let page = form_page(&st, &s, d, false, Some(t.get("photo-none"))).await?;
            return Ok(render(&page)?.into_response());
        }
    };
    let Some(dob) = parse_date(&d.form.date_of_birth) else {
        let page = form_page(&st, &s, d, false, Some(t.get("photo-needs-dob"))).await?;
        return Ok(render(&page)?.into_response());
    };
    let svc = service_of(&st, &d)?;
    let settings = st.settings().clone();
    let started = std::time::Instant::now();
    let made =
        tokio::task::spawn_blocking(move || capture::make_id_photo(&bytes, &svc, dob, &settings))
            .await
            .map_err(|e| PageError::Internal(e.to_string()))?;
    let photo = match made {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(error = %e, "station: photo refused");
            let why = match &e {
                capture::CaptureError::Photo(p) if s.lang == keliling_web::Lang::Id => {
                    p.message_id()
                }
                other => other.to_string(),
            };
            let page = form_page(
                &st,
                &s,
                d,
                false,
                Some(t.arg("photo-unusable", "why", &why)),
            )
            .await?;
            return Ok(render(&page)?.into_response());
        }
    };
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        advice = photo.advice.len(),
        "station: ID photo made"
    );
    // Into the draft as it is now (the operator may have typed on while it was made).
    let changed = change(&st, &id, move |d, _| {
        if d.photo.is_some() {
            d.retakes = d.retakes.saturating_add(1);
        }
        d.photo = Some(DraftPhoto {
            photo,
            approved: false,
        });
    })
    .await?;
    Ok(back_to(changed, "photo"))
}

/// The draft's ID photo, for the screen.
pub async fn image(
    State(st): State<Station>,
    Authed(_): Authed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let d = match load(&st, &id).await? {
        Ok(d) => d,
        Err(_) => return Err(PageError::NotFound),
    };
    let photo = d.photo.ok_or(PageError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                keliling_web::headers::BLOB_CSP,
            ),
        ],
        photo.photo.jpeg,
    )
        .into_response())
}

/// Receives a document scan (`file`, for catalogue document `name`): a JPEG, PNG or PDF
/// within the attachment limit, kept in the draft until the application is saved.
pub async fn document(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    multipart: Multipart,
) -> Result<Response, PageError> {
    let up = read_upload(multipart).await?;
    check_csrf(&s, &up.csrf)?;
    let d = match load(&st, &id).await? {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let t = super::tr(s.lang)?;
    let svc = service_of(&st, &d)?;
    if !svc.documents.iter().any(|x| x.name == up.name) {
        return Err(PageError::BadRequest(format!("no document {:?}", up.name)));
    }
    let bytes = up.file.filter(|b| !b.is_empty());
    let refusal = match &bytes {
        None => Some(t.get("scan-none")),
        Some(b) if keliling_shared::application::MediaType::sniff(b).is_none() => {
            Some(t.get("scan-kind"))
        }
        Some(b) if b.len() as u64 > keliling_shared::application::MAX_ATTACHMENT_BYTES => {
            Some(t.get("scan-too-large"))
        }
        _ => None,
    };
    if let Some(why) = refusal {
        let page = form_page(&st, &s, d, false, Some(why)).await?;
        return Ok(render(&page)?.into_response());
    }
    let name = up.name;
    let bytes = bytes.map(|b| b.to_vec()).unwrap_or_default();
    let changed = change(&st, &id, move |d, _| {
        d.put_document(&name, bytes);
        if !d.form.documents_seen.contains(&name) {
            d.form.documents_seen.push(name);
        }
    })
    .await?;
    Ok(back_to(changed, "scans"))
}

/// The citizen accepts the photo on screen.
pub async fn approve(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let changed = change(&st, &id, |d, _| match &mut d.photo {
        Some(p) if !p.photo.must_retake() => {
            p.approved = true;
            true
        }
        _ => false,
    })
    .await?;
    match changed {
        Ok((d, true)) => Ok(Redirect::to(&format!("/drafts/{}#photo", d.id)).into_response()),
        Ok((_, false)) => Err(PageError::BadRequest("no photo to approve".into())),
        Err(r) => Ok(r),
    }
}

/// The citizen (or the advice) wants another photo: this one goes, the retake counts.
pub async fn retake(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let changed = change(&st, &id, |d, _| {
        if d.photo.take().is_some() {
            d.retakes = d.retakes.saturating_add(1);
        }
    })
    .await?;
    Ok(back_to(changed, "photo"))
}
