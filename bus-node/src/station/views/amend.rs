//! More information requested: HQ asked for a new photo or a document. The operator
//! starts an amendment from the application's page: a new application linked to the
//! original (`RecordNotes::amends`), with the citizen's details carried over, to which
//! the operator adds exactly what HQ asked for. It syncs like any record and HQ shows it
//! on the original's page.

use super::app_id;
use crate::drafts::Draft;
use crate::station::auth::{check_csrf, Authed, CsrfForm};
use crate::station::{PageError, Station};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keliling_shared::decision::{Need, Outcome};
use keliling_shared::Sex;

/// Starts (or reopens) the amendment of application `id`.
pub async fn start(
    State(st): State<Station>,
    Authed(s): Authed,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let id = app_id(&id)?;
    let vault = st.vault();
    let operator = s.name.clone();
    let village = st.village();
    let new_photo = needs_of(&st, id)
        .await?
        .is_some_and(|(_, needs)| needs.contains(&Need::NewPhoto));
    let catalogue = st.catalogue().clone();
    let draft = st
        .db(move |store| {
            if let Some(open) = store.draft_amending(&id)? {
                return Ok::<_, crate::store::StoreError>(Some(open));
            }
            let Some(app) = store.application(&id, &vault)? else {
                return Ok(None);
            };
            let mut d = Draft::new(&operator, app.service.clone(), Some(id));
            let a = &app.applicant;
            d.form.full_name = a.full_name.as_str().to_owned();
            d.form.nik = a.nik.as_str().to_owned();
            d.form.date_of_birth = format!(
                "{:04}-{:02}-{:02}",
                a.date_of_birth.year(),
                u8::from(a.date_of_birth.month()),
                a.date_of_birth.day()
            );
            d.form.sex = match a.sex {
                Sex::Male => "L".into(),
                Sex::Female => "P".into(),
            };
            d.form.address = a.address.as_str().to_owned();
            d.form.phone = a
                .phone
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            d.form.village = if village.is_empty() {
                app.stop.village.as_str().to_owned()
            } else {
                village
            };
            for (k, v) in &app.fields {
                d.form.fields.insert(k.to_string(), v.as_str().to_owned());
            }
            // The ID photo the citizen already approved comes along, unless HQ asked for
            // a new one: the same bytes, so HQ (which holds them) is not sent them again.
            let photo = app
                .attachments
                .iter()
                .find(|a| a.kind == keliling_shared::AttachmentKind::IdPhoto);
            if let (false, Some(att), Ok(svc)) = (new_photo, photo, catalogue.service(&app.service))
            {
                if let Ok(jpeg) = store.read_chunk(&att.sha256, 0..att.size, &vault) {
                    d.photo = Some(crate::drafts::DraftPhoto {
                        photo: crate::capture::IdPhoto {
                            jpeg,
                            advice: Vec::new(),
                            spec: crate::capture::photo_spec(svc, a.date_of_birth),
                        },
                        approved: true,
                    });
                }
            }
            let new = d.id;
            store.put_draft(&d)?;
            Ok(Some(new))
        })
        .await?;
    match draft {
        Some(d) => Ok(Redirect::to(&format!("/drafts/{d}")).into_response()),
        None => Err(PageError::NotFound),
    }
}

/// What HQ asked for on application `id`, when its decision in force asks for more.
pub async fn needs_of(
    st: &Station,
    id: keliling_shared::ApplicationId,
) -> Result<Option<(String, Vec<Need>)>, PageError> {
    let vault = st.vault();
    st.db(move |store| {
        let Some(listed) = store.listed(&id)? else {
            return Ok::<_, crate::store::StoreError>(None);
        };
        let Some(v) = listed.decision_version else {
            return Ok(None);
        };
        Ok(match store.decision(&id, v, &vault)?.map(|d| d.outcome) {
            Some(Outcome::InfoRequested { message, needs }) => {
                Some((message.as_str().to_owned(), needs))
            }
            _ => None,
        })
    })
    .await
}
