//! A new application: pick the service (grouped by agency, searched as you type), and a
//! draft starts.

use super::{render, Layout};
use crate::drafts::Draft;
use crate::station::auth::{check_csrf, Authed};
use crate::station::{PageError, Station};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use keliling_shared::ServiceCode;
use serde::Deserialize;

pub struct ServiceItem {
    pub code: String,
    pub name: String,
    /// Lower-case words the search matches: code, both names, the agency.
    pub search: String,
}

pub struct AgencyGroup {
    pub name: String,
    pub services: Vec<ServiceItem>,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    l: Layout,
    q: String,
    groups: Vec<AgencyGroup>,
    shown: usize,
    total: usize,
}

#[derive(Deserialize, Default)]
pub struct NewQuery {
    #[serde(default)]
    q: String,
}

/// The catalogue's services by agency, those matching `q` (every word, any order).
pub fn groups(st: &Station, lang: &str, q: &str) -> Vec<AgencyGroup> {
    let cat = st.catalogue();
    let words: Vec<String> = q
        .split_whitespace()
        .map(|w| w.to_lowercase())
        .take(8)
        .collect();
    let mut out: Vec<AgencyGroup> = Vec::new();
    let agency_name = |code: &str| {
        cat.agencies
            .iter()
            .find(|a| a.code == code)
            .map(|a| {
                if lang == "en" {
                    a.name_en.clone()
                } else {
                    a.name.clone()
                }
            })
            .unwrap_or_else(|| code.to_owned())
    };
    for s in &cat.services {
        let agency = agency_name(&s.agency);
        let search = format!("{} {} {} {}", s.code, s.name, s.name_en, agency).to_lowercase();
        if !words.iter().all(|w| search.contains(w.as_str())) {
            continue;
        }
        let item = ServiceItem {
            code: s.code.to_string(),
            name: if lang == "en" {
                s.name_en.clone()
            } else {
                s.name.clone()
            },
            search,
        };
        match out.iter_mut().find(|g| g.name == agency) {
            Some(g) => g.services.push(item),
            None => out.push(AgencyGroup {
                name: agency,
                services: vec![item],
            }),
        }
    }
    out
}

pub async fn page(
    State(st): State<Station>,
    Authed(s): Authed,
    Query(q): Query<NewQuery>,
) -> Result<Response, PageError> {
    let l = Layout::of(&st, &s, "new", "/new".into()).await?;
    let q = q.q.chars().take(80).collect::<String>();
    let groups = groups(&st, l.t.lang(), &q);
    let shown = groups.iter().map(|g| g.services.len()).sum();
    Ok(render(&ServicesPage {
        total: st.catalogue().services.len(),
        shown,
        groups,
        q,
        l,
    })?
    .into_response())
}

#[derive(Deserialize)]
pub struct CreateForm {
    csrf: String,
    service: String,
}

pub async fn create(
    State(st): State<Station>,
    Authed(s): Authed,
    Form(f): Form<CreateForm>,
) -> Result<Response, PageError> {
    check_csrf(&s, &f.csrf)?;
    let code = ServiceCode::parse(&f.service).map_err(|e| PageError::BadRequest(e.to_string()))?;
    st.catalogue()
        .service(&code)
        .map_err(|e| PageError::BadRequest(e.to_string()))?;
    let mut draft = Draft::new(&s.name, code, None);
    draft.form.village = st.village();
    let id = draft.id;
    st.db(move |store| store.put_draft(&draft)).await?;
    Ok(Redirect::to(&format!("/drafts/{id}")).into_response())
}
