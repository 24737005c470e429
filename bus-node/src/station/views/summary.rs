//! The end of the stop (berita acara): what was taken today per service, what is still
//! waiting to sync, who served, where; printable on A4 with room for signatures. Before
//! the bus drives on with anything unsynced, the page says so.

use super::today::{service_name, state_of, Row};
use super::{render, start_of_today, Layout};
use crate::lookup::Listed;
use crate::station::auth::Authed;
use crate::station::{PageError, Station};
use crate::store::OutboxState;
use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;

pub struct ServiceLine {
    pub name: String,
    pub taken: usize,
    pub confirmed: usize,
    pub waiting: usize,
    pub refused: usize,
}

#[derive(Template)]
#[template(path = "summary.html")]
struct SummaryPage {
    l: Layout,
    date: String,
    villages: String,
    operators: String,
    lines: Vec<ServiceLine>,
    total: ServiceLine,
    waiting: Vec<Row>,
}

pub async fn page(State(st): State<Station>, Authed(s): Authed) -> Result<Response, PageError> {
    let l = Layout::of(&st, &s, "summary", "/summary".into()).await?;
    let off = st.config().utc_offset_minutes;
    let since = start_of_today(off);
    let vault = st.vault();
    // One decryption per application of the day, for who served where (names of
    // operators and villages live in the sealed records).
    let (today, people): (Vec<Listed>, Vec<(String, String)>) = st
        .db(move |store| {
            let today = store.captured_since(since, 2000)?;
            let mut people = Vec::new();
            for a in &today {
                if let Ok(Some(app)) = store.application(&a.id, &vault) {
                    people.push((
                        app.operator.as_str().to_owned(),
                        app.stop.village.as_str().to_owned(),
                    ));
                }
            }
            Ok::<_, crate::store::StoreError>((today, people))
        })
        .await?;
    let lang = l.t.lang();
    let mut lines: Vec<ServiceLine> = Vec::new();
    let mut total = ServiceLine {
        name: l.t.get("summary-total"),
        taken: 0,
        confirmed: 0,
        waiting: 0,
        refused: 0,
    };
    for a in &today {
        let name = service_name(&st, &a.service, lang);
        let i = match lines.iter().position(|x| x.name == name) {
            Some(i) => i,
            None => {
                lines.push(ServiceLine {
                    name,
                    taken: 0,
                    confirmed: 0,
                    waiting: 0,
                    refused: 0,
                });
                lines.len() - 1
            }
        };
        let line = &mut lines[i];
        line.taken += 1;
        total.taken += 1;
        match a.state {
            OutboxState::Delivered => {
                line.confirmed += 1;
                total.confirmed += 1;
            }
            OutboxState::Queued | OutboxState::RecordAcked => {
                line.waiting += 1;
                total.waiting += 1;
            }
            OutboxState::Rejected => {
                line.refused += 1;
                total.refused += 1;
            }
        }
    }
    lines.sort_by(|a, b| b.taken.cmp(&a.taken).then(a.name.cmp(&b.name)));
    let join = |set: BTreeSet<&str>| set.into_iter().collect::<Vec<_>>().join(", ");
    let operators = join(people.iter().map(|(o, _)| o.as_str()).collect());
    let villages = join(people.iter().map(|(_, v)| v.as_str()).collect());
    // Everything not yet confirmed by HQ, today's or older.
    let waiting: Vec<Listed> = st.db(|store| store.waiting(500)).await?;
    let page = SummaryPage {
        date: keliling_web::time::date(since, off),
        villages,
        operators,
        lines,
        total,
        waiting: waiting
            .iter()
            .map(|a| {
                let mut r = Row::of(&st, a, lang);
                r.state_key = state_of(a).0;
                r
            })
            .collect(),
        l,
    };
    Ok(render(&page)?.into_response())
}
