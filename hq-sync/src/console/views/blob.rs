//! A photo or scan of an application, to a logged-in staff member of its agency only.
//! Served with a sandboxing CSP and `nosniff`; a PDF is always a download, never
//! rendered inline. Every photo served is written to the audit log.

use crate::audit::Entry;
use crate::console::security::BLOB_CSP;
use crate::console::session::Authed;
use crate::console::{Console, PageError};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use keliling_shared::{ApplicationId, BusId, Sha256, UnixMillis};

pub async fn serve(
    State(c): State<Console>,
    Authed(s): Authed,
    Path((bus, id, sha)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let bus = BusId::parse(&bus).map_err(|_| PageError::NotFound)?;
    let id = ApplicationId::parse(&id).map_err(|_| PageError::NotFound)?;
    let sha = Sha256::parse_hex(&sha).map_err(|_| PageError::NotFound)?;
    let visible = c.visible_services(&s.staff);
    let actor = s.staff.username.to_string();
    let blobs = c.blobs().clone();
    let found = c
        .db(move |db| {
            // The access check comes first: another agency's application is "not found".
            if !db.is_visible(&bus, &id, &visible)? {
                return Ok(None);
            }
            let Some((media, kind)) = db.blob_of_application(&bus, &id, &sha)? else {
                return Ok(None);
            };
            // Addressed by its hash, and checked against it: never another's bytes.
            let bytes = blobs
                .read_verified(db, &sha)
                .map_err(|e| crate::store::HqStoreError::Corrupt(e.to_string()))?;
            db.audit(
                &actor,
                &Entry::application("blob_viewed", bus.as_str(), &id.to_string()).detail(&kind),
                UnixMillis::now(),
            )?;
            Ok::<_, crate::store::HqStoreError>(Some((media, kind, bytes)))
        })
        .await?;
    let (media, kind, bytes) = found.ok_or(PageError::NotFound)?;
    let (mime, ext, inline) = match media.as_str() {
        "image/jpeg" => ("image/jpeg", "jpg", true),
        "image/png" => ("image/png", "png", true),
        _ => ("application/pdf", "pdf", false),
    };
    let name = kind.replace(':', "-");
    let disposition = format!(
        "{}; filename=\"{name}.{ext}\"",
        if inline { "inline" } else { "attachment" }
    );
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CONTENT_SECURITY_POLICY, BLOB_CSP.to_owned()),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}
